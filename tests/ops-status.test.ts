/**
 * `chatterbox status`, run as a process against a live cluster: the balancer,
 * each server with its connections and load, the database, the versions; and
 * a server that does not answer is named, with a non-zero exit.
 */
import { TEST_MEMBER } from "./support/tls";
import { afterAll, beforeAll, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { announce } from "../balancer/announcer";
import { VERSION } from "../roles/version";
import type { ClusterStatus } from "../roles/status";
import { connectUser, ROOT, signup, startCluster, uniqueName, waitFor, type Cluster, type TestUser } from "./support/cluster";

let cluster: Cluster;
let user: TestUser;
/**
 * The status runs' own client home: what it pins on first use is this
 * cluster's CA. A shared one (the default, or another test's) may hold
 * another cluster's CA under a reused port, and then refuses, rightly.
 */
const home = mkdtempSync(join(tmpdir(), "chatterbox-status-home-"));

beforeAll(async () => {
  cluster = await startCluster({ servers: 2 });
  const name = uniqueName("carol");
  await signup(cluster.balancerAddr, name);
  user = await connectUser(cluster.balancerAddr, name);
  await waitFor(() => cluster.balancer.servers().some((s) => s.load === 1), "the load to reach the balancer");
});

afterAll(async () => {
  await user?.session.close();
  await cluster?.stop();
  rmSync(home, { recursive: true, force: true });
});

async function status(...args: string[]): Promise<{ code: number; out: string; err: string }> {
  const proc = Bun.spawn([process.execPath, join(ROOT, "cli.ts"), "status", "--balancer", cluster.balancerAddr, ...args], { stdout: "pipe", stderr: "pipe", env: { ...process.env, CHATTERBOX_HOME: home } });
  const [out, err] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text()]);
  return { code: await proc.exited, out, err };
}

test("status shows the balancer, each server with its connections and load, and the database, with versions", async () => {
  const result = await status("--database-url", cluster.url, "--json");
  expect(result.err).toBe("");
  expect(result.code).toBe(0);
  const found = JSON.parse(result.out) as ClusterStatus;
  expect(found.version).toBe(VERSION);
  expect(found.balancer).toMatchObject({ addr: cluster.balancerAddr, version: VERSION, strategy: "roundrobin" });
  expect(found.servers.map((s) => s.addr).sort()).toEqual(cluster.servers.map((s) => s.addr).sort());
  for (const s of found.servers) {
    expect(s.version).toBe(VERSION);
    expect(s.peers).toBe(1);
    // Its own connection from status, at least; peers and carol's too.
    expect(s.connections).toBeGreaterThanOrEqual(2);
  }
  expect(found.servers.map((s) => s.sessions).sort()).toEqual([0, 1]);
  expect(found.servers.map((s) => s.load).sort()).toEqual([0, 1]);
  expect(found.database).toMatchObject({ liveServers: 2 });
  expect(found.database!.version).toMatch(/^PostgreSQL \d+/);
  expect(found.database!.migrations).toBeGreaterThan(0);
  expect(found.database!.url).toBe(cluster.url.replace(/:[^:@/]+@/, ":***@"));
});

test("the text form says the same for a person", async () => {
  const result = await status("--database-url", cluster.url);
  expect(result.code).toBe(0);
  expect(result.out).toMatch(new RegExp(`^balancer  ${cluster.balancerAddr}  version ${VERSION}, strategy roundrobin, 2 servers registered$`, "m"));
  expect(result.out.match(/^server {4}\S+ {2}version \S+, \d+ connections, [01] logged in \(load [01]\), 1 peer link, up \d+ s/gm)).toHaveLength(2);
  expect(result.out).toMatch(/^database  postgres:\/\/\S+:\*\*\*@\S+  PostgreSQL \d+/m);
  expect(result.out).not.toContain(new URL(cluster.url).password);
});

test("a registered server that does not answer is shown as unreachable, and status exits 1", async () => {
  const dead = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } });
  const addr = `127.0.0.1:${dead.port}`;
  dead.stop(true);
  const ghost = announce({ balancer: cluster.balancerAddr, id: "ghost", addr, load: () => 0, ...TEST_MEMBER });
  try {
    await waitFor(() => cluster.balancer.servers().some((s) => s.id === "ghost"), "the ghost to register");
    const result = await status("--database-url", cluster.url);
    expect(result.code).toBe(1);
    expect(result.out).toMatch(new RegExp(`^server {4}${addr}  UNREACHABLE: .*\\(id ghost\\)$`, "m"));
    // Without the database, status is no cluster member: the balancer lists no servers to it, and it says so.
    const outsider = await status("--data", join(ROOT, "no-such-data-folder"));
    expect(outsider.code).toBe(1);
    expect(outsider.out).toContain("listed to cluster members only");
    // It was reached: it says which version and strategy, and not that it is unreachable.
    expect(outsider.out).toMatch(/^balancer  \S+  version \S+, strategy \w+, its servers are listed to cluster members only/m);
    expect(outsider.out).toContain("database  (give --database-url");
  } finally {
    ghost.stop();
  }
});

test("with no balancer listening, status says so and exits 1", async () => {
  const dead = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } });
  const addr = `127.0.0.1:${dead.port}`;
  dead.stop(true);
  const proc = Bun.spawnSync([process.execPath, join(ROOT, "cli.ts"), "status", "--balancer", addr], { stdout: "pipe", stderr: "pipe" });
  expect(proc.exitCode).toBe(1);
  expect(proc.stdout.toString()).toContain(`balancer  ${addr}  UNREACHABLE`);
});
