/**
 * The per-address send allowance (issue 14, server/limits.ts): many accounts
 * from one source address share one allowance, while loopback, which every
 * local process shares, is not counted by default. The server listens on every
 * address; the attacker (its own process) dials this machine's network address,
 * the neighbours come over loopback. A machine with no network address but
 * loopback cannot run it, and the test says so (a failure, not a skip: CI reaches the npm registry, so it has one).
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { networkInterfaces } from "node:os";
import { join } from "node:path";
import { startServer, type ChatServer } from "../roles/server";
import { Link } from "../net/link";
import { loginKeys } from "../client/account";
import { PASSWORD, ROOT, signup, startCluster, uniqueName, waitFor, type Cluster } from "./support/cluster";
import { TEST_CA } from "./support/tls";

const lanAddress = Object.values(networkInterfaces())
  .flat()
  .find((i) => i && i.family === "IPv4" && !i.internal)?.address;

/** A small allowance per address, and per-user allowances far above it: only the address's can refuse. */
const CONFIG = { sendBurstPerAddress: 10, sendsPerSecondPerAddress: 0.01, sendBurst: 1000, sendsPerSecond: 100 };

let cluster: Cluster;
let server: ChatServer;
let alice: Link;
let bob: Link;
/** What bob's link received, by client message id. */
const bobGot = new Set<string>();

/** A neighbour over loopback, straight to the server (the balancer would hand out 0.0.0.0, which no certificate names). */
async function neighbour(name: string, onEvent?: (ev: string, frame: Record<string, unknown>) => void): Promise<Link> {
  const link = await Link.connect(`127.0.0.1:${server.port}`, { hello: { role: "client" }, onEvent });
  const { authKey } = await loginKeys(link, name, PASSWORD);
  await link.request("login", { user: name, auth: authKey, device: { id: `neighbour-${name}`, name: "neighbour" } }, 60_000);
  await link.request("sync", {}, 60_000);
  return link;
}

beforeAll(async () => {
  if (!lanAddress) throw new Error("This test needs a network address besides loopback (none found in os.networkInterfaces())");
  // The cluster's own server takes the signups; the one under test is reached directly (not registered with the balancer).
  cluster = await startCluster({ servers: 1 });
  server = await startServer({ port: 0, hostname: "0.0.0.0", tlsNames: ["127.0.0.1", lanAddress], databaseUrl: cluster.url, config: CONFIG, log: () => {} });
  for (const name of ["alice", "bob"]) await signup(cluster.balancerAddr, name);
  alice = await neighbour("alice");
  bob = await neighbour("bob", (ev, frame) => ev === "msg" && bobGot.add((frame.m as { cmid: string }).cmid));
}, 60_000);

afterAll(async () => {
  alice?.close();
  bob?.close();
  await server?.stop();
  await cluster?.stop();
});

/** One attacker account sending `n` at once from the network address, in its own process. */
async function sendsFromNetwork(user: string, n: number): Promise<Record<string, number>> {
  const proc = Bun.spawn([process.execPath, join(ROOT, "tests/support/hostile-client.ts"), "sends", `${lanAddress}:${server.port}`, user, PASSWORD, String(n)], {
    stdout: "pipe",
    stderr: "pipe",
    env: { ...process.env, HOSTILE_CA: TEST_CA.certPem, HOSTILE_TO: "bob" },
  });
  const [out, err, code] = [await new Response(proc.stdout).text(), await new Response(proc.stderr).text(), await proc.exited];
  if (code !== 0) throw new Error(`attacker exited ${code}: ${err}`);
  return JSON.parse(out.trim().split("\n").pop()!).codes;
}

test("accounts sending from one address share its allowance (E_RATE_LIMITED), and neighbours on loopback keep chatting", async () => {
  const accounts = [uniqueName("sybil"), uniqueName("sybil"), uniqueName("sybil")];
  for (const name of accounts) await signup(cluster.balancerAddr, name);
  // The first account takes 8 of the address's 10, the second the other 2, and the third is refused.
  // (A refusal holds the connection for its retry-after, so each account sends no more than it may get answered.)
  expect(await sendsFromNetwork(accounts[0]!, 8)).toEqual({ ok: 8 });
  expect(await sendsFromNetwork(accounts[1]!, 2)).toEqual({ ok: 2 });
  expect(await sendsFromNetwork(accounts[2]!, 1)).toEqual({ E_RATE_LIMITED: 1 });
  // Loopback is not counted: alice (over 127.0.0.1) sends more than the address allowance, and every one arrives.
  const cmids = Array.from({ length: 12 }, () => crypto.randomUUID());
  for (const cmid of cmids) await alice.request("send", { to: "bob", cmid, body: new Uint8Array(32) });
  await waitFor(() => cmids.every((c) => bobGot.has(c)), "bob to receive alice's messages", 10_000);
}, 120_000);
