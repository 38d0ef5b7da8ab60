/**
 * What a device only received is held on the server a few seconds
 * (server/acks.ts) and written in one statement: it must still reach the
 * database at a clean shutdown, at a disconnect and when the client asks;
 * a kill -9 with marks held replays those messages (the cursor stays
 * behind them), loses nothing, and never moves a read marker past what was
 * read. Read markers are never held.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { randomUUID } from "node:crypto";
import { join } from "node:path";
import { migrate, openDatabase, type Database } from "../db/connect";
import { Acks } from "../server/acks";
import { appendBatch } from "../server/append";
import { CursorStore, type Moved } from "../server/cursor-store";
import { Store } from "../server/store";
import { testDatabaseUrl } from "./support/pg";

let url: string;
let database: Database;
let store: Store;

beforeAll(async () => {
  url = await testDatabaseUrl();
  database = openDatabase(url, { max: 4 });
  await migrate(database);
  store = new Store(database.sql);
}, 60_000);
afterAll(async () => {
  await database.close();
});

/** Two users in a direct conversation holding `messages` messages from the first; the second's device. */
async function pair(messages: number) {
  const names = [0, 1].map(() => `u${randomUUID().slice(0, 12)}`);
  const [sender, reader] = (await database.sql`insert into users (name, auth_hash) select n, 'x' from unnest(${names}::text[]) n returning id`).map((r) => r.id as number);
  const [row] = await database.sql`insert into devices (user_id, key, name) values (${reader!}, ${randomUUID()}, 'phone') returning id`;
  const device = row!.id as number;
  const conv = await store.directConversation(sender!, reader!);
  const items = Array.from({ length: messages }, (_, i) => ({ senderId: sender!, convId: conv, cmid: randomUUID(), body: new TextEncoder().encode(`m${i}`) }));
  expect((await appendBatch(database.sql, items)).every((r) => r.ok)).toBe(true);
  return { reader: reader!, device, conv };
}

async function cursor(device: number, conv: number): Promise<number> {
  const [row] = await database.sql`select seq from device_cursors where device_id = ${device} and conversation_id = ${conv}`;
  return (row?.seq as number | undefined) ?? 0;
}

async function readMarker(user: number, conv: number): Promise<number> {
  const [row] = await database.sql`select read_seq from members where user_id = ${user} and conversation_id = ${conv}`;
  return row!.read_seq as number;
}

const hourLong = { holdMs: 3_600_000 };

test("received marks are held, yet a clean shutdown writes them", async () => {
  const { reader, device, conv } = await pair(5);
  const acks = new Acks(new CursorStore(database.sql), () => {}, hourLong);
  await acks.ack(reader, device, [[conv, 5]], []);
  expect(await cursor(device, conv)).toBe(0);
  await acks.close();
  expect(await cursor(device, conv)).toBe(5);
});

test("a device's disconnect writes what it received, and only its own marks", async () => {
  const one = await pair(3);
  const two = await pair(4);
  const acks = new Acks(new CursorStore(database.sql), () => {}, hourLong);
  await acks.ack(one.reader, one.device, [[one.conv, 3]], []);
  await acks.ack(two.reader, two.device, [[two.conv, 4]], []);
  acks.release(one.device);
  // A read of the other device's user goes through the same statements, after the released marks.
  await acks.ack(two.reader, two.device, [], [[two.conv, 2]]);
  expect(await cursor(one.device, one.conv)).toBe(3);
  expect(await cursor(two.device, two.conv)).toBe(0);
  expect(await readMarker(two.reader, two.conv)).toBe(2);
  await acks.close();
  expect(await cursor(two.device, two.conv)).toBe(4);
});

test("an ack with flush is answered after its device's received marks are written", async () => {
  const { reader, device, conv } = await pair(6);
  const acks = new Acks(new CursorStore(database.sql), () => {}, hourLong);
  await acks.ack(reader, device, [[conv, 2]], []);
  await acks.ack(reader, device, [[conv, 6]], [], true);
  expect(await cursor(device, conv)).toBe(6);
  await acks.close();
});

test("held marks are written on their own after the hold, and delivery receipts go out as they come", async () => {
  const { reader, device, conv } = await pair(2);
  const delivered: Moved[] = [];
  const acks = new Acks(new CursorStore(database.sql), (d) => delivered.push(...d), { holdMs: 50 });
  await acks.ack(reader, device, [[conv, 2]], []);
  expect(delivered).toEqual([{ userId: reader, convId: conv, seq: 2 }]);
  for (let i = 0; i < 200 && (await cursor(device, conv)) < 2; i++) await Bun.sleep(20);
  expect(await cursor(device, conv)).toBe(2);
  await acks.close();
});

test("a read marker is written before its ack is answered, never held", async () => {
  const { reader, device, conv } = await pair(4);
  const acks = new Acks(new CursorStore(database.sql), () => {}, hourLong);
  await acks.ack(reader, device, [[conv, 4]], [[conv, 3]]);
  expect(await readMarker(reader, conv)).toBe(3);
  await acks.close();
});

test("a server killed -9 with marks held replays those messages, loses none, and marks nothing read past the read", async () => {
  const { reader, device, conv } = await pair(8);
  const child = Bun.spawn(["bun", join(import.meta.dir, "support/acks-holder.ts"), url, String(reader), String(device), String(conv), "8", "3"], { stdout: "pipe", stderr: "inherit" });
  const reader_ = child.stdout.getReader();
  let out = "";
  while (!out.includes("acked")) {
    const { value, done } = await reader_.read();
    if (done) break;
    out += new TextDecoder().decode(value);
  }
  expect(out).toContain("acked");
  child.kill("SIGKILL");
  await child.exited;
  // The held mark died with it: the next login replays all eight, none lost.
  expect(await cursor(device, conv)).toBe(0);
  expect((await store.pending(reader, device)).map((m) => m.seq)).toEqual([1, 2, 3, 4, 5, 6, 7, 8]);
  // The read marker is what was read, and no more.
  expect(await readMarker(reader, conv)).toBe(3);
});
