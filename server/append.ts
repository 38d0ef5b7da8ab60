/**
 * Group commit: many messages from many connections stored in one transaction.
 * Conversations are locked in id order (two batches never deadlock), and each
 * message's sequence number is allocated under its conversation's lock in the
 * same transaction as the insert, so a later commit never gets a lower number.
 */
import type postgres from "postgres";
import type { Sql } from "../db/connect";
import type { ErrorCode } from "../protocol/errors";

export interface AppendItem {
  senderId: number;
  convId: number;
  cmid: string;
  body: Uint8Array;
  /** For a group: the membership epoch the client sealed the message for. */
  epoch?: number;
}

export type AppendResult =
  | {
      ok: true;
      id: number;
      seq: number;
      at: number;
      duplicate: boolean;
      /** For a group message: every member at commit time but the sender. */
      recipients?: number[];
    }
  | { ok: false; code: ErrorCode; message: string };

/**
 * Stores a batch in two round trips: BEGIN with the ordered row locks (and,
 * for groups, the membership read under them), then one statement that finds
 * retries, numbers and inserts, pipelined with COMMIT. A race that statement
 * cannot settle alone (another server committing the same client message id
 * meanwhile: a unique violation, or a deadlock) rolls it back whole, and the
 * batch goes again the careful way, so no conversation ever gets a hole.
 */
export async function appendBatch(sql: Sql, items: AppendItem[]): Promise<AppendResult[]> {
  try {
    return await appendFast(sql, items);
  } catch (error) {
    if (!isRace(error)) throw error;
    return appendCareful(sql, items);
  }
}

/** A (sender, cmid) repeated within one batch takes its first copy's result, unless it names another conversation. */
function repeatOf(items: AppendItem[], results: AppendResult[], first: number, index: number): AppendResult {
  const r = results[first]!;
  if (!r.ok) return r;
  if (items[first]!.convId !== items[index]!.convId) {
    return { ok: false, code: "E_DUPLICATE", message: "That client message id was used for another conversation" };
  }
  return { ...r, duplicate: true };
}

/** Unique violations (class 23) and deadlocks or serialization failures (class 40): the careful path settles those. */
function isRace(error: unknown): boolean {
  const code = (error as { code?: unknown })?.code;
  return typeof code === "string" && /^(23|40)/.test(code);
}

interface Input {
  index: number;
  item: AppendItem;
  /** Sealed for the group's current membership (always, for a direct message). */
  current: boolean;
}

async function appendFast(sql: Sql, items: AppendItem[]): Promise<AppendResult[]> {
  const convIds = [...new Set(items.map((i) => i.convId))].sort((x, y) => x - y);
  const groupIds = [...new Set(items.filter((i) => i.epoch !== undefined).map((i) => i.convId))];
  const conn = Object.assign(await sql.reserve(), { state: "open" as "open" | "done" });
  try {
    // Pipelined: the membership read starts after the locks are granted, so it sees the membership they protect.
    const begin = conn.unsafe("begin");
    const locking = conn`select id, kind, epoch from conversations where id = any(${convIds}) order by id for update`;
    const reading = groupIds.length > 0 ? conn`select conversation_id, user_id from members where conversation_id = any(${groupIds}) and left_seq is null` : undefined;
    let locked: postgres.RowList<postgres.Row[]>;
    let memberRows: readonly postgres.Row[];
    try {
      [, locked, memberRows = []] = await Promise.all([begin, locking, reading]);
    } catch (error) {
      await conn.unsafe("rollback").catch(() => {});
      conn.state = "done";
      throw error;
    }
    const epochs = new Map(locked.filter((c) => c.kind === "group").map((c) => [c.id as number, c.epoch as number]));
    const groupMembers = new Map<number, number[]>();
    for (const r of memberRows) {
      const list = groupMembers.get(r.conversation_id) ?? [];
      list.push(r.user_id);
      groupMembers.set(r.conversation_id, list);
    }
    const results: AppendResult[] = new Array(items.length);
    // Each (sender, cmid) goes in once; a repeat within the batch takes the first one's result.
    const firsts = new Map<number, Map<string, number>>();
    const firstOf = (item: AppendItem) => firsts.get(item.senderId)?.get(item.cmid);
    const repeats: number[] = [];
    const input: Input[] = [];
    items.forEach((item, index) => {
      const epoch = epochs.get(item.convId);
      if (epoch !== undefined && !groupMembers.get(item.convId)?.includes(item.senderId)) {
        results[index] = { ok: false, code: "E_NOT_MEMBER", message: "Only members send to a group" };
      } else if (firstOf(item) !== undefined) {
        repeats.push(index);
      } else {
        let mine = firsts.get(item.senderId);
        if (!mine) firsts.set(item.senderId, (mine = new Map()));
        mine.set(item.cmid, index);
        input.push({ index, item, current: epoch === undefined || item.epoch === epoch });
      }
    });
    if (input.length > 0) {
      const stored = await storeRows(conn, input);
      const at = new Map<number, number>();
      stored.ords?.forEach((ord, k) => at.set(ord, k));
      for (const { index, item, current } of input) {
        const k = at.get(index);
        const dupConv = k === undefined ? 0 : stored.dup_convs[k]!;
        if (k !== undefined && dupConv !== 0) {
          results[index] =
            dupConv === item.convId
              ? { ok: true, id: stored.ids[k]!, seq: stored.seqs[k]!, at: stored.dup_ats[k]!, duplicate: true }
              : { ok: false, code: "E_DUPLICATE", message: "That client message id was used for another conversation" };
        } else if (!current || k === undefined) {
          results[index] = { ok: false, code: "E_STALE_MEMBERS", message: "The group's membership changed: seal the message again for the current members" };
        } else {
          const members = groupMembers.get(item.convId);
          results[index] = { ok: true, id: stored.ids[k]!, seq: stored.seqs[k]!, at: stored.at, duplicate: false, recipients: members?.filter((u) => u !== item.senderId) };
        }
      }
    }
    for (const index of repeats) results[index] = repeatOf(items, results, firstOf(items[index]!)!, index);
    return results;
  } finally {
    // A batch with nothing to store (every item refused) never reached COMMIT:
    // end its transaction here, or the conversation locks would go back to
    // the pool with the connection, and the next batch would run inside it.
    if (conn.state !== "done") await conn.unsafe("rollback").catch(() => {});
    conn.release();
  }
}

/**
 * One statement: earlier copies of these (sender, cmid) pairs, then numbers
 * for the rest in batch order under the locks already held, the bumped
 * counters and the inserted rows. Sent together with COMMIT: a failure makes
 * that COMMIT a rollback, and nothing of the batch stays.
 */
/**
 * The statement's one row: for each input stored or found stored before (by
 * its ord), its id and seq, and for an earlier copy its conversation and
 * time (0: not a copy). Arrays are null when there are none.
 */
interface Stored {
  ords: number[];
  ids: number[];
  seqs: number[];
  dup_convs: number[];
  dup_ats: number[];
  at: number;
}

async function storeRows(conn: postgres.ReservedSql & { state: "open" | "done" }, input: Input[]): Promise<Stored> {
  // The bodies travel as one bytea cut by offsets: one hex string to make and
  // parse, where a bytea[] costs an escaped array literal of every body.
  const offsets: number[] = [];
  let total = 0;
  for (const { item } of input) {
    offsets.push(total);
    total += item.body.length;
  }
  const blob = Buffer.allocUnsafe(total);
  input.forEach(({ item }, i) => blob.set(item.body, offsets[i]));
  // The comment names the statement early, within pg_stat_activity's 1 KiB of query text.
  const storing = conn`
    /* group commit: insert into messages, numbered under the conversation locks */
    with input as (
      select i.ord, i.conv, i.sender, i.cmid, substring(${blob}::bytea from i.off + 1 for i.len) as body, i.current
      from unnest(${input.map((i) => i.index)}::int[], ${input.map((i) => i.item.convId)}::int[],
                  ${input.map((i) => i.item.senderId)}::int[], ${input.map((i) => i.item.cmid)}::text[],
                  ${offsets}::int[], ${input.map((i) => i.item.body.length)}::int[], ${input.map((i) => (i.current ? 1 : 0))}::int[])
        as i(ord, conv, sender, cmid, off, len, current)
    ), checked as (
      select i.*, m.id as dup_id, m.seq as dup_seq, m.conversation_id as dup_conv,
             (extract(epoch from m.created_at) * 1000)::float8 as dup_at
      from input i left join messages m on m.sender_id = i.sender and m.cmid = i.cmid
    ), fresh as (
      -- Every sub-statement sees the snapshot taken after the locks were
      -- granted: last_seq here is the value before this statement's update.
      select i.ord, i.conv, i.sender, i.cmid, i.body, nextval('messages_id_seq') as id,
             c.last_seq + row_number() over (partition by i.conv order by i.ord) as seq
      from checked i join conversations c on c.id = i.conv
      where i.current = 1 and i.dup_id is null
    ), bumped as (
      update conversations c set last_seq = c.last_seq + f.n
      from (select conv, count(*) as n from fresh group by conv) f where c.id = f.conv
    ), inserted as (
      insert into messages (id, conversation_id, seq, sender_id, cmid, body)
      select id, conv, seq, sender, cmid, body from fresh
    )
    -- One row of arrays, not a row per message: the driver decodes each field
    -- of each row on its own, and at thousands of rows a batch that cost more
    -- than the statement. No join between the CTEs either: the planner cannot
    -- count their rows, and a nested loop over two of them is quadratic.
    -- created_at defaults to now(), the transaction's start: the same for
    -- every fresh row. An input missing from ords was not stored (stale).
    select array_agg(ord) as ords, array_agg(id) as ids, array_agg(seq) as seqs,
           array_agg(conv) as dup_convs, array_agg(at) as dup_ats,
           (extract(epoch from now()) * 1000)::float8 as at
    from (select ord, id, seq, 0 as conv, 0::float8 as at from fresh
          union all
          select ord, dup_id, dup_seq, dup_conv, dup_at from checked where dup_id is not null) r`;
  const committing = conn`commit`;
  conn.state = "done";
  const [rows, commit] = await Promise.allSettled([storing, committing]);
  if (rows.status === "rejected") throw rows.reason;
  if (commit.status === "rejected") throw commit.reason;
  return rows.value[0] as unknown as Stored;
}

/**
 * The careful way, for a batch the fast path could not settle: the existing
 * copies first, then numbering and insert in a savepoint that is rolled back
 * and retried without any row another transaction took meanwhile.
 */
async function appendCareful(sql: Sql, items: AppendItem[]): Promise<AppendResult[]> {
  return sql.begin(async (tx) => {
    const convIds = [...new Set(items.map((i) => i.convId))].sort((x, y) => x - y);
    const locked = await tx`select id, kind, epoch from conversations where id = any(${convIds}) order by id for update`;
    const epochs = new Map(locked.filter((c) => c.kind === "group").map((c) => [c.id as number, c.epoch as number]));
    // Membership is read under the same locks that membership changes take: a
    // message is sealed for exactly the members at its commit, never half.
    const groupMembers = new Map<number, number[]>();
    if (epochs.size > 0) {
      const rows = await tx`select conversation_id, user_id from members
                            where conversation_id = any(${[...epochs.keys()]}) and left_seq is null`;
      for (const r of rows) {
        const list = groupMembers.get(r.conversation_id) ?? [];
        list.push(r.user_id);
        groupMembers.set(r.conversation_id, list);
      }
    }
    const senders = items.map((i) => i.senderId);
    const cmids = items.map((i) => i.cmid);
    const existing = await tx`
      select m.id, m.seq, m.sender_id, m.cmid, m.conversation_id, (extract(epoch from m.created_at) * 1000)::float8 as at
      from messages m join unnest(${senders}::int[], ${cmids}::text[]) as k(sender_id, cmid)
        on m.sender_id = k.sender_id and m.cmid = k.cmid`;
    const known = new Map(existing.map((r) => [`${r.sender_id}:${r.cmid}`, r]));
    const results: AppendResult[] = new Array(items.length);
    const fresh: { index: number; item: AppendItem }[] = [];
    const firstInBatch = new Map<string, number>();
    items.forEach((item, index) => {
      const key = `${item.senderId}:${item.cmid}`;
      const old = known.get(key);
      const epoch = epochs.get(item.convId);
      if (epoch !== undefined && !groupMembers.get(item.convId)?.includes(item.senderId)) {
        results[index] = { ok: false, code: "E_NOT_MEMBER", message: "Only members send to a group" };
      } else if (old) {
        results[index] = old.conversation_id === item.convId
          ? { ok: true, id: old.id, seq: old.seq, at: old.at, duplicate: true }
          : { ok: false, code: "E_DUPLICATE", message: "That client message id was used for another conversation" };
      } else if (epoch !== undefined && item.epoch !== epoch) {
        results[index] = { ok: false, code: "E_STALE_MEMBERS", message: "The group's membership changed: seal the message again for the current members" };
      } else if (firstInBatch.has(key)) {
        results[index] = { ok: false, code: "E_DUPLICATE", message: "pending" }; // resolved below
      } else {
        firstInBatch.set(key, index);
        fresh.push({ index, item });
      }
    });
    // Numbering and insert run in a savepoint: if another server's transaction
    // took one of these (sender, cmid) pairs for another conversation, the
    // numbers are given back and the rest go again, so no conversation gets a hole.
    let todo = fresh;
    while (todo.length > 0) {
      const lost = await tx.savepoint((sp) => number(sp, todo, groupMembers, results)).catch((error) => {
        if (error instanceof LostRows) return error.items;
        throw error;
      });
      for (const { index } of lost) results[index] = { ok: false, code: "E_DUPLICATE", message: "That client message id was used for another conversation" };
      todo = todo.filter((f) => !lost.includes(f));
      if (lost.length === 0) break;
    }
    items.forEach((item, index) => {
      const first = firstInBatch.get(`${item.senderId}:${item.cmid}`);
      if (first !== undefined && first !== index) results[index] = repeatOf(items, results, first, index);
    });
    return results;
  });
}

/** Allocates sequence numbers and inserts; throws LostRows (rolling the savepoint back) if any row was taken meanwhile. */
async function number(
  sp: postgres.TransactionSql,
  fresh: { index: number; item: AppendItem }[],
  groupMembers: Map<number, number[]>,
  results: AppendResult[],
): Promise<{ index: number; item: AppendItem }[]> {
  const counts = new Map<number, number>();
  for (const { item } of fresh) counts.set(item.convId, (counts.get(item.convId) ?? 0) + 1);
  const ids = [...counts.keys()];
  const bumps = ids.map((id) => counts.get(id)!);
  const updated = await sp`
    update conversations c set last_seq = c.last_seq + b.n
    from unnest(${ids}::int[], ${bumps}::int[]) as b(id, n) where c.id = b.id
    returning c.id, c.last_seq`;
  const next = new Map(updated.map((r) => [r.id as number, (r.last_seq as number) - counts.get(r.id)! + 1]));
  const rows = fresh.map(({ item }) => {
    const seq = next.get(item.convId)!;
    next.set(item.convId, seq + 1);
    return { conversation_id: item.convId, seq, sender_id: item.senderId, cmid: item.cmid, body: item.body };
  });
  const inserted = await sp`
    insert into messages ${sp(rows, "conversation_id", "seq", "sender_id", "cmid", "body")}
    on conflict do nothing
    returning id, seq, sender_id, cmid, (extract(epoch from created_at) * 1000)::float8 as at`;
  const stored = new Map(inserted.map((r) => [`${r.sender_id}:${r.cmid}`, r]));
  const lost = fresh.filter(({ item }) => !stored.has(`${item.senderId}:${item.cmid}`));
  if (lost.length > 0) throw new LostRows(lost);
  for (const { index, item } of fresh) {
    const row = stored.get(`${item.senderId}:${item.cmid}`)!;
    const members = groupMembers.get(item.convId);
    results[index] = { ok: true, id: row.id, seq: row.seq, at: row.at, duplicate: false, recipients: members?.filter((u) => u !== item.senderId) };
  }
  return [];
}

/** Rows that another transaction's commit took from under a batch. */
class LostRows extends Error {
  constructor(readonly items: { index: number; item: AppendItem }[]) {
    super("rows taken by a concurrent commit");
  }
}
