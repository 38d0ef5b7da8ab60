/**
 * PostgreSQL stopped (pg_ctl -m fast) and crashed (-m immediate) under load on
 * two server processes: every server resumes storing by itself, every
 * acknowledged message reaches its recipient once and in the sender's order,
 * no send waits for ever, and the servers still shut down.
 */
import { testIdentity } from "./support/tls";
import { afterAll, beforeAll, expect, test } from "bun:test";
import { migrate, openDatabase } from "../db/connect";
import { startBalancer } from "../roles/balancer";
import { connectUser, signup, spawnServer, uniqueName, waitFor } from "./support/cluster";
import { databaseOutage, numbered, type OutageReport } from "./support/faults";
import { startRestartablePostgres, type RestartablePostgres } from "./support/restartable-pg";

let pg: RestartablePostgres;

beforeAll(async () => {
  pg = await startRestartablePostgres();
}, 60_000);

afterAll(async () => {
  await pg?.remove();
});

function expectEveryMessageOnceInOrder(report: OutageReport): void {
  for (const { stream, recipient } of report.pairs) {
    const acked = stream.results.map((r, i) => (r ? numbered(i) : undefined));
    // Every send that was begun was answered: none waits for ever.
    expect(acked.every((t) => t !== undefined)).toBe(true);
    const shown = recipient.received.filter((m) => m.from === stream.from.name && m.text !== "hello");
    // Once each, in the order the sender sent them (which is also the order stored: shown by seq).
    expect(shown.map((m) => m.text)).toEqual(acked as string[]);
    expect(shown.every((m) => m.verified)).toBe(true);
    const seqs = shown.map((m) => m.seq);
    expect(seqs.every((seq, i) => i === 0 || seq > seqs[i - 1]!)).toBe(true);
    // The ids the sender was given are the ids shown.
    expect(shown.map((m) => m.id)).toEqual(stream.results.map((r) => r!.msg));
  }
}

for (const kind of ["fast", "immediate"] as const) {
  test(`PostgreSQL stopped with -m ${kind} under load: both servers resume storing by themselves, every acknowledged message arrives once and in the sender's order, and shutdown works`, async () => {
    // Down for longer than a heartbeat stays fresh (5 s): every server looks dead to the others when it is back.
    const report = await databaseOutage({ pg, kind, pairs: 4, window: 8, beforeMs: 1_000, downMs: 7_000, afterMs: 1_000 });
    console.log(
      `-m ${kind}: ${report.sent} messages, longest send ${report.maxSendMs} ms, resumed ${report.resumedMs} ms after PostgreSQL was back, shutdown ${report.shutdownMs.join("/")} ms`,
    );
    expect(report.sent).toBeGreaterThan(0);
    expectEveryMessageOnceInOrder(report);
    expect(report.exitCodes).toEqual([0, 0]);
  }, 180_000);
}

test("a server whose database is away still exits on SIGTERM, and the send it could not store is stored, once, through another server when PostgreSQL is back", async () => {
  const database = openDatabase(pg.url, { max: 1 });
  await migrate(database);
  await database.close();
  const balancer = await startBalancer({ port: 0, strategy: "roundrobin", identity: await testIdentity(pg.url) });
  const balancerAddr = `127.0.0.1:${balancer.port}`;
  const first = await spawnServer(pg.url, balancerAddr);
  try {
    await waitFor(() => balancer.servers().length === 1, "the server to register");
    const [a, b] = [uniqueName("early"), uniqueName("late")];
    await signup(balancerAddr, a);
    await signup(balancerAddr, b);
    const alice = await connectUser(balancerAddr, a);
    const bob = await connectUser(balancerAddr, b);
    await alice.session.sendText(b, "before");
    await pg.stopFast();
    // Refused for now (E_UNAVAILABLE), and retried by the client meanwhile.
    const sending = alice.session.sendText(b, "during");
    await Bun.sleep(500);
    first.proc.kill("SIGTERM");
    expect(await first.proc.exited).toBe(0);
    await pg.start();
    const second = await spawnServer(pg.url, balancerAddr);
    try {
      const sent = await sending;
      expect(sent.duplicate).toBe(false);
      await waitFor(() => bob.received.length >= 2, "bob to get both messages", 30_000);
      expect(bob.texts()).toEqual(["before", "during"]);
    } finally {
      await alice.session.close();
      await bob.session.close();
      second.proc.kill("SIGTERM");
      await second.proc.exited;
    }
  } finally {
    first.proc.kill("SIGKILL");
    balancer.stop();
  }
}, 120_000);
