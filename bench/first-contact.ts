/**
 * What a pair's first message costs PostgreSQL, apart from the message
 * itself: opening the direct conversation (server/direct-opener.ts) and the
 * first device cursors of its two devices (server/cursor-store.ts). With
 * `--partners random` nearly every message is its pair's first.
 *
 *   bun bench/first-contact.ts [--pairs 20000] [--batch 1000] [--drop-fks]
 *
 * --drop-fks measures the same with the per-row foreign key checks of
 * members and device_cursors dropped (an experiment: the schema keeps them).
 */
import { parseArgs } from "node:util";
import { openDatabase } from "../db/connect";
import { CursorStore } from "../server/cursor-store";
import { DirectOpener } from "../server/direct-opener";
import { scratchDir } from "./local-system";
import { cpuSeconds, tree } from "./procstat";
import { openBenchDatabase } from "./system";

const { values } = parseArgs({
  options: { pairs: { type: "string", default: "20000" }, batch: { type: "string", default: "1000" }, "drop-fks": { type: "boolean" } },
});
const PAIRS = Number(values.pairs);
const BATCH = Number(values.batch);
const USERS = 1000;
const dir = scratchDir("chatterbox-first-contact-");
const database = await openBenchDatabase({ dataDir: dir, log: () => {} });
const db = openDatabase(database.url, { max: 2 });
const sql = db.sql;
try {
  if (values["drop-fks"]) {
    await sql`alter table members drop constraint members_conversation_id_conversations_id_fk`;
    await sql`alter table members drop constraint members_user_id_users_id_fk`;
    await sql`alter table device_cursors drop constraint device_cursors_device_id_devices_id_fk`;
  }
  await sql`insert into users (name, auth_hash) select 'fc-' || g, 'x' from generate_series(1, ${USERS}::int) g`;
  await sql`insert into devices (user_id, key, name) select id, 'k', 'd' from users`;
  const users = (await sql`select u.id, d.id as device from users u join devices d on d.user_id = u.id order by u.id`).map((r) => ({ id: r.id as number, device: r.device as number }));
  // Distinct pairs in a shuffled order, as random partners make them.
  const pairs: [number, number][] = [];
  const seen = new Set<string>();
  while (pairs.length < PAIRS) {
    const a = Math.floor(Math.random() * USERS);
    const b = Math.floor(Math.random() * USERS);
    const key = a < b ? `${a}:${b}` : `${b}:${a}`;
    if (a === b || seen.has(key)) continue;
    seen.add(key);
    pairs.push([a, b]);
  }
  const pgCpu = () => tree(database.pid!).reduce((sum, pid) => sum + (cpuSeconds(pid) ?? 0), 0);
  const opener = new DirectOpener(sql);
  const cursors = new CursorStore(sql);
  let openCpu = 0;
  let ackCpu = 0;
  for (let start = 0; start < PAIRS; start += BATCH) {
    const chunk = pairs.slice(start, start + BATCH);
    let t = pgCpu();
    const ids = await Promise.all(chunk.map(([a, b]) => opener.open(users[a]!.id, users[b]!.id)));
    openCpu += pgCpu() - t;
    t = pgCpu();
    const received = chunk.flatMap(([a, b], k) => [
      { deviceId: users[a]!.device, userId: users[a]!.id, convId: ids[k]!, seq: 1 },
      { deviceId: users[b]!.device, userId: users[b]!.id, convId: ids[k]!, seq: 1 },
    ]);
    await cursors.acknowledge(received, []);
    ackCpu += pgCpu() - t;
  }
  const us = (s: number) => ((s * 1e6) / PAIRS).toFixed(1);
  console.log(`${PAIRS} new pairs in batches of ${BATCH}${values["drop-fks"] ? ", foreign keys dropped" : ""}: PostgreSQL CPU µs a pair: open ${us(openCpu)}, first cursors ${us(ackCpu)}`);
} finally {
  await db.close();
  await database.stop();
}
