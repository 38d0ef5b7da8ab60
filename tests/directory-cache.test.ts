/**
 * The server's caches are bounded and evict gradually (issue 15): past the
 * bound the least recently used entry goes, one at a time, instead of the
 * whole cache at once; what is still in use stays cached.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { randomUUID } from "node:crypto";
import { migrate, openDatabase, type Database } from "../db/connect";
import { Directory } from "../server/directory";
import { Store } from "../server/store";
import { testDatabaseUrl } from "./support/pg";

let database: Database;
let store: Store;

beforeAll(async () => {
  database = openDatabase(await testDatabaseUrl(), { max: 2 });
  await migrate(database);
  store = new Store(database.sql);
}, 60_000);
afterAll(async () => {
  await database.close();
});

/** The real store, counting what the directory asks of it. */
function counted() {
  const asked = { users: 0, conversations: 0 };
  return {
    asked,
    store: {
      findUser: (name: string) => (asked.users++, store.findUser(name)),
      groupConversation: (name: string) => store.groupConversation(name),
      directConversation: (a: number, b: number) => (asked.conversations++, store.directConversation(a, b)),
    },
  };
}

test("a full directory drops its least recently used pair, keeps the one in use, and answers the dropped one from the database again", async () => {
  const names = Array.from({ length: 5 }, () => `d${randomUUID().slice(0, 12)}`);
  await database.sql`insert into users (name, auth_hash) select n, 'x' from unnest(${names}::text[]) n`;
  const me = (await store.findUser(names[0]!))!.id;
  const { asked, store: counting } = counted();
  // Room for three names and three pairs.
  const directory = new Directory(counting, 3);
  const [p1, p2, p3, p4] = names.slice(1);
  const first = await directory.direct(me, p1!);
  await directory.direct(me, p2!);
  await directory.direct(me, p3!);
  // p1 is in use: looked up again, so p2 is now the least recently used.
  expect(directory.cached(me, { to: p1! })).toEqual(first);
  expect(asked.conversations).toBe(3);
  await directory.direct(me, p4!);
  expect(asked.conversations).toBe(4);
  // The fourth pair pushed out one entry, not all of them.
  expect(directory.cached(me, { to: p1! })).toEqual(first);
  expect(directory.cached(me, { to: p2! })).toBeUndefined();
  expect(directory.cached(me, { to: p4! })).toBeDefined();
  // The dropped one comes back from the database, as the same conversation.
  const again = await directory.direct(me, p2!);
  expect(again.convId).toBe(await store.directConversation(me, (await store.findUser(p2!))!.id));
  expect(asked.conversations).toBe(5);
});

test("sends racing to open the same new pair ask the database once", async () => {
  const names = Array.from({ length: 2 }, () => `d${randomUUID().slice(0, 12)}`);
  await database.sql`insert into users (name, auth_hash) select n, 'x' from unnest(${names}::text[]) n`;
  const me = (await store.findUser(names[0]!))!.id;
  const { asked, store: counting } = counted();
  const directory = new Directory(counting, 100);
  await directory.userId(names[1]!);
  const results = await Promise.all(Array.from({ length: 10 }, () => directory.direct(me, names[1]!)));
  expect(new Set(results.map((r) => r.convId)).size).toBe(1);
  expect(asked.conversations).toBe(1);
});
