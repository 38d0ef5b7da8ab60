/**
 * The group commit's statement for direct messages (server/append.ts,
 * storeUnchecked): it stores without looking for earlier copies and numbers
 * each conversation from one UPDATE of its row. A retried send in the batch
 * makes the statement fail whole, and the batch goes again the checking way;
 * these tests hold it to the same promises as before: a retry returns its
 * first copy, no conversation gets a hole, each is numbered in arrival order,
 * and batches lock conversations in id order (no deadlock).
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { randomUUID } from "node:crypto";
import { migrate, openDatabase, type Database } from "../db/connect";
import { appendBatch, COMMITTER_SETTINGS, type AppendItem, type AppendResult } from "../server/append";
import { Store } from "../server/store";
import { testDatabaseUrl } from "./support/pg";

let database: Database;
let store: Store;

beforeAll(async () => {
  database = openDatabase(await testDatabaseUrl(), { max: 4, settings: COMMITTER_SETTINGS });
  await migrate(database);
  store = new Store(database.sql);
}, 60_000);
afterAll(async () => {
  await database.close();
});

async function users(n: number): Promise<number[]> {
  const names = Array.from({ length: n }, () => `u${randomUUID().slice(0, 12)}`);
  const rows = await database.sql`insert into users (name, auth_hash) select n, 'x' from unnest(${names}::text[]) n returning id`;
  return rows.map((r) => r.id as number);
}

const body = (text: string) => new TextEncoder().encode(text);
const stored = (r: AppendResult) => (r.ok ? { id: r.id, seq: r.seq, duplicate: r.duplicate } : { code: r.code });

/** What the database holds for a conversation, in seq order. */
async function rows(conv: number) {
  const list = await database.sql`select id, seq, sender_id, cmid, body from messages where conversation_id = ${conv} order by seq`;
  const [c] = await database.sql`select last_seq from conversations where id = ${conv}`;
  return { list: list.map((r) => ({ id: r.id as number, seq: r.seq as number, cmid: r.cmid as string, body: new TextDecoder().decode(r.body) })), lastSeq: c!.last_seq as number };
}

test("a direct batch numbers each conversation in arrival order and returns each message's own id, seq and body", async () => {
  const [ann, ben, cat] = await users(3);
  const annBen = await store.directConversation(ann!, ben!);
  const annCat = await store.directConversation(ann!, cat!);
  // Interleaved, and the conversation with the higher id first, so that the statement's sorting shows.
  const [low, high] = annBen < annCat ? [annBen, annCat] : [annCat, annBen];
  const items: AppendItem[] = ["h1", "l1", "h2", "h3", "l2"].map((text) => ({ senderId: ann!, convId: text[0] === "h" ? high : low, cmid: randomUUID(), body: body(text) }));
  const results = await appendBatch(database.sql, items);
  expect(results.map((r) => (r.ok ? r.seq : -1))).toEqual([1, 1, 2, 3, 2]);
  for (const conv of [low, high]) {
    const held = await rows(conv);
    expect(held.list.map((r) => r.seq)).toEqual(held.list.map((_, i) => i + 1));
    expect(held.lastSeq).toBe(held.list.length);
    // Each result names the row that holds that item's body.
    for (const r of held.list) {
      const k = items.findIndex((i) => i.cmid === r.cmid);
      expect(new TextDecoder().decode(items[k]!.body)).toBe(r.body);
      expect(stored(results[k]!)).toEqual({ id: r.id, seq: r.seq, duplicate: false });
    }
  }
});

test("a retried direct send among fresh ones returns its first copy, and the fresh ones are stored after it without a hole", async () => {
  const [ann, ben, cat] = await users(3);
  const annBen = await store.directConversation(ann!, ben!);
  const benCat = await store.directConversation(ben!, cat!);
  const first: AppendItem = { senderId: ann!, convId: annBen, cmid: randomUUID(), body: body("first") };
  const [original] = await appendBatch(database.sql, [first]);
  expect(original).toMatchObject({ ok: true, seq: 1, duplicate: false });

  const results = await appendBatch(database.sql, [
    { senderId: ann!, convId: annBen, cmid: randomUUID(), body: body("second") },
    { ...first, body: body("first, again") },
    { senderId: ben!, convId: benCat, cmid: randomUUID(), body: body("elsewhere") },
  ]);
  expect(original!.ok && stored(results[1]!)).toEqual(original!.ok && { id: original!.id, seq: original!.seq, duplicate: true });
  expect(results[0]).toMatchObject({ ok: true, seq: 2, duplicate: false });
  expect(results[2]).toMatchObject({ ok: true, seq: 1, duplicate: false });
  const held = await rows(annBen);
  expect(held.list.map((r) => [r.seq, r.body])).toEqual([
    [1, "first"],
    [2, "second"],
  ]);
  expect(held.lastSeq).toBe(2);
});

test("a client message id used before in another conversation is refused, and the rest of the batch is stored without a hole", async () => {
  const [ann, ben, cat] = await users(3);
  const annBen = await store.directConversation(ann!, ben!);
  const annCat = await store.directConversation(ann!, cat!);
  const cmid = randomUUID();
  await appendBatch(database.sql, [{ senderId: ann!, convId: annBen, cmid, body: body("to ben") }]);
  const results = await appendBatch(database.sql, [
    { senderId: ann!, convId: annCat, cmid, body: body("to cat, same id") },
    { senderId: ann!, convId: annCat, cmid: randomUUID(), body: body("to cat") },
  ]);
  expect(results[0]).toMatchObject({ ok: false, code: "E_DUPLICATE" });
  expect(results[1]).toMatchObject({ ok: true, seq: 1 });
  const held = await rows(annCat);
  expect(held.list.map((r) => [r.seq, r.body])).toEqual([[1, "to cat"]]);
  expect(held.lastSeq).toBe(1);
});

test("direct batches in flight on several connections over the same conversations, in opposite orders, never deadlock and leave no hole", async () => {
  const people = await users(8);
  const convs: number[] = [];
  for (let i = 0; i < people.length; i++) for (let j = i + 1; j < people.length; j++) convs.push(await store.directConversation(people[i]!, people[j]!));
  const senderOf = new Map<number, number>();
  for (const conv of convs) senderOf.set(conv, (await database.sql`select user_id from members where conversation_id = ${conv} limit 1`)[0]!.user_id as number);
  const deadlocks = async () => Number((await database.sql`select deadlocks from pg_stat_database where datname = current_database()`)[0]!.deadlocks);
  const before = await deadlocks();
  const batch = (order: number[]) => order.map((conv): AppendItem => ({ senderId: senderOf.get(conv)!, convId: conv, cmid: randomUUID(), body: body("x") }));
  const forward = [...convs];
  const backward = [...convs].reverse();
  const ROUNDS = 60;
  const runs: Promise<AppendResult[]>[] = [];
  for (let round = 0; round < ROUNDS; round++) runs.push(appendBatch(database.sql, batch(round % 2 ? forward : backward)));
  const results = (await Promise.all(runs)).flat();
  expect(results.every((r) => r.ok)).toBe(true);
  // A backend adds its deadlocks to pg_stat_database when it next reports its counters: made to, on each of the pool's connections.
  await Promise.all(Array.from({ length: 4 }, () => database.sql`select pg_stat_force_next_flush(), pg_sleep(0.2)`));
  expect(await deadlocks()).toBe(before);
  for (const conv of convs) {
    const held = await rows(conv);
    expect(held.list.length).toBe(ROUNDS);
    expect(held.list.map((r) => r.seq)).toEqual(held.list.map((_, i) => i + 1));
    expect(held.lastSeq).toBe(ROUNDS);
  }
});

test("client message ids of any length and script are stored exactly as sent, each with its own body, and a retry of one finds it", async () => {
  const [ann, ben, cat] = await users(3);
  const annBen = await store.directConversation(ann!, ben!);
  const annCat = await store.directConversation(ann!, cat!);
  // Multibyte cmids must keep their bytes, and quotes, braces and backslashes must survive the array literal they travel in.
  const cmids = ["ü", "日本語のメッセージ", "😀-" + randomUUID(), "a", "x".repeat(64), "é😀é", "'quote\"back\\slash,{brace}"];
  const items: AppendItem[] = cmids.map((cmid, k) => ({ senderId: ann!, convId: k % 2 ? annCat : annBen, cmid, body: body(`body ${k}`) }));
  const results = await appendBatch(database.sql, items);
  expect(results.every((r) => r.ok && !r.duplicate)).toBe(true);
  const held = [...(await rows(annBen)).list, ...(await rows(annCat)).list];
  expect(held.map((r) => r.cmid).sort()).toEqual([...cmids].sort());
  for (const r of held) expect(r.body).toBe(`body ${cmids.indexOf(r.cmid)}`);
  const [again] = await appendBatch(database.sql, [{ ...items[2]!, body: body("again") }]);
  expect(again!.ok && stored(again!)).toEqual(results[2]!.ok && { id: results[2]!.id, seq: results[2]!.seq, duplicate: true });
});
