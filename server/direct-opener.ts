/**
 * Direct conversations made on first use, many at once: every pair asked for
 * while a statement runs goes in the next one, which finds the pairs that
 * exist and makes the rest, with their two members, in one statement (one
 * round trip, one commit). A pair at a time took a select and a transaction
 * of three statements, and with uniformly random partners nearly every
 * message opens a new pair (`chatterbox bench --partners random`).
 */
import type { Sql } from "../db/connect";

interface Asked {
  key: string;
  low: number;
  high: number;
  resolve(id: number): void;
  reject(error: unknown): void;
}

export class DirectOpener {
  private queue: Asked[] = [];
  private running = false;

  constructor(private readonly sql: Sql) {}

  /** The direct conversation of two users, made if there is none. */
  open(a: number, b: number): Promise<number> {
    const [low, high] = a < b ? [a, b] : [b, a];
    return new Promise((resolve, reject) => {
      this.queue.push({ key: `${low}:${high}`, low, high, resolve, reject });
      if (!this.running) {
        this.running = true;
        queueMicrotask(() => void this.run());
      }
    });
  }

  private async run(): Promise<void> {
    try {
      while (this.queue.length > 0) {
        const batch = this.queue;
        this.queue = [];
        try {
          const ids = await this.openAll(batch);
          for (const asked of batch) asked.resolve(ids.get(asked.key)!);
        } catch (error) {
          for (const asked of batch) asked.reject(error);
        }
      }
    } finally {
      this.running = false;
    }
  }

  private async openAll(batch: Asked[]): Promise<Map<string, number>> {
    const unique = new Map<string, Asked>();
    for (const asked of batch) unique.set(asked.key, asked);
    // In key order, so that two servers making overlapping pairs take the unique index's entries in one order.
    const pairs = [...unique.values()].sort((x, y) => (x.key < y.key ? -1 : x.key > y.key ? 1 : 0));
    const rows = await this.sql`
      with pairs as (
        select * from unnest(${pairs.map((p) => p.key)}::text[], ${pairs.map((p) => p.low)}::int[], ${pairs.map((p) => p.high)}::int[]) as p(key, low, high)
      ), found as (
        select c.id, c.dm_key from conversations c where c.dm_key = any(${pairs.map((p) => p.key)}::text[])
      ), made as (
        -- Only the missing ones: an insert that meets an existing key would still draw an id from the sequence.
        insert into conversations (kind, dm_key)
        select 'dm', p.key from pairs p where not exists (select 1 from found f where f.dm_key = p.key) order by p.key
        on conflict (dm_key) where dm_key is not null do nothing
        returning id, dm_key
      ), joined as (
        insert into members (conversation_id, user_id)
        select m.id, u.user_id from made m join pairs p on p.key = m.dm_key cross join lateral (values (p.low), (p.high)) as u(user_id)
      )
      select id, dm_key from found union all select id, dm_key from made`;
    const ids = new Map(rows.map((r) => [r.dm_key as string, r.id as number]));
    // One made by another server after this statement's snapshot, while this one waited on its key: read it now.
    const missing = pairs.filter((p) => !ids.has(p.key)).map((p) => p.key);
    if (missing.length > 0) {
      const late = await this.sql`select id, dm_key from conversations where dm_key = any(${missing}::text[])`;
      for (const r of late) ids.set(r.dm_key as string, r.id as number);
    }
    for (const p of pairs) if (!ids.has(p.key)) throw new Error(`direct conversation ${p.key} was neither found nor made`);
    return ids;
  }
}
