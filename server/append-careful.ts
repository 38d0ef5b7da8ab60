/**
 * The careful way to store a batch, for what the one statement of
 * server/append.ts could not settle: a transaction that locks the
 * conversations in id order, reads the group members under those locks,
 * finds earlier copies, then numbers and inserts in a savepoint that is
 * rolled back and retried without any row another server's commit took
 * meanwhile. Slower, and needed only when two servers race.
 */
import type postgres from "postgres";
import type { Sql } from "../db/connect";
import { NOT_MEMBER, OTHER_CONVERSATION, repeatOf, STALE, type AppendItem, type AppendResult } from "./batch";

/** Stores a batch in a transaction of its own, as above; results in the batch's order. */
export async function appendCareful(sql: Sql, items: AppendItem[]): Promise<AppendResult[]> {
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
        results[index] = NOT_MEMBER;
      } else if (old) {
        results[index] = old.conversation_id === item.convId
          ? { ok: true, id: old.id, seq: old.seq, at: old.at, duplicate: true }
          : OTHER_CONVERSATION;
      } else if (epoch !== undefined && item.epoch !== epoch) {
        results[index] = STALE;
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
      for (const { index } of lost) results[index] = OTHER_CONVERSATION;
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
