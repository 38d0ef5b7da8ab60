/**
 * The bound on all outboxes together (issue 14, net/outbox-pool.ts): clients
 * that never read, each under its own outbox limit, cannot together hold the
 * server's memory. Past the server-wide bound, those furthest behind are cut
 * off as too slow, and a pair that reads keeps chatting. The attack runs in
 * its own process (tests/support/hostile-client.ts, mode "hoarders").
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { join } from "node:path";
import { connectUser, PASSWORD, ROOT, signup, startCluster, uniqueName, waitFor, type Cluster, type TestUser } from "./support/cluster";
import { TEST_CA } from "./support/tls";

/** Far under the per-connection limit (8 MiB): only the server-wide bound can cut the readers. */
const TOTAL = 2 * 1024 * 1024;
const READERS = 4;
const BODY = 128 * 1024;
/** Each reader is sent 40 bodies (5 MiB): more than loopback's socket buffers take, less than its own limit. */
const ROUNDS = 40;

let cluster: Cluster;
let alice: TestUser;
let bob: TestUser;

beforeAll(async () => {
  // A bot's send allowance: the pour must outrun what the kernel's socket buffers take from the never-reading
  // readers. At a person's first burst of 50 (then 10 a second) 105 of its 160 sends got in, the buffers held
  // them, and no outbox grew. This test is about the outbox pool, not the send limit (which has tests of its own).
  cluster = await startCluster({ servers: 1, config: { outboxTotalLimit: TOTAL, sendsPerSecond: 10_000 } });
  for (const name of ["alice", "bob"]) await signup(cluster.balancerAddr, name);
  alice = await connectUser(cluster.balancerAddr, "alice");
  bob = await connectUser(cluster.balancerAddr, "bob");
}, 60_000);

afterAll(async () => {
  await alice?.session.close();
  await bob?.session.close();
  await cluster?.stop();
});

test("clients that never read are cut off (E_SLOW_CONSUMER) once all outboxes together pass the server's bound, and a neighbour keeps chatting", async () => {
  const sender = uniqueName("pourer");
  const readers = Array.from({ length: READERS }, () => uniqueName("hoarder"));
  for (const name of [sender, ...readers]) await signup(cluster.balancerAddr, name);
  const proc = Bun.spawn([process.execPath, join(ROOT, "tests/support/hostile-client.ts"), "hoarders", cluster.servers[0]!.addr, sender, PASSWORD, String(ROUNDS)], {
    stdout: "pipe",
    stderr: "pipe",
    env: { ...process.env, HOSTILE_CA: TEST_CA.certPem, HOSTILE_READERS: readers.join(","), HOSTILE_BODY: String(BODY) },
  });
  const [out, err, code] = [await new Response(proc.stdout).text(), await new Response(proc.stderr).text(), await proc.exited];
  if (code !== 0) throw new Error(`attacker exited ${code}: ${err}`);
  const result = JSON.parse(out.trim().split("\n").pop()!) as { codes: Record<string, number>; ends: { code: string; message: string }[] };
  // Every send was stored (the sender reads its replies); the readers were cut for what piled up behind them.
  expect(result.codes.ok).toBeGreaterThan(0);
  const cutByPool = result.ends.filter((e) => e.code === "E_SLOW_CONSUMER" && e.message.includes("too much unsent for its connections"));
  expect(cutByPool.length).toBeGreaterThan(0);
  // None reached its own limit: the bound that cut them was the server-wide one.
  expect(result.ends.filter((e) => e.message.includes("fell too far behind"))).toEqual([]);

  const text = `still here ${Date.now()}`;
  await alice.session.sendText("bob", text);
  await waitFor(() => bob.texts().includes(text), "bob to receive alice's message", 10_000);
  expect(alice.ended).toBeUndefined();
}, 120_000);
