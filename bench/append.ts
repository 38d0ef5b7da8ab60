/**
 * The group commit alone: server/append.ts storing batches of direct messages
 * against a durable PostgreSQL, on a connection set up as a chat server sets
 * up its committer's (COMMITTER_SETTINGS), with no sockets, clients or
 * delivery. Each run starts on a new database (or the one at --database-url).
 * Reports, per batch size, the wall time per message (one batch at a time, as
 * one server's committer runs them), this process's CPU per message (what
 * the batch costs the chat server: building the statement, reading its row)
 * and PostgreSQL's (all its processes; only for the embedded one).
 *
 * --in-flight N runs N batches at once on N connections, as a server's
 * committer does; --statements adds PostgreSQL's own account of each
 * statement (pg_stat_statements, embedded database only).
 *
 *   bun bench/append.ts [--batches 1,10,100,2000] [--messages 20000] [--in-flight 1] [--statements] [--database-url URL]
 */
import { rmSync } from "node:fs";
import { parseArgs } from "node:util";
import { openDatabase } from "../db/connect";
import { REAL_MESSAGE_BYTES } from "./options";
import { scratchDir } from "./local-system";
import { cpuSeconds, tree } from "./procstat";
import { openBenchDatabase } from "./system";
import { appendBatch, COMMITTER_SETTINGS, type AppendItem } from "../server/append";

const { values } = parseArgs({
  options: {
    batches: { type: "string", default: "1,10,100,2000" },
    messages: { type: "string", default: "20000" },
    "in-flight": { type: "string", default: "1" },
    statements: { type: "boolean", default: false },
    "database-url": { type: "string" },
  },
});
const batches = values.batches!.split(",").map(Number);
const perSize = Number(values.messages);
const inFlight = Math.max(1, Number(values["in-flight"]));
const statements = values.statements === true && !values["database-url"];
const USERS = 1000;
const CONVERSATIONS = 5000;

const dir = values["database-url"] ? undefined : scratchDir("chatterbox-append-");
const database = await openBenchDatabase({
  databaseUrl: values["database-url"],
  dataDir: dir,
  log: () => {},
  settings: statements ? ["shared_preload_libraries=pg_stat_statements", "pg_stat_statements.track_utility=off"] : [],
});
const commits = openDatabase(database.url, { max: inFlight, settings: COMMITTER_SETTINGS });
const sql = commits.sql;
if (statements) await sql`create extension if not exists pg_stat_statements`;
try {
  await sql`insert into users (name, auth_hash) select 'append-' || g, 'x' from generate_series(1, ${USERS}::int) g on conflict do nothing`;
  const users = (await sql`select id from users where name like 'append-%' order by id`).map((r) => r.id as number);
  // Pairs as direct conversations are keyed ("low:high"), the same every run.
  const pairs = new Map<string, [number, number]>();
  for (let i = 0; pairs.size < CONVERSATIONS; i++) {
    const a = users[(i * 7) % USERS]!;
    const b = users[(i * 13 + 1 + Math.floor(i / USERS)) % USERS]!;
    if (a !== b) pairs.set(`${Math.min(a, b)}:${Math.max(a, b)}`, [a, b]);
  }
  const keys = [...pairs.keys()];
  await sql`insert into conversations (kind, dm_key) select 'dm', k from unnest(${keys}::text[]) k on conflict do nothing`;
  const ids = new Map((await sql`select id, dm_key from conversations where dm_key = any(${keys}::text[])`).map((r) => [r.dm_key as string, r.id as number]));
  const convs = keys.map((k) => ({ id: ids.get(k)!, sender: pairs.get(k)![0] }));
  const body = crypto.getRandomValues(new Uint8Array(REAL_MESSAGE_BYTES));
  const run = Date.now().toString(36);
  let n = 0;
  const batchOf = (size: number): AppendItem[] =>
    Array.from({ length: size }, () => {
      const c = convs[Math.floor(Math.random() * convs.length)]!;
      return { senderId: c.sender, convId: c.id, cmid: `${run}.${n++}`, body };
    });

  console.log(`group commit alone, ${REAL_MESSAGE_BYTES}-byte bodies, durable (fsync and synchronous_commit on), ${inFlight} batch(es) in flight`);
  const postgresCpu = () => (database.pid === undefined ? undefined : tree(database.pid).reduce((sum, pid) => sum + (cpuSeconds(pid) ?? 0), 0));
  console.log("   batch   µs wall/msg     msg/s   µs server CPU/msg   µs PostgreSQL CPU/msg   WAL bytes/msg");
  for (const size of batches) {
    const rounds = Math.max(20, Math.ceil(perSize / size));
    for (let i = 0; i < 3; i++) await appendBatch(sql, batchOf(size)); // warm the plan and the caches
    const cpu0 = process.cpuUsage();
    const pg0 = postgresCpu();
    const [wal0] = await sql`select pg_current_wal_insert_lsn()::text as lsn`;
    const t0 = performance.now();
    if (statements) await sql`select pg_stat_statements_reset()`;
    let next = 0;
    await Promise.all(
      Array.from({ length: inFlight }, async () => {
        while (next++ < rounds) {
          const results = await appendBatch(sql, batchOf(size));
          const refused = results.find((x) => !x.ok);
          if (refused) throw new Error(`refused: ${JSON.stringify(refused)}`);
        }
      }),
    );
    const wallUs = (performance.now() - t0) * 1000;
    const cpu = process.cpuUsage(cpu0);
    const pg = pg0 === undefined ? undefined : postgresCpu()! - pg0;
    const count = rounds * size;
    const [wal] = await sql`select pg_wal_lsn_diff(pg_current_wal_insert_lsn(), ${wal0!.lsn}::pg_lsn)::float8 as bytes`;
    const row = [
      String(size).padStart(8),
      (wallUs / count).toFixed(1).padStart(13),
      Math.round(count / (wallUs / 1e6)).toLocaleString("en-US").padStart(9),
      ((cpu.user + cpu.system) / count).toFixed(1).padStart(19),
      (pg === undefined ? "n/a" : ((pg * 1e6) / count).toFixed(1)).padStart(23),
      String(Math.round(wal!.bytes / count)).padStart(14),
    ];
    console.log(row.join(" "));
    if (statements) {
      const top = await sql`select calls, total_exec_time, total_plan_time, rows, left(regexp_replace(query, '[[:space:]]+', ' ', 'g'), 70) as q
                            from pg_stat_statements where query not like '%pg_stat_statements%' order by total_exec_time desc limit 4`;
      for (const t of top) console.log(`          ${((t.total_exec_time * 1000) / count).toFixed(1).padStart(7)} µs exec/msg  ${String(t.calls).padStart(6)} calls  ${t.q}`);
      const hot = await sql`select relname, n_tup_upd::int as upd, n_tup_hot_upd::int as hot from pg_stat_user_tables where n_tup_upd > 0 order by relname`;
      for (const t of hot) console.log(`          ${t.relname}: ${t.upd} updates, ${t.hot} HOT`);
    }
  }
} finally {
  await commits.close();
  await database.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
}
