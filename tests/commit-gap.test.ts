/**
 * The committer's pacing (server/committer.ts, gapMs): back-to-back sends
 * share a batch instead of each paying a commit, a send after a quiet spell
 * is not held, a batch's worth waiting is not held either, and stop() does not
 * wait out the gap. With a gap of a minute, nothing here depends on timing.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { randomUUID } from "node:crypto";
import { migrate, openDatabase, type Database } from "../db/connect";
import { Committer, FifoQueue, type BatchStore } from "../server/committer";
import { COMMITTER_SETTINGS } from "../server/append";
import { Store, type AppendItem, type AppendResult } from "../server/store";
import { testDatabaseUrl } from "./support/pg";
import { ROOT } from "./support/cluster";
import { join } from "node:path";

let database: Database;
let store: Store;

beforeAll(async () => {
  database = openDatabase(await testDatabaseUrl(), { max: 2, settings: COMMITTER_SETTINGS });
  await migrate(database);
  store = new Store(database.sql);
}, 60_000);
afterAll(async () => {
  await database.close();
});

/** The real store, counting the batches it is given. */
class CountingStore implements BatchStore {
  readonly sizes: number[] = [];
  constructor(private readonly inner: Store) {}
  appendBatch(items: AppendItem[]): Promise<AppendResult[]> {
    this.sizes.push(items.length);
    return this.inner.appendBatch(items);
  }
}

async function pair(): Promise<{ sender: number; conv: number }> {
  const names = [`g${randomUUID().slice(0, 12)}`, `g${randomUUID().slice(0, 12)}`];
  const rows = await database.sql`insert into users (name, auth_hash) select n, 'x' from unnest(${names}::text[]) n returning id`;
  const [a, b] = rows.map((r) => r.id as number);
  return { sender: a!, conv: await store.directConversation(a!, b!) };
}

const send = (c: Committer, p: { sender: number; conv: number }) => c.append({ senderId: p.sender, convId: p.conv, cmid: randomUUID(), body: new Uint8Array([1]) });

test("sends that come while the gap runs share one batch, and a send after a quiet spell goes at once", async () => {
  const p = await pair();
  const counting = new CountingStore(store);
  // First in, first out: the fair queue would split one sender's twenty over two batches (its share per batch).
  const committer = new Committer(counting, { gapMs: 60_000, queue: new FifoQueue() });
  // Nothing has committed for longer than the gap: this one is not held.
  expect(await send(committer, p)).toMatchObject({ ok: true, seq: 1 });
  expect(counting.sizes).toEqual([1]);
  // Twenty more, each in a turn of its own, each after the last one committed: without the gap, twenty commits.
  const later: Promise<AppendResult>[] = [];
  for (let i = 0; i < 20; i++) {
    later.push(send(committer, p));
    await Bun.sleep(0);
  }
  expect(counting.sizes).toEqual([1]);
  // stop() does not wait out the gap: what waits commits now, in one batch, in the order sent.
  await committer.stop();
  expect(counting.sizes).toEqual([1, 20]);
  expect((await Promise.all(later)).map((r) => (r.ok ? r.seq : -1))).toEqual(Array.from({ length: 20 }, (_, i) => i + 2));
});

test("a batch's worth of waiting sends starts at once, gap or not", async () => {
  const p = await pair();
  const counting = new CountingStore(store);
  const committer = new Committer(counting, { gapMs: 60_000, minBatch: 5 });
  await send(committer, p);
  const five = Array.from({ length: 5 }, () => send(committer, p));
  await Promise.all(five);
  expect(counting.sizes).toEqual([1, 5]);
  await committer.stop();
});

test("serve --commit-gap-ms takes 0 or more milliseconds, and refuses anything else before it starts", async () => {
  for (const bad of ["-1", "soon"]) {
    const proc = Bun.spawn([process.execPath, join(ROOT, "cli.ts"), "serve", "0", "--database-url", "postgres://nobody@127.0.0.1:1/none", "--commit-gap-ms", bad], { stdout: "pipe", stderr: "pipe" });
    const err = await new Response(proc.stderr).text();
    expect(await proc.exited).not.toBe(0);
    expect(err).toContain("--commit-gap-ms takes a number of at least 0 (E_BAD_REQUEST)");
  }
});
