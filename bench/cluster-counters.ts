/**
 * What a cluster-wide send allowance would cost (issue 14): the per-user token
 * bucket kept in ChatDB instead of in each server's memory, so that a user
 * connected to N servers gets one allowance, not N. Measured against a durable
 * PostgreSQL (a new one, or --database-url), per message sent:
 *
 *  - "each": one UPDATE ... RETURNING per send, as a send would have to wait for
 *    before it joins the group commit (its own round trip);
 *  - "batched": one UPDATE for a whole batch of sends (as a committer could do
 *    beside its insert), one row per user in the batch;
 *  - "hot": two connections (two servers) taking from the same user's bucket at once.
 *
 * The in-memory bucket (server/limits.ts) is timed alongside for scale.
 *
 *   bun bench/cluster-counters.ts [--sends 4000] [--users 100] [--unlogged] [--database-url URL]
 */
import { rmSync } from "node:fs";
import { parseArgs } from "node:util";
import { openDatabase } from "../db/connect";
import { Buckets } from "../server/limits";
import { scratchDir } from "./local-system";
import { openBenchDatabase } from "./system";

const { values } = parseArgs({
  options: {
    sends: { type: "string", default: "4000" },
    users: { type: "string", default: "100" },
    "database-url": { type: "string" },
    // An UNLOGGED table: no WAL, no fsync (a bucket lost in a crash only refills early).
    unlogged: { type: "boolean", default: false },
  },
});
const sends = Number(values.sends);
const users = Number(values.users);
const dir = values["database-url"] ? undefined : scratchDir("chatterbox-counters-");
const database = await openBenchDatabase({ databaseUrl: values["database-url"], dataDir: dir, log: () => {} });
const a = openDatabase(database.url, { max: 1 });
const b = openDatabase(database.url, { max: 1 });

// One bucket per user: tokens refill at `rate` a second up to `burst`; a take succeeds while one is there.
const TAKE = (ids: number[]) => a.sql`
  update bench_buckets k set
    tokens = least(500, k.tokens + extract(epoch from now() - k.at) * 100) - n.n,
    at = now()
  from (select id, count(*)::int as n from unnest(${ids}::int[]) id group by id) n
  where k.user_id = n.id
  returning k.user_id, k.tokens >= 0 as ok`;

const us = (t0: number, n: number) => Math.round(((performance.now() - t0) * 1000) / n);
try {
  await a.sql`drop table if exists bench_buckets`;
  await a.sql.unsafe(`create ${values.unlogged ? "unlogged" : ""} table bench_buckets (user_id int primary key, tokens float8 not null, at timestamptz not null)`);
  await a.sql`insert into bench_buckets select g, 500, now() from generate_series(1, ${users}::int) g on conflict (user_id) do update set tokens = 500, at = now()`;
  const ids = Array.from({ length: sends }, (_, i) => 1 + (i % users));

  const memory = new Buckets<number>(500, 100);
  let t0 = performance.now();
  for (const id of ids) memory.take(id);
  const inMemory = Math.round(((performance.now() - t0) * 1e6) / sends) / 1000;

  t0 = performance.now();
  for (const id of ids) await TAKE([id]);
  const each = us(t0, sends);

  const batched: Record<number, number> = {};
  for (const size of [10, 100, 1000]) {
    t0 = performance.now();
    for (let i = 0; i < ids.length; i += size) await TAKE(ids.slice(i, i + size));
    batched[size] = us(t0, sends);
  }

  // Two servers, one user: each take waits for the other's row lock to be released (each autocommits).
  const hotTake = (sql: typeof a.sql) => sql`update bench_buckets set tokens = least(500, tokens + extract(epoch from now() - at) * 100) - 1, at = now() where user_id = 1 returning tokens >= 0 as ok`;
  t0 = performance.now();
  await Promise.all([a.sql, b.sql].map(async (sql) => {
    for (let i = 0; i < sends / 2; i++) await hotTake(sql);
  }));
  const hot = us(t0, sends);

  console.log(`${values.unlogged ? "unlogged" : "logged"} table, per send: in memory ${inMemory} us; ChatDB, one UPDATE each ${each} us; batched 10: ${batched[10]} us, 100: ${batched[100]} us, 1000: ${batched[1000]} us; one hot user from two servers ${hot} us`);
  await a.sql`drop table bench_buckets`;
} finally {
  await a.close();
  await b.close();
  await database.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
}
process.exit(0);
