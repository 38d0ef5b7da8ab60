/**
 * Fault drills that print figures (issue 10), to run again by hand:
 *
 *   bun bench/faults.ts outage [--kind fast|immediate|both] [--down-ms 3000] [--pairs 4]
 *     Two server processes, streams of numbered DMs, PostgreSQL stopped or
 *     crashed for a while: messages, longest send, how soon after PostgreSQL
 *     is back every sender is answered again, and shutdown time.
 *   bun bench/faults.ts pg-hang [--rounds 10]
 *     postgres.js with a pool of 1: a query in flight when PostgreSQL stops
 *     (-m fast), another issued the moment the first fails, then PostgreSQL
 *     back. Counts how often the pool is stuck for good, for the raw
 *     postgres.js client and for ours (db/pool.ts).
 */
import postgres from "postgres";
import { openDatabase } from "../db/connect";
import { databaseOutage } from "../tests/support/faults";
import { startRestartablePostgres, type RestartablePostgres } from "../tests/support/restartable-pg";

process.env.CHATTERBOX_TEST_KDF = "1";

function flag(name: string, fallback: string): string {
  const at = process.argv.indexOf(`--${name}`);
  return at > 0 ? process.argv[at + 1]! : fallback;
}

async function outage(pg: RestartablePostgres): Promise<void> {
  const which = flag("kind", "both");
  for (const kind of which === "both" ? (["fast", "immediate"] as const) : [which as "fast" | "immediate"]) {
    const r = await databaseOutage({ pg, kind, pairs: Number(flag("pairs", "4")), downMs: Number(flag("down-ms", "3000")), beforeMs: 2_000, afterMs: 2_000 });
    const inOrder = r.pairs.every(({ stream, recipient }) => {
      const shown = recipient.received.filter((m) => m.from === stream.from.name && m.text !== "hello").map((m) => m.text);
      return shown.length === stream.acked() && shown.every((t, i) => i === 0 || t > shown[i - 1]!);
    });
    console.log(
      `-m ${kind}: ${r.sent} messages acknowledged, all delivered once in order: ${inOrder}; longest send ${r.maxSendMs} ms; ` +
        `every sender answered ${r.resumedMs} ms after PostgreSQL was back; SIGTERM to exit ${r.shutdownMs.join(" / ")} ms (exit ${r.exitCodes.join(", ")})`,
    );
  }
}

type Query = (text: string) => Promise<unknown>;

/** One round: "ok" (the pool works afterwards) or "stuck". */
async function hangRound(pg: RestartablePostgres, query: Query): Promise<"ok" | "stuck"> {
  await query("select 1");
  // Many queries pipelined on the one connection: PostgreSQL exits with some of
  // them unread, so the socket is reset (ECONNRESET), as under load.
  let retried: Promise<unknown> | undefined;
  const piped = Array.from({ length: 100 }, () =>
    query("select pg_sleep(0.05)").catch(() => (retried ??= query("select 1").catch(() => "failed"))),
  );
  const inFlight = Promise.all(piped).then(() => retried);
  await Bun.sleep(100);
  await pg.stopFast();
  await pg.start();
  const timeout = (ms: number) => Bun.sleep(ms).then(() => "stuck" as const);
  if ((await Promise.race([inFlight.then(() => "ok" as const), timeout(20_000)])) === "stuck") return "stuck";
  for (let attempt = 0; attempt < 50; attempt++) {
    const after = await Promise.race([query("select 1").then(() => "ok" as const, () => "error" as const), timeout(20_000)]);
    if (after !== "error") return after;
    await Bun.sleep(100);
  }
  return "stuck";
}

async function pgHang(pg: RestartablePostgres): Promise<void> {
  const rounds = Number(flag("rounds", "10"));
  for (const name of ["postgres.js", "db/pool.ts"] as const) {
    let stuck = 0;
    for (let i = 0; i < rounds; i++) {
      const raw = name === "postgres.js" ? postgres(pg.url, { max: 1, onnotice: () => {} }) : undefined;
      const ours = name === "db/pool.ts" ? openDatabase(pg.url, { max: 1 }) : undefined;
      const query: Query = (text) => (raw ? raw.unsafe(text) : ours!.sql.unsafe(text));
      if ((await hangRound(pg, query)) === "stuck") stuck++;
      await (raw ? raw.end({ timeout: 1 }) : ours!.close()).catch(() => {});
    }
    console.log(`${name}, pool of 1: stuck for good after a -m fast restart in ${stuck} of ${rounds} rounds`);
  }
}

const pg = await startRestartablePostgres();
try {
  if (process.argv[2] === "pg-hang") await pgHang(pg);
  else await outage(pg);
} finally {
  await pg.remove();
}
process.exit(0);
