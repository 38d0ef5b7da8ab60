/**
 * Delivery guarantee 5, "crashes lose nothing acknowledged": chat servers run in
 * their own processes and die by SIGKILL in the middle of a message stream; the
 * clients find another server through the balancer by themselves.
 */
import { afterAll, afterEach, beforeAll, expect, test } from "bun:test";
import postgres from "postgres";
import type { SendResult } from "../client/session";
import { migrate, openDatabase } from "../db/connect";
import { startBalancer, type Balancer } from "../roles/balancer";
import { aliceAndBob, apartFrom, spawnServer, waitFor, type ServerProcess, type TestUser } from "./support/cluster";
import { testDatabaseUrl } from "./support/pg";
import { testIdentity } from "./support/tls";

const N = 500;
const IN_FLIGHT = 20;

let url: string;
const cleanups: (() => Promise<unknown> | unknown)[] = [];

beforeAll(async () => {
  url = await testDatabaseUrl();
  const database = openDatabase(url, { max: 1 });
  await migrate(database);
  await database.close();
}, 60_000);

afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});
afterAll(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

interface Setup {
  balancerAddr: string;
  alice: TestUser;
  bob: TestUser;
  /** The server process alice is on, and bob's (a different one). */
  aliceServer: ServerProcess;
  bobServer: ServerProcess;
}

/** A balancer, two server processes, and alice and bob logged in on different ones. */
async function twoServersApart(): Promise<Setup> {
  const balancer: Balancer = await startBalancer({ port: 0, strategy: "roundrobin", identity: await testIdentity(url) });
  cleanups.push(() => balancer.stop());
  const balancerAddr = `127.0.0.1:${balancer.port}`;
  // A bot's allowance: the stream is 500 pipelined sends from a new session, past a person's first burst of 50;
  // these tests are about the crash, not the limit (which has tests of its own).
  const servers = await Promise.all([spawnServer(url, balancerAddr, ["--send-rate", "10000"]), spawnServer(url, balancerAddr, ["--send-rate", "10000"])]);
  for (const server of servers) cleanups.push(() => server.kill9());
  await waitFor(() => servers.every((s) => balancer.servers().some((b) => b.id === s.id)), "both servers to register");

  const [alice, first] = await aliceAndBob(balancerAddr);
  cleanups.push(() => alice.session.close());
  const bob = await apartFrom(balancerAddr, alice, first);
  cleanups.push(() => bob.session.close());
  const aliceServer = servers.find((s) => s.id === alice.session.serverId);
  const bobServer = servers.find((s) => s.id === bob.session.serverId);
  if (!aliceServer || !bobServer) throw new Error("a session is on a server this test did not start");
  return { balancerAddr, alice, bob, aliceServer, bobServer };
}

const text = (i: number) => `message ${String(i).padStart(4, "0")}`;

/**
 * Sends N numbered messages in send order, keeping IN_FLIGHT unacknowledged at
 * a time. Every send is started in index order; results land at their index.
 * The first goes alone, so the stream starts in an existing conversation (a
 * cold first burst is ordering.test.ts's business).
 */
function stream(from: TestUser, to: string): { results: (SendResult | undefined)[]; acked(): number; done: Promise<void> } {
  const results: (SendResult | undefined)[] = new Array(N).fill(undefined);
  let next = 1;
  let acked = 0;
  const worker = async () => {
    while (next < N) {
      const i = next++;
      results[i] = await from.session.sendText(to, text(i));
      acked++;
    }
  };
  const done = from.session.sendText(to, text(0)).then(async (first) => {
    results[0] = first;
    acked++;
    await Promise.all(Array.from({ length: IN_FLIGHT }, worker));
  });
  return { results, acked: () => acked, done };
}

/** The first place where a sequence does not increase, or null: short to print when it fails. */
function firstInversion(seqs: number[]): { index: number; previous: number; seq: number } | null {
  for (let i = 1; i < seqs.length; i++) if (seqs[i]! <= seqs[i - 1]!) return { index: i, previous: seqs[i - 1]!, seq: seqs[i]! };
  return null;
}

function expectOnceInOrder(received: TestUser["received"], expectedTexts: string[]): void {
  expect(firstInversion(received.map((m) => m.seq))).toBeNull();
  expect(new Set(received.map((m) => m.id)).size).toBe(received.length);
  expect(received.map((m) => m.text)).toEqual(expectedTexts);
}

test("kill -9 of the recipient's server mid-stream: after reconnecting through the balancer, the recipient gets every acknowledged message once and in order", async () => {
  const { alice, bob, aliceServer, bobServer } = await twoServersApart();
  const sending = stream(alice, bob.name);

  await waitFor(() => bob.received.length >= N / 2, "bob to be half way through the stream");
  const receivedBeforeKill = bob.received.length;
  await bobServer.kill9();
  expect(receivedBeforeKill).toBeLessThan(N);

  await sending.done;
  const acknowledged = sending.results.map((r, i) => (r ? text(i) : undefined)).filter((t) => t !== undefined);
  expect(acknowledged.length).toBe(N);
  await waitFor(() => bob.received.length >= acknowledged.length, "bob to receive every acknowledged message", 30_000);
  // Late duplicates would arrive after the last new message: give them a moment.
  await Bun.sleep(300);

  expectOnceInOrder(bob.received, acknowledged);
  expect(bob.received.map((m) => m.id)).toEqual(sending.results.map((r) => r!.msg));
  // Bob's session found the surviving server by itself.
  expect(bob.session.connected).toBe(true);
  expect(bob.session.serverId).toBe(aliceServer.id);
  expect(bob.ended).toBeUndefined();
}, 60_000);

test("kill -9 of the sender's server mid-stream: the sender's unacknowledged sends go out again after it reconnects, and each is stored and delivered once, in order", async () => {
  const { alice, bob, aliceServer, bobServer } = await twoServersApart();
  const sending = stream(alice, bob.name);

  await waitFor(() => sending.acked() >= N / 2, "alice to be half way through the stream");
  await aliceServer.kill9();
  expect(sending.acked()).toBeLessThan(N);

  // Every send resolves: none is lost, none is refused.
  await sending.done;
  expect(sending.results.every((r) => r !== undefined)).toBe(true);
  const ids = sending.results.map((r) => r!.msg);
  expect(new Set(ids).size).toBe(N);
  expect(firstInversion(sending.results.map((r) => r!.seq))).toBeNull();

  await waitFor(() => bob.received.length >= N, "bob to receive every message", 30_000);
  await Bun.sleep(300);
  expectOnceInOrder(
    bob.received,
    Array.from({ length: N }, (_, i) => text(i)),
  );
  expect(bob.received.map((m) => m.id)).toEqual(ids);
  expect(alice.session.serverId).toBe(bobServer.id);
  expect(alice.session.unacknowledged).toBe(0);
  // Resent messages that the dead server had already committed were not stored again.
  const sql = postgres(url, { max: 1, onnotice: () => {} });
  try {
    const [row] = await sql`select count(*)::int as n from messages m join users u on u.id = m.sender_id where u.name = ${alice.name}`;
    expect(row!.n).toBe(N);
  } finally {
    await sql.end();
  }
}, 60_000);
