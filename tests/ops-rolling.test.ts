/**
 * Graceful drain and a rolling restart, with real server processes under load:
 * each server in turn gets SIGTERM, drains (stops accepting, finishes its
 * commits, tells its clients to go elsewhere, deregisters) and exits 0, and a
 * new one takes its place. Every send is acknowledged, every message arrives
 * exactly once and in order, and the database holds each once.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import postgres from "postgres";
import { connectUser, signup, startCluster, uniqueName, waitFor, type Cluster, type TestUser } from "./support/cluster";
import { spawnRole, type RoleProcess } from "./support/roles";

const PAIRS = 4;
let cluster: Cluster;
let sql: postgres.Sql;
let servers: RoleProcess[] = [];
const users: TestUser[] = [];

async function startServer(): Promise<{ role: RoleProcess; id: string }> {
  const role = spawnRole(["serve", "0", "--balancer", cluster.balancerAddr, "--database-url", cluster.url, "--log-format", "json"]);
  const id = (await role.waitForLine(/server (\S+) listening on (\S+),/))[1]!;
  await waitFor(() => cluster.balancer.servers().some((s) => s.id === id), "the new server to register");
  return { role, id };
}

beforeAll(async () => {
  cluster = await startCluster({ servers: 0 });
  sql = postgres(cluster.url, { max: 1, onnotice: () => {} });
  servers = await Promise.all([0, 1, 2].map(async () => (await startServer()).role));
}, 60_000);

afterAll(async () => {
  for (const u of users) await u.session.close().catch(() => {});
  await Promise.all(servers.map((s) => s.stop("SIGKILL")));
  await sql?.end();
  await cluster?.stop();
});

test("a rolling restart of every server under load loses nothing and shows nothing twice", async () => {
  const pairs: { from: TestUser; to: TestUser; sent: string[] }[] = [];
  for (let i = 0; i < PAIRS; i++) {
    const [a, b] = [uniqueName("alice"), uniqueName("bob")];
    await signup(cluster.balancerAddr, a);
    await signup(cluster.balancerAddr, b);
    const from = await connectUser(cluster.balancerAddr, a);
    const to = await connectUser(cluster.balancerAddr, b);
    users.push(from, to);
    pairs.push({ from, to, sent: [] });
  }
  let sending = true;
  // Each sender sends one message after another, each once acknowledged: a steady load through the restarts.
  const senders = pairs.map(async (pair) => {
    for (let n = 0; sending && n < 5000; n++) {
      const text = `${pair.from.name} #${n}`;
      await pair.from.session.sendText(pair.to.name, text);
      pair.sent.push(text);
    }
  });

  await waitFor(() => pairs.every((p) => p.sent.length >= 10), "the load to start");
  const drained: string[] = [];
  for (let i = 0; i < servers.length; i++) {
    const old = servers[i]!;
    const oldId = old.json().find((l) => l.server)!.server as string;
    const before = pairs.map((p) => p.sent.length);
    expect(await old.stop("SIGTERM")).toBe(0);
    expect(old.json().map((l) => l.msg)).toEqual(expect.arrayContaining(["SIGTERM: draining", "drained; exiting"]));
    drained.push(oldId);
    // It deregistered: gone from the balancer and from the servers table.
    expect(cluster.balancer.servers().some((s) => s.id === oldId)).toBe(false);
    expect(await sql`select 1 from servers where id = ${oldId}`).toHaveLength(0);
    servers[i] = (await startServer()).role;
    // Traffic went on meanwhile, for every sender.
    await waitFor(() => pairs.every((p, j) => p.sent.length > before[j]! + 5), "every sender to get on with it", 30_000);
  }
  sending = false;
  await Promise.all(senders);

  for (const { to, sent } of pairs) {
    await waitFor(() => to.received.length >= sent.length, `${to.name} to receive all ${sent.length}`, 30_000);
    // Exactly what was acknowledged, in the order sent: nothing lost, nothing twice.
    expect(to.texts()).toEqual(sent);
  }
  const total = pairs.reduce((n, p) => n + p.sent.length, 0);
  expect((await sql`select count(*)::int as n from messages`)[0]!.n).toBe(total);
  // The clients saw the drain as a server asking them to move, not as a crash.
  expect(users.some((u) => u.statuses.some((s) => s.includes("shutting down")))).toBe(true);
  expect(drained).toHaveLength(3);
  console.log(`rolling restart: ${total} messages from ${PAIRS} senders through 3 restarts`);
}, 120_000);
