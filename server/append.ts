/**
 * Group commit: many messages from many connections stored at once. Each
 * message's sequence number is allocated under its conversation's row lock
 * in the same transaction as the insert, so a later commit never gets a lower
 * number; conversations are locked in id order, so two batches never deadlock.
 */
import type { Sql } from "../db/connect";
import { retryOnConflict } from "../db/retry";
import { appendCareful } from "./append-careful";
import { NOT_MEMBER, OTHER_CONVERSATION, repeatOf, STALE, type AppendItem, type AppendResult } from "./batch";

export type { AppendItem, AppendResult };

/**
 * Settings for the connections the group commit runs on (one per batch in
 * flight, server/committer.ts). Generic plans: the statement's plan does not depend on
 * the batch, and planning it afresh for every batch cost more than running it
 * at small ones (bench/append.ts, batch 10: 178 -> 80 us a message). No
 * sequential scans: a generic plan is made once, with the statistics of that
 * moment, and one made on a new, empty database read all of messages for
 * every batch ever after (82 -> 550 us a message as the table grew, until an
 * autoanalyze). Every table the statement reads, it reads by key.
 */
export const COMMITTER_SETTINGS: Record<string, string> = { plan_cache_mode: "force_generic_plan", enable_seqscan: "off" };

/**
 * Stores a batch with one statement, one round trip (see storeStatement).
 * What that statement cannot settle alone goes again the careful way, in a
 * transaction of its own: a race with another server committing the same
 * client message id (a unique violation) or a deadlock rolls the statement
 * back whole; a group whose membership changed after the statement's snapshot
 * is left out of it. So no conversation ever gets a hole.
 */
export async function appendBatch(sql: Sql, items: AppendItem[]): Promise<AppendResult[]> {
  let fast: Fast;
  try {
    fast = await appendFast(sql, items);
  } catch (error) {
    if (!isRace(error)) throw error;
    // The careful transaction can meet a deadlock too (with a group change, say): it is run again whole.
    return retryOnConflict(() => appendCareful(sql, items));
  }
  if (fast.unsettled.length > 0) {
    const again = await retryOnConflict(() => appendCareful(sql, fast.unsettled.map((i) => items[i]!)));
    fast.unsettled.forEach((index, k) => (fast.results[index] = again[k]!));
  }
  return fast.results;
}

/** Unique violations (class 23) and deadlocks or serialization failures (class 40): the careful path settles those. */
function isRace(error: unknown): boolean {
  const code = (error as { code?: unknown })?.code;
  return typeof code === "string" && /^(23|40)/.test(code);
}

/** What the statement did with each input (the statement writes these numbers as they are). */
const enum Outcome {
  Stored = 0,
  Duplicate = 1,
  Stale = 2,
  NotMember = 3,
  /** A group whose membership changed after the statement's snapshot: to go again. */
  Unsettled = 4,
}

/**
 * The statement's one row (arrays, not a row per message: the driver decodes
 * each field of each row on its own, and at thousands of rows a batch that
 * cost more than the statement). For each input, by its ord: what became of
 * it, its id and seq (stored, or stored before), and for an earlier copy its
 * conversation and time. Then each group's members, as (conv, user) pairs.
 * An array with nothing to hold is null (SQL's array_agg of no rows).
 */
interface Stored {
  /** Null when the statement found none of the conversations. */
  ords: number[] | null;
  /** Null when every input was stored (storeUnchecked). */
  outcomes: Outcome[] | null;
  ids: number[];
  seqs: number[];
  dup_convs: number[];
  dup_ats: number[];
  roster_convs: number[] | null;
  roster_users: number[] | null;
  at: number;
}

interface Fast {
  results: AppendResult[];
  /** Positions in the batch to store again the careful way. */
  unsettled: number[];
}

const GONE_DIRECT = { ok: false, code: "E_NO_SUCH_USER", message: "That conversation no longer exists" } as const;
const GONE_GROUP = { ok: false, code: "E_NO_SUCH_GROUP", message: "That group no longer exists" } as const;

async function appendFast(sql: Sql, items: AppendItem[]): Promise<Fast> {
  const results: AppendResult[] = new Array(items.length);
  // Each (sender, cmid) goes in once; a repeat within the batch takes the first one's result.
  const firsts = new Map<number, Map<string, number>>();
  const firstOf = (item: AppendItem) => firsts.get(item.senderId)?.get(item.cmid);
  const repeats: number[] = [];
  const input: number[] = [];
  items.forEach((item, index) => {
    if (firstOf(item) !== undefined) return void repeats.push(index);
    let mine = firsts.get(item.senderId);
    if (!mine) firsts.set(item.senderId, (mine = new Map()));
    mine.set(item.cmid, index);
    input.push(index);
  });
  // A batch of direct messages only (the common case) takes a lighter statement: at a few messages a batch, starting the
  // statement's executor is most of PostgreSQL's cost, and the group handling is a third of its plan.
  const stored = input.some((index) => items[index]!.epoch !== undefined) ? await storeStatement(sql, items, input) : await storeDirectFirst(sql, items, input);
  const roster = new Map<number, number[]>();
  stored.roster_convs?.forEach((conv, k) => {
    const list = roster.get(conv);
    if (list) list.push(stored.roster_users![k]!);
    else roster.set(conv, [stored.roster_users![k]!]);
  });
  const unsettled: number[] = [];
  stored.ords?.forEach((index, k) => {
    const item = items[index]!;
    const [id, seq] = [stored.ids[k]!, stored.seqs[k]!];
    switch (stored.outcomes === null ? Outcome.Stored : stored.outcomes[k]) {
      case Outcome.Stored:
        results[index] = { ok: true, id, seq, at: stored.at, duplicate: false, recipients: roster.get(item.convId)?.filter((u) => u !== item.senderId) };
        break;
      case Outcome.Duplicate:
        results[index] = stored.dup_convs[k] === item.convId ? { ok: true, id, seq, at: stored.dup_ats[k]!, duplicate: true } : OTHER_CONVERSATION;
        break;
      case Outcome.Stale:
        results[index] = STALE;
        break;
      case Outcome.NotMember:
        results[index] = NOT_MEMBER;
        break;
      default:
        unsettled.push(index);
    }
  });
  // A conversation the statement did not find (removed by an operator) stores nothing.
  for (const index of input) results[index] ??= items[index]!.epoch === undefined ? GONE_DIRECT : GONE_GROUP;
  // The careful path stores the unsettled ones; their repeats are settled here, after it.
  if (unsettled.length > 0) return { results, unsettled: [...unsettled, ...repeats] };
  for (const index of repeats) results[index] = repeatOf(items, results, firstOf(items[index]!)!, index);
  return { results, unsettled };
}

/**
 * One statement, and so one transaction and one round trip. It locks the
 * batch's conversations in id order; under Read Committed a row lock returns
 * the newest committed version of the row, even one committed after the
 * statement's snapshot, so last_seq and epoch come from the locked rows and
 * the numbering is exact. Everything else the statement reads comes from its
 * snapshot: earlier copies of these (sender, cmid) pairs (one committed after
 * the snapshot makes the insert a unique violation: a race, settled the
 * careful way) and each group's members. Every membership change bumps the
 * group's epoch under the same lock, so where the snapshot's epoch is the
 * locked one the snapshot's members are the members at commit; a group
 * whose epoch moved is left out (Unsettled) and goes again the careful way.
 */
async function storeStatement(sql: Sql, items: AppendItem[], input: number[]): Promise<Stored> {
  // The bodies travel as one blob cut by offsets: one string to make and
  // parse, where a bytea[] costs an escaped array literal of every body. In
  // base64, not as a bytea: postgres.js sends every parameter as text, and a
  // bytea as hex, which cost both sides twice the base64 (a statement that
  // only reads the parameter: PostgreSQL 2.0 -> 1.0 µs a message, the server 1.7 -> 0.8). Decoded
  // once, in a subquery (an InitPlan), not once a row.
  const { offsets, lengths, blob } = packBodies(items, input);
  const at = (k: number) => items[input[k]!]!;
  const groupIds = [...new Set(input.filter((index) => items[index]!.epoch !== undefined).map((index) => items[index]!.convId))];
  // The comment names the statement early, within pg_stat_activity's 1 KiB of query text.
  const [row] = await sql`
    /* group commit: insert into messages, numbered under the conversation locks */
    with input as (
      select i.ord, i.conv, i.sender, i.cmid, substring((select decode(${blob}::text, 'base64')) from i.off + 1 for i.len) as body, i.epoch
      from unnest(${input}::int[], ${input.map((_, k) => at(k).convId)}::int[], ${input.map((_, k) => at(k).senderId)}::int[],
                  ${input.map((_, k) => at(k).cmid)}::text[], ${offsets}::int[], ${lengths}::int[],
                  ${input.map((_, k) => at(k).epoch ?? -1)}::int[])
        as i(ord, conv, sender, cmid, off, len, epoch)
    ), locked as materialized (
      -- Each input with its conversation, locked in id order: c is the locked
      -- (newest) version of the row.
      select i.*, c.kind, c.last_seq, c.epoch as conv_epoch
      from input i join conversations c on c.id = i.conv
      order by c.id for update of c
    ), roster as (
      -- Read from the snapshot: only the members of a group whose epoch did not move are used.
      select m.conversation_id as conv, m.user_id from members m
      where m.conversation_id = any(${groupIds}::int[]) and m.left_seq is null
    ), checked as (
      select i.*, d.id as dup_id, d.seq as dup_seq, d.conversation_id as dup_conv,
             (extract(epoch from d.created_at) * 1000)::float8 as dup_at,
             -- The numbers are Outcome's: 0 stored, 1 duplicate, 2 stale, 3 not a member, 4 unsettled.
             -- The same row as the snapshot has it, read for groups only (a direct conversation has no epoch to move).
             case when i.kind <> 'group' then 0
                  when i.conv_epoch <> (select s.epoch from conversations s where s.id = i.conv) then 4
                  when not exists (select 1 from members m where m.conversation_id = i.conv and m.user_id = i.sender and m.left_seq is null) then 3
                  when i.epoch <> i.conv_epoch then 2
                  else 0 end as outcome
      from locked i left join messages d on d.sender_id = i.sender and d.cmid = i.cmid
    ), fresh as (
      select i.ord, i.conv, i.sender, i.cmid, i.body, nextval('messages_id_seq') as id,
             i.last_seq + row_number() over (partition by i.conv order by i.ord) as seq
      from checked i where i.outcome = 0 and i.dup_id is null
    ), bumped as (
      update conversations c set last_seq = c.last_seq + f.n
      from (select conv, count(*) as n from fresh group by conv) f where c.id = f.conv
    ), inserted as (
      insert into messages (id, conversation_id, seq, sender_id, cmid, body)
      select id, conv, seq, sender, cmid, body from fresh
    )
    -- No join between the CTEs: the planner cannot count their rows, and a
    -- nested loop over two of them is quadratic. created_at defaults to
    -- now(), the transaction's start: the same for every fresh row.
    select array_agg(ord) as ords, array_agg(outcome) as outcomes, array_agg(id) as ids, array_agg(seq) as seqs,
           array_agg(conv) as dup_convs, array_agg(at) as dup_ats,
           (select array_agg(conv) from roster) as roster_convs, (select array_agg(user_id) from roster) as roster_users,
           (extract(epoch from now()) * 1000)::float8 as at
    from (select ord, 0 as outcome, id, seq, 0 as conv, 0::float8 as at from fresh
          union all
          -- A member's earlier copy is a duplicate; a non-member learns nothing of it.
          select ord, case when outcome = 3 then outcome when dup_id is not null then 1 else outcome end,
                 coalesce(dup_id, 0), coalesce(dup_seq, 0), coalesce(dup_conv, 0), coalesce(dup_at, 0)
          from checked where outcome <> 0 or dup_id is not null) r`;
  return row as unknown as Stored;
}

/** The bodies as one base64 string cut by offsets (see storeStatement). */
function packBodies(items: AppendItem[], input: number[]): { offsets: number[]; lengths: number[]; blob: string } {
  const offsets: number[] = [];
  const lengths: number[] = [];
  let total = 0;
  for (const index of input) {
    offsets.push(total);
    const length = items[index]!.body.length;
    lengths.push(length);
    total += length;
  }
  const blob = Buffer.allocUnsafe(total);
  input.forEach((index, k) => blob.set(items[index]!.body, offsets[k]));
  return { offsets, lengths, blob: blob.toString("base64") };
}

/**
 * A batch of direct messages: first without looking for earlier copies. A
 * retried send is rare (a reconnect after a lost reply), and looking it up
 * was an index search a message that the insert into messages_sender_cmid
 * repeats anyway; without it the statement also needs no lock and join a
 * message (storeUnchecked: PostgreSQL's backend 25.8 -> 21.7 µs of CPU a
 * message at batch 200, PERFORMANCE.md, issue 15 round 4). When the batch
 * does hold a retry, that insert fails the statement whole (nothing of it
 * stays) and the batch goes again with the look-up (storeDirect), which
 * settles it; a race with another server is settled the careful way, as
 * before.
 */
async function storeDirectFirst(sql: Sql, items: AppendItem[], input: number[]): Promise<Stored> {
  try {
    return await storeUnchecked(sql, items, input);
  } catch (error) {
    if (!isRetriedSend(error)) throw error;
    return storeDirect(sql, items, input);
  }
}

/** A unique violation of (sender, cmid): an earlier copy of a message of this batch is stored. */
function isRetriedSend(error: unknown): boolean {
  const e = error as { code?: unknown; constraint_name?: unknown };
  return e?.code === "23505" && e.constraint_name === "messages_sender_cmid";
}

/**
 * storeDirect without the look-up of earlier copies, and without a lock and
 * a join a message: every input is to be stored, so the server knows how
 * many each conversation takes before the statement runs. One UPDATE a
 * conversation, in id order, locks its row, moves last_seq past the batch's
 * messages there and returns where they start; the insert numbers them from
 * it. The rows are locked in the order of the sorted list: the UPDATE reads
 * it through a function scan, which keeps the array's order, and whichever
 * way the planner joins it to conversations (a key look-up a row, or a hash
 * or merge join over the primary key, which is in id order too) the rows
 * come in id order. A conversation that is not a direct one is not updated,
 * and its messages are not stored. A (sender, cmid) stored before fails the
 * statement (see storeDirectFirst).
 */
async function storeUnchecked(sql: Sql, items: AppendItem[], input: number[]): Promise<Stored> {
  // The messages grouped by conversation, the conversations in id order, each group in arrival order.
  const sorted = [...input].sort((x, y) => items[x]!.convId - items[y]!.convId || x - y);
  const convs: number[] = [];
  const counts: number[] = [];
  const firsts: number[] = [];
  const firstOf = new Map<number, number>();
  sorted.forEach((index, pos) => {
    const conv = items[index]!.convId;
    if (convs[convs.length - 1] === conv) counts[counts.length - 1]!++;
    else (convs.push(conv), counts.push(1), firsts.push(pos), firstOf.set(conv, pos));
  });
  const { offsets, lengths, blob } = packBodies(items, sorted);
  const [row] = await sql`
    /* group commit, direct messages, unchecked: insert into messages, numbered under the conversation locks */
    with bumped as (
      update conversations c set last_seq = c.last_seq + f.n
      from unnest(${convs}::int[], ${counts}::int[], ${firsts}::int[]) as f(conv, n, first)
      where c.id = f.conv and c.kind <> 'group'
      returning c.id as conv, c.last_seq - f.n as base, f.n, f.first
    ), inserted as (
      insert into messages (id, conversation_id, seq, sender_id, cmid, body)
      select nextval('messages_id_seq'), b.conv, b.base + k, (${sorted.map((i) => items[i]!.senderId)}::int[])[b.first + k],
             (${sorted.map((i) => items[i]!.cmid)}::text[])[b.first + k],
             substring((select decode(${blob}::text, 'base64')) from (${offsets}::int[])[b.first + k] + 1 for (${lengths}::int[])[b.first + k])
      from bumped b, generate_series(1, b.n) k
      returning id, conversation_id, seq
    )
    select (select array_agg(conv) from bumped) as convs, (select array_agg(base) from bumped) as bases,
           array_agg(conversation_id) as conv_of, array_agg(seq) as seqs, array_agg(id) as ids,
           (extract(epoch from now()) * 1000)::float8 as at
    from inserted`;
  const r = row as unknown as { convs: number[] | null; bases: number[]; conv_of: number[]; seqs: number[]; ids: number[]; at: number };
  // Back from (conversation, seq) to the input: the conversation's first position in sorted, plus how far past its base.
  const offset = new Map<number, number>();
  r.convs?.forEach((conv, k) => offset.set(conv, firstOf.get(conv)! - r.bases[k]! - 1));
  const ords = r.convs === null ? null : r.conv_of.map((conv, k) => sorted[offset.get(conv)! + r.seqs[k]!]!);
  return { ords, outcomes: null, ids: r.ids, seqs: r.seqs, dup_convs: [], dup_ats: [], roster_convs: null, roster_users: null, at: r.at };
}

/**
 * storeStatement for a batch of direct messages only: the same numbering
 * under the same locks, in the same order, without the group handling (no
 * roster, no epochs, no membership). A conversation that turns out to be a
 * group is not found here, so it stores nothing (a direct send never names one).
 */
async function storeDirect(sql: Sql, items: AppendItem[], input: number[]): Promise<Stored> {
  const { offsets, lengths, blob } = packBodies(items, input);
  const at = (k: number) => items[input[k]!]!;
  const [row] = await sql`
    /* group commit, direct messages: insert into messages, numbered under the conversation locks */
    with input as (
      select i.ord, i.conv, i.sender, i.cmid, substring((select decode(${blob}::text, 'base64')) from i.off + 1 for i.len) as body
      from unnest(${input}::int[], ${input.map((_, k) => at(k).convId)}::int[], ${input.map((_, k) => at(k).senderId)}::int[],
                  ${input.map((_, k) => at(k).cmid)}::text[], ${offsets}::int[], ${lengths}::int[])
        as i(ord, conv, sender, cmid, off, len)
    ), locked as materialized (
      select i.*, c.last_seq
      from input i join conversations c on c.id = i.conv and c.kind <> 'group'
      order by c.id for update of c
    ), checked as (
      select i.*, d.id as dup_id, d.seq as dup_seq, d.conversation_id as dup_conv,
             (extract(epoch from d.created_at) * 1000)::float8 as dup_at
      from locked i left join messages d on d.sender_id = i.sender and d.cmid = i.cmid
    ), fresh as (
      select i.ord, i.conv, i.sender, i.cmid, i.body, nextval('messages_id_seq') as id,
             i.last_seq + row_number() over (partition by i.conv order by i.ord) as seq
      from checked i where i.dup_id is null
    ), bumped as (
      update conversations c set last_seq = c.last_seq + f.n
      from (select conv, count(*) as n from fresh group by conv) f where c.id = f.conv
    ), inserted as (
      insert into messages (id, conversation_id, seq, sender_id, cmid, body)
      select id, conv, seq, sender, cmid, body from fresh
    )
    select array_agg(ord) as ords, array_agg(outcome) as outcomes, array_agg(id) as ids, array_agg(seq) as seqs,
           array_agg(conv) as dup_convs, array_agg(at) as dup_ats, null::int[] as roster_convs, null::int[] as roster_users,
           (extract(epoch from now()) * 1000)::float8 as at
    from (select ord, 0 as outcome, id, seq, 0 as conv, 0::float8 as at from fresh
          union all
          select ord, 1, dup_id, dup_seq, dup_conv, dup_at from checked where dup_id is not null) r`;
  return row as unknown as Stored;
}
