/**
 * The committer alone at an open-loop rate: server/committer.ts over the real
 * store and a durable PostgreSQL, sends at a steady rate to random direct
 * conversations, no sockets, clients or delivery. For each commit gap
 * (CommitterOptions.gapMs), in turn and again (so a change of the machine's
 * load falls on both), it reports the commits a second and their size,
 * PostgreSQL's CPU a message (all its processes) and the time from append to
 * answer (p50/p99). Made to weigh the per-commit cost (~0.3 ms of PostgreSQL
 * whatever the batch) against the wait the gap adds, which the whole bench
 * cannot show on a machine whose cores are busy.
 *
 *   bun bench/commit-rate.ts [--rate 5000] [--seconds 5] [--gaps 2,5] [--rounds 2] [--in-flight 3]
 */
import { rmSync } from "node:fs";
import { parseArgs } from "node:util";
import { openDatabase } from "../db/connect";
import { COMMITTER_SETTINGS } from "../server/append";
import { Committer, type BatchStore } from "../server/committer";
import { Store, type AppendItem, type AppendResult } from "../server/store";
import { scratchDir } from "./local-system";
import { REAL_MESSAGE_BYTES } from "./options";
import { cpuSeconds, tree } from "./procstat";
import { openBenchDatabase } from "./system";

const { values } = parseArgs({
  options: {
    rate: { type: "string", default: "5000" },
    seconds: { type: "string", default: "5" },
    gaps: { type: "string", default: "2,5" },
    rounds: { type: "string", default: "2" },
    "in-flight": { type: "string", default: "3" },
  },
});
const rate = Number(values.rate);
const seconds = Number(values.seconds);
const gaps = values.gaps!.split(",").map(Number);
const inFlight = Number(values["in-flight"]);
const USERS = 1000;
const CONVERSATIONS = 5000;

/** The real store, counting its batches. */
class Counting implements BatchStore {
  batches = 0;
  constructor(private readonly store: Store) {}
  appendBatch(items: AppendItem[]): Promise<AppendResult[]> {
    this.batches++;
    return this.store.appendBatch(items);
  }
}

const dir = scratchDir("chatterbox-commit-rate-");
const database = await openBenchDatabase({ dataDir: dir, log: () => {} });
const commits = openDatabase(database.url, { max: inFlight, settings: COMMITTER_SETTINGS });
const store = new Store(commits.sql);
try {
  const sql = commits.sql;
  await sql`insert into users (name, auth_hash) select 'rate-' || g, 'x' from generate_series(1, ${USERS}::int) g`;
  const users = (await sql`select id from users order by id`).map((r) => r.id as number);
  const convs: { id: number; sender: number }[] = [];
  for (let i = 0; convs.length < CONVERSATIONS; i++) {
    const a = users[i % USERS]!;
    const b = users[(i * 7 + 1 + Math.floor(i / USERS)) % USERS]!;
    if (a !== b) convs.push({ id: await store.directConversation(a, b), sender: a });
  }
  const body = crypto.getRandomValues(new Uint8Array(REAL_MESSAGE_BYTES));
  const postgresCpu = () => tree(database.pid!).reduce((sum, pid) => sum + (cpuSeconds(pid) ?? 0), 0);
  let n = 0;
  console.log(`the committer alone, open loop ${rate.toLocaleString("en-US")} msg/s, ${inFlight} batch(es) in flight, durable`);
  console.log("  gap ms   commits/s   msg/commit   µs PostgreSQL CPU/msg   append→answer p50 / p99 ms");
  for (let round = 0; round < Number(values.rounds); round++) {
    for (const gapMs of gaps) {
      const counting = new Counting(store);
      const committer = new Committer(counting, { inFlight, gapMs });
      const waits: number[] = [];
      const answered: Promise<void>[] = [];
      const pg0 = postgresCpu();
      const t0 = performance.now();
      let sent = 0;
      // Open loop: each tick sends what is due by now, however late the tick.
      await new Promise<void>((resolve) => {
        const timer = setInterval(() => {
          const due = Math.min(rate * seconds, Math.floor(((performance.now() - t0) / 1000) * rate));
          for (; sent < due; sent++) {
            const c = convs[Math.floor(Math.random() * convs.length)]!;
            const at = performance.now();
            answered.push(
              committer.append({ senderId: c.sender, convId: c.id, cmid: `r${round}.${gapMs}.${n++}`, body }).then((r) => {
                if (!r.ok) throw new Error(`refused: ${r.code}`);
                waits.push(performance.now() - at);
              }),
            );
          }
          if (sent >= rate * seconds) clearInterval(timer), resolve();
        }, 1);
      });
      await Promise.all(answered);
      const wall = (performance.now() - t0) / 1000;
      const pg = postgresCpu() - pg0;
      await committer.stop();
      waits.sort((x, y) => x - y);
      const q = (p: number) => waits[Math.min(waits.length - 1, Math.floor(p * waits.length))]!.toFixed(1);
      console.log(
        [
          String(gapMs).padStart(8),
          Math.round(counting.batches / wall).toLocaleString("en-US").padStart(11),
          (sent / counting.batches).toFixed(1).padStart(12),
          ((pg * 1e6) / sent).toFixed(1).padStart(23),
          `${q(0.5)} / ${q(0.99)}`.padStart(28),
        ].join(" "),
      );
    }
  }
} finally {
  await commits.close();
  await database.stop();
  rmSync(dir, { recursive: true, force: true });
}
