/**
 * Read replicas: servers with --read-database-url send history, fetch and file
 * downloads to a real streaming replica on loopback when it has caught up, and
 * to the primary when it lags (lag injected with recovery_min_apply_delay), so
 * a reader never misses a message or sees one out of order.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { chmodSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startServer } from "../roles/server";
import { askBalancer } from "../balancer/ask";
import { connectUser, rawLink, signup, startCluster, uniqueName, waitFor, type Cluster, type TestUser } from "./support/cluster";
import { startReplicated, type Replicated } from "./support/replica";

const dir = mkdtempSync(join(tmpdir(), "chatterbox-replica-"));
// As root, PostgreSQL runs as the postgres user, who must be able to enter it.
chmodSync(dir, 0o755);
let db: Replicated;
let cluster: Cluster;
let alice: TestUser;
let bob: TestUser;

beforeAll(async () => {
  db = await startReplicated(dir);
  cluster = await startCluster({ servers: 0, url: db.primary.url });
  for (let i = 0; i < 2; i++) {
    const server = await startServer({ port: 0, databaseUrl: db.primary.url, readDatabaseUrl: db.replicaUrl, balancer: cluster.balancerAddr, log: () => {} });
    cluster.servers.push(server);
  }
  await waitFor(() => cluster.balancer.servers().length === 2, "both servers to register");
  const [a, b] = [uniqueName("alice"), uniqueName("bob")];
  await signup(cluster.balancerAddr, a);
  await signup(cluster.balancerAddr, b);
  alice = await connectUser(cluster.balancerAddr, a);
  bob = await connectUser(cluster.balancerAddr, b);
}, 90_000);

afterAll(async () => {
  await alice?.session.close();
  await bob?.session.close();
  await cluster?.stop();
  await db?.stop();
  rmSync(dir, { recursive: true, force: true });
});

async function reads(source: "primary" | "replica"): Promise<number> {
  let total = 0;
  for (const server of cluster.servers) {
    const metric = await server.metrics.registry.getSingleMetric("chatterbox_reads_total")!.get();
    total += metric.values.find((v) => v.labels.source === source)?.value ?? 0;
  }
  return total;
}

/** The users' acknowledgements are in, so that no write of theirs lands between the catch-up and the read. */
async function waitForQuiet(): Promise<void> {
  await Bun.sleep(300);
  await alice.session.flushAcks();
  await bob.session.flushAcks();
}

test("a caught-up replica answers history", async () => {
  for (let i = 0; i < 5; i++) await alice.session.sendText(bob.name, `m${i}`);
  // What the sessions write of their own (what each device received and read) goes first: then nothing is in flight.
  await waitForQuiet();
  // A server's own writes (a connection's last-seen mark, a receipt) may land
  // between the catch-up and the read, and then the primary answers, rightly:
  // so the replica must answer within a few tries, each history complete.
  let answered = false;
  for (let attempt = 0; attempt < 5 && !answered; attempt++) {
    await db.caughtUp();
    const before = await reads("replica");
    expect((await bob.session.history(alice.name)).map((m) => m.text)).toEqual(["m0", "m1", "m2", "m3", "m4"]);
    answered = (await reads("replica")) > before;
  }
  expect(answered).toBe(true);
});

test("while the replica lags, history, fetch and file downloads still show everything, in order, from the primary", async () => {
  await db.delay(5_000);
  try {
    for (let i = 5; i < 8; i++) await alice.session.sendText(bob.name, `m${i}`);
    const path = join(dir, "photo.bin");
    const bytes = crypto.getRandomValues(new Uint8Array(300_000));
    await Bun.write(path, bytes);
    await alice.session.sendFile({ to: bob.name }, path);
    const before = { primary: await reads("primary"), replica: await reads("replica") };

    const history = await bob.session.history(alice.name);
    expect(history.map((m) => m.text).slice(0, 8)).toEqual(["m0", "m1", "m2", "m3", "m4", "m5", "m6", "m7"]);
    expect(history).toHaveLength(9);
    const file = history[8]!;
    expect(file.file).toBeDefined();
    const saved = await bob.session.fetchFile(file.file!, file.from);
    expect(new Uint8Array(await Bun.file(saved).arrayBuffer())).toEqual(bytes);
    // fetch, as a client filling a gap asks it (as alice, on a link of its own: her session is done).
    const link = await rawLink(await askBalancer(cluster.balancerAddr), alice.name);
    try {
      const { messages } = await link.request("fetch", { conv: history[0]!.conv, after: 5 });
      expect((messages as { seq: number }[]).map((m) => m.seq)).toEqual(history.slice(5).map((m) => m.seq));
    } finally {
      link.close();
    }

    // Nothing of it came from the replica, which has none of it yet.
    expect(await reads("replica")).toBe(before.replica);
    expect(await reads("primary")).toBeGreaterThan(before.primary);
  } finally {
    await db.delay(0);
  }
}, 60_000);

test("once the replica catches up, it answers again, with the same history", async () => {
  // What the sessions write of their own (what each device received and read) goes first: then nothing is in flight.
  await waitForQuiet();
  // As in the first test: a server's own write may land between the catch-up and the read, and then the primary
  // answers, rightly; the replica must answer within a few tries, and every page of every try is complete.
  let answered = false;
  for (let attempt = 0; attempt < 5 && !answered; attempt++) {
    await db.caughtUp();
    const before = await reads("replica");
    const history = await bob.session.history(alice.name);
    expect(history.map((m) => m.text).slice(0, 8)).toEqual(["m0", "m1", "m2", "m3", "m4", "m5", "m6", "m7"]);
    expect(history).toHaveLength(9);
    // The client pages history (it asks again past the first page, which here is the whole of it): each page from the replica.
    answered = (await reads("replica")) > before;
  }
  expect(answered).toBe(true);
});
