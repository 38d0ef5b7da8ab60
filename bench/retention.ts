/**
 * Message retention (server/retention.ts) on a durable PostgreSQL: how long a
 * sweep of N old messages takes, and how long its longest single statement
 * holds its row locks, while the group commit keeps inserting; and the commit
 * latency seen meanwhile. Each run starts on a new database (or --database-url).
 *
 *   bun bench/retention.ts [--old 200000] [--batch 1000] [--database-url URL]
 */
import { rmSync } from "node:fs";
import { parseArgs } from "node:util";
import { openDatabase } from "../db/connect";
import { startRetention } from "../server/retention";
import { scratchDir } from "./local-system";
import { openBenchDatabase } from "./system";

const { values } = parseArgs({
  options: { old: { type: "string", default: "200000" }, batch: { type: "string", default: "1000" }, "database-url": { type: "string" } },
});
const OLD = Number(values.old);
const BATCH = Number(values.batch);
const dir = values["database-url"] ? undefined : scratchDir("chatterbox-retention-");
const database = await openBenchDatabase({ databaseUrl: values["database-url"], dataDir: dir, log: () => {} });
const db = openDatabase(database.url, { max: 4 });
const sql = db.sql;
try {
  const [user] = await sql`insert into users (name, auth_hash) values ('retention-bench', 'x') returning id`;
  const [conv] = await sql`insert into conversations (kind, dm_key) values ('dm', 'retention-bench') returning id`;
  const body = Buffer.alloc(300);
  console.log(`inserting ${OLD.toLocaleString("en")} messages 100 days old ...`);
  await sql`
    insert into messages (conversation_id, seq, sender_id, cmid, body, created_at)
    select ${conv!.id}, g, ${user!.id}, 'old-' || g, ${body}, now() - interval '100 days' from generate_series(1, ${OLD}::int) g`;
  await sql`vacuum analyze messages`;

  // The hot path: one small insert after another, as a quiet group commit makes them;
  // first 2 s alone, for comparison, then during the sweep.
  let inserting = true;
  let seq = OLD;
  const insertFor = (into: number[]) =>
    (async () => {
      while (inserting) {
        const t = performance.now();
        seq++;
        await sql`insert into messages (conversation_id, seq, sender_id, cmid, body) values (${conv!.id}, ${seq}, ${user!.id}, ${`new-${seq}`}, ${body})`;
        into.push(performance.now() - t);
      }
    })();
  const aloneMs: number[] = [];
  const alone = insertFor(aloneMs);
  await Bun.sleep(2000);
  inserting = false;
  await alone;
  inserting = true;
  const commitMs: number[] = [];
  const writer = insertFor(commitMs);

  const batchMs: number[] = [];
  const timed = ((strings: TemplateStringsArray, ...args: unknown[]) => {
    const t = performance.now();
    const query = (sql as any)(strings, ...args);
    return query.then((rows: unknown) => (batchMs.push(performance.now() - t), rows));
  }) as unknown as typeof sql;
  const started = performance.now();
  const retention = startRetention({ sql: timed, days: 30, batch: BATCH, everyMs: 3600_000, log: () => {} });
  const deleted = await retention.sweep();
  const seconds = (performance.now() - started) / 1000;
  await retention.stop();
  inserting = false;
  await writer;

  const pct = (list: number[], p: number) => [...list].sort((a, b) => a - b)[Math.min(list.length - 1, Math.floor(list.length * p))]!;
  console.log(`deleted ${deleted.toLocaleString("en")} in ${seconds.toFixed(1)} s (${Math.round(deleted / seconds).toLocaleString("en")} a second), ${batchMs.length} statements of ${BATCH}`);
  console.log(`one statement: median ${pct(batchMs, 0.5).toFixed(1)} ms, p99 ${pct(batchMs, 0.99).toFixed(1)} ms, longest ${Math.max(...batchMs).toFixed(1)} ms`);
  console.log(`inserts alone:     ${aloneMs.length} in 2 s, median ${pct(aloneMs, 0.5).toFixed(2)} ms, p99 ${pct(aloneMs, 0.99).toFixed(2)} ms, longest ${Math.max(...aloneMs).toFixed(1)} ms`);
  console.log(`inserts meanwhile: ${commitMs.length}, median ${pct(commitMs, 0.5).toFixed(2)} ms, p99 ${pct(commitMs, 0.99).toFixed(2)} ms, longest ${Math.max(...commitMs).toFixed(1)} ms`);
} finally {
  await db.close();
  await database.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
}
