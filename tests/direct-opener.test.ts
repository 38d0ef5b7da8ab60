/**
 * Direct conversations made on first use, many in one statement
 * (server/direct-opener.ts): however the asks race, within one server and
 * between two, each pair of users gets exactly one conversation, with exactly
 * its two members.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { randomUUID } from "node:crypto";
import { migrate, openDatabase, type Database } from "../db/connect";
import { Store } from "../server/store";
import { testDatabaseUrl } from "./support/pg";

let databases: Database[];

beforeAll(async () => {
  const url = await testDatabaseUrl();
  databases = [openDatabase(url, { max: 4 }), openDatabase(url, { max: 4 })];
  await migrate(databases[0]!);
}, 60_000);
afterAll(async () => {
  for (const d of databases) await d.close();
});

test("two servers opening overlapping pairs at once, each several times: one conversation a pair, with its two members", async () => {
  const sql = databases[0]!.sql;
  const names = Array.from({ length: 12 }, () => `o${randomUUID().slice(0, 12)}`);
  const ids = (await sql`insert into users (name, auth_hash) select n, 'x' from unnest(${names}::text[]) n returning id`).map((r) => r.id as number);
  const pairs: [number, number][] = [];
  for (let i = 0; i < ids.length; i++) for (let j = i + 1; j < ids.length; j++) pairs.push([ids[i]!, ids[j]!]);
  const stores = databases.map((d) => new Store(d.sql));
  // Every pair asked for by both servers, in both orders of the two users, several times, all at once.
  const asks = stores.flatMap((store, s) => pairs.flatMap(([a, b], k) => [store.directConversation(a, b), store.directConversation(b, a), ...(k % 3 === s ? [store.directConversation(a, b)] : [])]));
  const got = await Promise.all(asks);
  const perPair = new Map<string, Set<number>>();
  let at = 0;
  for (const _store of stores) {
    pairs.forEach(([a, b], k) => {
      const key = `${a}:${b}`;
      const set = perPair.get(key) ?? new Set<number>();
      const n = k % 3 === stores.indexOf(_store) ? 3 : 2;
      for (let i = 0; i < n; i++) set.add(got[at++]!);
      perPair.set(key, set);
    });
  }
  expect(at).toBe(got.length);
  for (const [, set] of perPair) expect(set.size).toBe(1);
  const convIds = [...perPair.values()].map((s) => [...s][0]!);
  expect(new Set(convIds).size).toBe(pairs.length);
  const rows = await sql`select c.dm_key, array_agg(m.user_id order by m.user_id) as users from conversations c join members m on m.conversation_id = c.id
                         where c.id = any(${convIds}::int[]) group by c.dm_key`;
  expect(rows.length).toBe(pairs.length);
  for (const r of rows) {
    const [low, high] = (r.dm_key as string).split(":").map(Number);
    expect(r.users).toEqual([low, high]);
  }
  // Asked again later: the same ones, nothing new made.
  const again = await Promise.all(pairs.map(([a, b]) => stores[1]!.directConversation(b, a)));
  expect(again).toEqual(convIds);
  const [count] = await sql`select count(*)::int as n from conversations where dm_key = any(${pairs.map(([a, b]) => `${a}:${b}`)}::text[])`;
  expect(count!.n).toBe(pairs.length);
});
