/**
 * A server that stalls (stopped with SIGSTOP: a long pause, a starved VM, a
 * machine past its cores) misses its heartbeats, and the other servers take
 * it for gone: they close their links to it and deliver nothing live to its
 * users, whose messages wait in the database. Its users never left: nothing
 * later in the conversation may come to reveal the gap, and they have no
 * reason to log in again. The stalled server sees its own heartbeat was late
 * and catches its connections up from the database (server/flow.ts).
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { migrate, openDatabase, type Database } from "../db/connect";
import { startBalancer, type Balancer } from "../roles/balancer";
import { apartFrom, connectUser, signup, spawnServer, uniqueName, waitFor, type ServerProcess, type TestUser } from "./support/cluster";
import { testDatabaseUrl } from "./support/pg";
import { testIdentity } from "./support/tls";

let database: Database;
let balancer: Balancer;
let balancerAddr: string;
const servers: ServerProcess[] = [];
const users: TestUser[] = [];

beforeAll(async () => {
  const url = await testDatabaseUrl();
  database = openDatabase(url, { max: 2 });
  await migrate(database);
  balancer = await startBalancer({ port: 0, strategy: "roundrobin", identity: await testIdentity(url) });
  balancerAddr = `127.0.0.1:${balancer.port}`;
  for (let i = 0; i < 2; i++) servers.push(await spawnServer(url, balancerAddr));
  await waitFor(() => balancer.servers().length === 2, "both servers to register");
}, 60_000);

afterAll(async () => {
  for (const s of servers) s.proc.kill("SIGCONT");
  for (const u of users) await u.session.close().catch(() => {});
  for (const s of servers) s.proc.kill("SIGKILL");
  balancer?.stop();
  await database?.close();
});

/** How long ago the server last wrote its heartbeat into the servers table, as PostgreSQL's clock says. */
async function heartbeatAge(id: string): Promise<number> {
  const [row] = await database.sql`select extract(epoch from now() - heartbeat_at) * 1000 as ms from servers where id = ${id}`;
  return Number(row!.ms);
}

test("messages sent while the recipient's server stalled past its heartbeats reach the recipient, still connected, once it runs again", async () => {
  const [a, b] = [uniqueName("alice"), uniqueName("bob")];
  await signup(balancerAddr, a);
  await signup(balancerAddr, b);
  const alice = await connectUser(balancerAddr, a);
  users.push(alice);
  const bob = await apartFrom(balancerAddr, alice, await connectUser(balancerAddr, b));
  users.push(bob);
  // One first: bob's keys are known to alice, and bob's place to alice's server.
  await alice.session.sendText(b, "before");
  await waitFor(() => bob.texts().includes("before"), "the first message");
  const stalled = servers.find((s) => s.id === bob.session.serverId)!;
  stalled.proc.kill("SIGSTOP");
  try {
    // Until the other server counts it gone: a heartbeat older than 5 s (liveWithinMs), then its next look at the table.
    while ((await heartbeatAge(stalled.id)) < 6_500) await Bun.sleep(250);
    for (let i = 0; i < 3; i++) await alice.session.sendText(b, `while stalled ${i}`);
  } finally {
    stalled.proc.kill("SIGCONT");
  }
  await waitFor(() => bob.texts().filter((t) => t.startsWith("while stalled")).length === 3, "the messages sent while bob's server stalled", 30_000);
  expect(bob.texts()).toEqual(["before", "while stalled 0", "while stalled 1", "while stalled 2"]);
  // The same session throughout: caught up, not logged in again.
  expect(bob.session.serverId).toBe(stalled.id);
  expect(bob.ended).toBeUndefined();
}, 90_000);
