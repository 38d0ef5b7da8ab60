/**
 * Prometheus metrics of real `serve` and `balance` processes, scraped over
 * HTTP while users chat: counters move with the traffic, and no label names a
 * user or a conversation.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { connectUser, rawLink, signup, startCluster, uniqueName, until, waitFor, type Cluster, type TestUser } from "./support/cluster";
import { askBalancer } from "../balancer/ask";
import { scrape, spawnRole, type RoleProcess } from "./support/roles";
import { HEAP_SPACE_METRICS } from "../net/metrics-http";

let cluster: Cluster;
let balancer: RoleProcess;
const servers: RoleProcess[] = [];
const metricsAt: string[] = [];
let balancerMetrics: string;
let balancerAddr: string;
const users: TestUser[] = [];
const [alice, bob] = [uniqueName("alice"), uniqueName("bob")];

beforeAll(async () => {
  cluster = await startCluster({ servers: 0 });
  // The balancer reads the cluster CA and secret from ChatDB.
  balancer = spawnRole(["balance", "--port", "0", "--database-url", cluster.url, "--metrics", "127.0.0.1:0", "--log-format", "json"]);
  balancerAddr = (await balancer.waitForLine(/balancer listening on (\S+) /))[1]!;
  balancerMetrics = (await balancer.waitForLine(/metrics at http:\/\/(\S+)\/metrics/))[1]!;
  for (let i = 0; i < 2; i++) {
    const server = spawnRole(["serve", "0", "--balancer", balancerAddr, "--database-url", cluster.url, "--metrics", "0", "--log-format", "json"]);
    servers.push(server);
    metricsAt.push((await server.waitForLine(/metrics at http:\/\/(\S+)\/metrics/))[1]!);
  }
  await until(async () => (await scrape(balancerMetrics)).get("chatterbox_balancer_servers") === 2, "both servers to register");
  await until(async () => (await Promise.all(metricsAt.map(scrape))).every((m) => m.get("chatterbox_peer_links") === 1), "the peer links");
}, 60_000);

afterAll(async () => {
  for (const u of users) await u.session.close().catch(() => {});
  await Promise.all([...servers, balancer].map((p) => p?.stop()));
  await cluster?.stop();
});

async function total(name: string): Promise<number> {
  const all = await Promise.all(metricsAt.map(scrape));
  return all.reduce((sum, m) => sum + (m.get(name) ?? 0), 0);
}

test("the metrics endpoints listen on loopback when given only a port", () => {
  expect(metricsAt.every((addr) => addr.startsWith("127.0.0.1:"))).toBe(true);
});

test("messages stored and delivered, and the commits that stored them, are counted during traffic", async () => {
  await signup(balancerAddr, alice);
  await signup(balancerAddr, bob);
  const a = await connectUser(balancerAddr, alice);
  const b = await connectUser(balancerAddr, bob);
  users.push(a, b);
  expect(await total("chatterbox_sessions")).toBe(2);
  const before = { stored: await total("chatterbox_messages_stored_total"), delivered: await total("chatterbox_messages_delivered_total") };
  for (let i = 0; i < 20; i++) await a.session.sendText(bob, `hello ${i}`);
  await waitFor(() => b.received.length === 20, "bob to receive all 20");

  expect((await total("chatterbox_messages_stored_total")) - before.stored).toBe(20);
  // Delivered to bob's connection; alice's own device gets its echo too where it is sent back.
  await until(async () => (await total("chatterbox_messages_delivered_total")) - before.delivered >= 20, "the deliveries to be counted");
  expect(await total("chatterbox_commit_batch_messages_count")).toBeGreaterThan(0);
  expect(await total("chatterbox_commit_batch_messages_sum")).toBeGreaterThanOrEqual(20);
  expect(await total("chatterbox_commit_duration_seconds_count")).toBeGreaterThan(0);
  expect(await total('chatterbox_commit_duration_seconds_bucket{le="+Inf"}')).toBe(await total("chatterbox_commit_duration_seconds_count"));
  expect(await total("chatterbox_connections")).toBeGreaterThanOrEqual(4); // two users, two peer links
  expect(await total("chatterbox_outbox_bytes")).toBeGreaterThanOrEqual(0);
  expect((await scrape(balancerMetrics)).get("chatterbox_balancer_assignments_total")).toBeGreaterThanOrEqual(4);
});

test("errors are counted by their code", async () => {
  const before = await total('chatterbox_errors_total{code="E_UNKNOWN_OP"}');
  const link = await rawLink(await askBalancer(balancerAddr));
  try {
    await expect(link.request("no.such.op")).rejects.toMatchObject({ code: "E_UNKNOWN_OP" });
    await expect(link.request("send", {})).rejects.toMatchObject({ code: "E_NOT_LOGGED_IN" });
  } finally {
    link.close();
  }
  expect((await total('chatterbox_errors_total{code="E_UNKNOWN_OP"}')) - before).toBe(1);
  expect(await total('chatterbox_errors_total{code="E_NOT_LOGGED_IN"}')).toBeGreaterThanOrEqual(1);
});

test("the process's CPU, memory and event-loop lag are there, under chatterbox_ names", async () => {
  const m = await scrape(metricsAt[0]!);
  expect(m.get("chatterbox_process_cpu_seconds_total")).toBeGreaterThan(0);
  expect(m.get("chatterbox_process_resident_memory_bytes")).toBeGreaterThan(1_000_000);
  expect(m.has("chatterbox_nodejs_eventloop_lag_seconds")).toBe(true);
  const b = await scrape(balancerMetrics);
  expect(b.get("chatterbox_process_resident_memory_bytes")).toBeGreaterThan(1_000_000);
});

test("a scrape does not walk the heap: no per-heap-space gauges (under Bun each scrape held the loop ~250 ms), the heap's size is there", async () => {
  const text = await (await fetch(`http://${metricsAt[0]}/metrics`)).text();
  for (const name of HEAP_SPACE_METRICS) expect(text).not.toContain(name);
  expect(text).toContain("chatterbox_nodejs_heap_size_used_bytes");
});

test("every metric is named chatterbox_*, counters end in _total, and no label holds a user or an id", async () => {
  const texts = await Promise.all([...metricsAt, balancerMetrics].map(async (addr) => (await fetch(`http://${addr}/metrics`)).text()));
  for (const text of texts) {
    for (const line of text.split("\n")) {
      const type = /^# TYPE (\S+) (\S+)/.exec(line);
      if (type) {
        expect(type[1]!).toStartWith("chatterbox_");
        if (type[2] === "counter") expect(type[1]!).toEndWith("_total");
      }
    }
    expect(text).not.toContain(alice);
    expect(text).not.toContain(bob);
    for (const server of servers) expect(text).not.toContain(server.json().find((l) => l.server)!.server as string);
    const labels = [...text.matchAll(/\{([^}]*)\}/g)].flatMap((m) => m[1]!.split(",").map((kv) => kv.split("=")[0]));
    // Only buckets, error codes, read sources, commit stages, and prom-client's own process labels (Node version, GC kind).
    const allowed = ["le", "code", "source", "stage", "version", "major", "minor", "patch", "type", "kind"];
    expect(labels.filter((l) => !allowed.includes(l!))).toEqual([]);
  }
});

test("a path other than /metrics is a 404", async () => {
  expect((await fetch(`http://${metricsAt[0]}/`)).status).toBe(404);
});
