/**
 * Several group-commit batches in flight on one server (issue 15), with the
 * guarantees of DESIGN.md kept: a conversation is in one running batch at a
 * time, so its messages are numbered in the order they reached the committer,
 * and what waits for it is answered after the batch ahead of it.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { randomUUID } from "node:crypto";
import { migrate, openDatabase, type Database } from "../db/connect";
import { Committer, type BatchStore } from "../server/committer";
import { COMMITTER_SETTINGS } from "../server/append";
import { Store, type AppendItem, type AppendResult } from "../server/store";
import { testDatabaseUrl } from "./support/pg";

let database: Database;
let store: Store;

beforeAll(async () => {
  const url = await testDatabaseUrl();
  database = openDatabase(url, { max: 4, settings: COMMITTER_SETTINGS });
  await migrate(database);
  store = new Store(database.sql);
}, 60_000);
afterAll(async () => {
  await database.close();
});

/** The real store, with each batch held at the door until the test lets it go: so that two are in flight for certain. */
class GatedStore implements BatchStore {
  readonly batches: { items: AppendItem[]; release(): void }[] = [];
  inFlight = 0;
  mostInFlight = 0;
  constructor(private readonly inner: Store) {}
  async appendBatch(items: AppendItem[]): Promise<AppendResult[]> {
    this.inFlight++;
    this.mostInFlight = Math.max(this.mostInFlight, this.inFlight);
    await new Promise<void>((release) => this.batches.push({ items, release }));
    try {
      return await this.inner.appendBatch(items);
    } finally {
      this.inFlight--;
    }
  }
}

async function users(n: number): Promise<number[]> {
  const names = Array.from({ length: n }, () => `u${randomUUID().slice(0, 12)}`);
  const rows = await database.sql`insert into users (name, auth_hash) select n, 'x' from unnest(${names}::text[]) n returning id`;
  return rows.map((r) => r.id as number);
}

const until = async (ok: () => boolean) => {
  while (!ok()) await Bun.sleep(1);
};
const body = (text: string) => new TextEncoder().encode(text);

test("two batches in flight touching the same conversation: the second waits for the first and numbers after it, in the order sent", async () => {
  const [ann, ben, cat] = await users(3);
  const annBen = await store.directConversation(ann!, ben!);
  const annCat = await store.directConversation(ann!, cat!);
  const gated = new GatedStore(store);
  const committer = new Committer(gated, { inFlight: 2, minBatch: 1 });

  const first = committer.append({ senderId: ann!, convId: annBen, cmid: randomUUID(), body: body("1") });
  await until(() => gated.batches.length === 1);
  // While the first batch runs: more for its conversation, and one for another.
  const second = committer.append({ senderId: ann!, convId: annBen, cmid: randomUUID(), body: body("2") });
  const third = committer.append({ senderId: ben!, convId: annBen, cmid: randomUUID(), body: body("3") });
  const other = committer.append({ senderId: cat!, convId: annCat, cmid: randomUUID(), body: body("other") });
  await until(() => gated.batches.length === 2);
  expect(gated.mostInFlight).toBe(2);
  // The second batch in flight holds only the other conversation; annBen's waits.
  expect(gated.batches[1]!.items.map((i) => i.convId)).toEqual([annCat]);
  gated.batches[1]!.release();
  expect(await other).toMatchObject({ ok: true, seq: 1 });
  expect(gated.batches.length).toBe(2);
  gated.batches[0]!.release();
  expect(await first).toMatchObject({ ok: true, seq: 1 });
  await until(() => gated.batches.length === 3);
  expect(gated.batches[2]!.items.map((i) => new TextDecoder().decode(i.body))).toEqual(["2", "3"]);
  gated.batches[2]!.release();
  expect(await second).toMatchObject({ ok: true, seq: 2 });
  expect(await third).toMatchObject({ ok: true, seq: 3 });
  await committer.stop();
});

test("many batches in flight over shared conversations: each conversation numbered 1..N in the order its messages were handed in, no hole, no repeat", async () => {
  const people = await users(6);
  const convs: number[] = [];
  for (let i = 0; i < people.length; i++) for (let j = i + 1; j < people.length; j++) convs.push(await store.directConversation(people[i]!, people[j]!));
  let running = 0;
  let most = 0;
  const counting: BatchStore = {
    async appendBatch(items) {
      most = Math.max(most, ++running);
      try {
        return await store.appendBatch(items);
      } finally {
        running--;
      }
    },
  };
  const committer = new Committer(counting, { inFlight: 3, minBatch: 1, maxBatch: 7 });
  const sent = new Map<number, Promise<AppendResult>[]>();
  const all: Promise<AppendResult>[] = [];
  for (let round = 0; round < 40; round++) {
    for (let k = 0; k < 10; k++) {
      const conv = convs[(round * 7 + k * 3) % convs.length]!;
      const sender = (await database.sql`select user_id from members where conversation_id = ${conv} limit 1`)[0]!.user_id as number;
      const result = committer.append({ senderId: sender, convId: conv, cmid: randomUUID(), body: body(`${round}.${k}`) });
      sent.set(conv, [...(sent.get(conv) ?? []), result]);
      all.push(result);
    }
    if (round % 3 === 0) await Bun.sleep(0);
  }
  await Promise.all(all);
  expect(most).toBeGreaterThan(1);
  for (const [conv, results] of sent) {
    const seqs = (await Promise.all(results)).map((r) => (r.ok ? r.seq : -1));
    expect(seqs).toEqual(seqs.map((_, i) => i + 1));
    const [row] = await database.sql`select count(*)::int as n, max(seq)::int as m from messages where conversation_id = ${conv}`;
    expect(row).toEqual({ n: seqs.length, m: seqs.length });
  }
  await committer.stop();
});

test("stop answers what is parked behind a batch that does not finish, instead of waiting for ever", async () => {
  const [ann, ben] = await users(2);
  const conv = await store.directConversation(ann!, ben!);
  const gated = new GatedStore(store);
  const committer = new Committer(gated, { inFlight: 2, minBatch: 1, deadlineMs: 60_000 });
  void committer.append({ senderId: ann!, convId: conv, cmid: randomUUID(), body: body("held") });
  await until(() => gated.batches.length === 1);
  const parked = committer.append({ senderId: ann!, convId: conv, cmid: randomUUID(), body: body("parked") });
  await committer.stop(50);
  expect(await parked).toMatchObject({ ok: false, code: "E_SHUTDOWN" });
  gated.batches[0]!.release();
});
