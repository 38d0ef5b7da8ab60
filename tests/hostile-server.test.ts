/**
 * Hostile clients against a real chat server (issue 14). Each attack runs in
 * its own process (tests/support/hostile-client.ts) and speaks the wire
 * protocol directly; each test asserts what the server refused it with, and
 * that a well-behaved pair on the same server keeps chatting afterwards.
 */
import { expect, test } from "bun:test";
import postgres from "postgres";
import { listen } from "../net/listener";
import { DEFAULT_CONFIG } from "../server/context";
import { Limits, READS_PER_CONNECTION } from "../server/limits";
import { Link } from "../net/link";
import { ChatError } from "../protocol/errors";
import { signup, uniqueName, waitFor, PASSWORD } from "./support/cluster";
import { hostileWorld } from "./support/hostile-world";
import { TEST_TLS } from "./support/tls";

/** Small limits, so that each is reached by a short attack. */
const CONFIG = {
  sendBurst: 20,
  sendsPerSecond: 2,
  maxConcurrentUploads: 3,
  storageQuotaBytes: 4 * 1024 * 1024,
  maxConnectionsPerAddress: 40,
  maxGroupMembers: 50,
};

const world = hostileWorld(CONFIG, ["mallory"]);
const { neighboursKeepChatting, attack } = world;

test("requests pipelined past the in-flight cap are read no faster than answered: at most 32 run at once, every one is answered", async () => {
  // A listener of our own with one slow op, so that what runs at once can be counted.
  let running = 0;
  let peak = 0;
  const server = listen<object>({
    port: 0,
    tls: TEST_TLS,
    initialState: () => ({}),
    routes: {
      slow: {
        async handle() {
          peak = Math.max(peak, ++running);
          await Bun.sleep(2);
          running--;
          return {};
        },
      },
    },
  });
  try {
    const neighbour = await Link.connect(`127.0.0.1:${server.port}`, { hello: { role: "client" } });
    const result = attack("pipeline", ["", "", "2000"], { HOSTILE_OP: "slow" }, `127.0.0.1:${server.port}`);
    await waitFor(() => running > 0, "the attack to start");
    // The neighbour is answered while the attacker's requests wait their turn.
    expect(await neighbour.request("slow", {})).toMatchObject({ ok: true });
    expect((await result).codes).toEqual({ ok: 2000 });
    expect(peak).toBeLessThanOrEqual(32 + 1);
    neighbour.close();
  } finally {
    server.stop(true);
  }
});

test("a client that does not wait out a retry-after is not read until it has passed: its next request starts no sooner", async () => {
  let refusedAt = 0;
  const starts: number[] = [];
  const server = listen<object>({
    port: 0,
    tls: TEST_TLS,
    initialState: () => ({}),
    routes: {
      limited: {
        handle() {
          starts.push(performance.now());
          if (refusedAt === 0) {
            refusedAt = performance.now();
            throw new ChatError("E_RATE_LIMITED", "Too fast", 300);
          }
          return {};
        },
      },
      ping: { handle: () => ({}) },
    },
  });
  try {
    const link = await Link.connect(`127.0.0.1:${server.port}`, { hello: { role: "client" } });
    const refusal = await link.request("limited", {}).catch((e) => e);
    expect(refusal).toMatchObject({ code: "E_RATE_LIMITED", retryAfterMs: 300 });
    // Sent at once, as a client that ignores the advice would: held, then answered.
    expect(await link.request("limited", {})).toMatchObject({ ok: true });
    expect(starts).toHaveLength(2);
    expect(starts[1]! - refusedAt).toBeGreaterThanOrEqual(299);
    // Another connection is not held by it.
    const other = await Link.connect(`127.0.0.1:${server.port}`, { hello: { role: "client" } });
    expect(await other.request("ping", {})).toMatchObject({ ok: true });
    link.close();
    other.close();
  } finally {
    server.stop(true);
  }
});

const REPLY = 256 * 1024;

test("a client that stops reading gets no more large replies built for it: none starts while more than its siblings' replies wait unsent, and all come once it reads", async () => {
  const limits = new Limits(DEFAULT_CONFIG);
  const queuedAtStart: number[] = [];
  const server = listen<object>({
    port: 0,
    tls: TEST_TLS,
    initialState: () => ({}),
    routes: {
      big: {
        handle: (conn) =>
          limits.read(conn, async () => {
            queuedAtStart.push(conn.outbox.queued);
            return { data: new Uint8Array(REPLY) };
          }),
      },
    },
  });
  try {
    const link = await Link.connect(`127.0.0.1:${server.port}`, { hello: { role: "client" } });
    const socket = (link as unknown as { socket: { pause(): void; resume(): void } }).socket;
    socket.pause();
    const replies = Promise.all(Array.from({ length: 100 }, () => link.request("big", {}, 60_000)));
    // Until the kernel's buffers are full; then the outbox holds a reply, and no read starts after that.
    await waitFor(() => queuedAtStart.length > 0, "the first read");
    await Bun.sleep(1000);
    const whileNotReading = queuedAtStart.length;
    expect(whileNotReading).toBeLessThan(100);
    socket.resume();
    expect(await replies).toHaveLength(100);
    // At most the replies of the reads that ran beside it (2 a connection) were still queued when a read began.
    expect(Math.max(...queuedAtStart)).toBeLessThanOrEqual(READS_PER_CONNECTION * (REPLY + 1024));
    link.close();
  } finally {
    server.stop(true);
  }
});

test("pipelined history requests on the real server are all answered, and the neighbours keep chatting", async () => {
  const result = await attack("pipeline", ["mallory", PASSWORD, "3000"], { HOSTILE_OP: "history", HOSTILE_ARGS: JSON.stringify({ with: "alice", limit: 1000 }) });
  // Each one answered: a page, or, while the server is past what it can carry, E_RATE_LIMITED for a reader this heavy (server/admission.ts).
  expect(result.codes.ok).toBeGreaterThan(0);
  expect((result.codes.ok ?? 0) + (result.codes.E_RATE_LIMITED ?? 0)).toBe(3000);
  await neighboursKeepChatting();
});

test("signups pipelined on one connection hash one at a time: the rest are E_RATE_LIMITED", async () => {
  const result = await attack("signups", [uniqueName("flood"), "", "20"]);
  expect(result.codes.E_RATE_LIMITED).toBeGreaterThanOrEqual(15);
  expect((result.codes.ok ?? 0) + (result.codes.E_RATE_LIMITED ?? 0)).toBe(20);
  await neighboursKeepChatting();
});

test("parallel wrong guesses as an account's lock expires get one guess between them (E_AUTH once, E_RATE_LIMITED for the rest)", async () => {
  const victim = uniqueName("victim");
  await signup(world.cluster.balancerAddr, victim);
  const sql = postgres(world.cluster.url, { max: 1, onnotice: () => {} });
  try {
    // Five failures already, and the lock they earned just ended.
    await sql`update users set failed_logins = 5, locked_until = now() - interval '1 second' where name = ${victim}`;
    const result = await attack("guesses", [victim, "", "10"]);
    expect(result.codes).toEqual({ E_AUTH: 1, E_RATE_LIMITED: 9 });
    const [row] = await sql`select failed_logins from users where name = ${victim}`;
    expect(row!.failed_logins).toBe(6);
  } finally {
    await sql.end();
  }
  await neighboursKeepChatting();
});

test("a stranger's partial frame past the small pre-login budget is refused at its header (bye E_FRAME_TOO_LARGE)", async () => {
  const result = await attack("partial", []);
  expect(result.bye).toBe("E_FRAME_TOO_LARGE");
  await neighboursKeepChatting();
});

test("connections from one address past the per-address cap are closed at once", async () => {
  const result = await attack("connections", ["", "", "60"]);
  // alice, bob and the server's own links hold a few of the 40 as well.
  expect(result.kept).toBeLessThanOrEqual(CONFIG.maxConnectionsPerAddress);
  expect(result.closed).toBeGreaterThanOrEqual(60 - CONFIG.maxConnectionsPerAddress);
  await neighboursKeepChatting();
});

test("a user sending past their allowance gets E_RATE_LIMITED with a retry-after, and nothing past it is stored", async () => {
  const sql = postgres(world.cluster.url, { max: 1, onnotice: () => {} });
  try {
    const count = async () => Number((await sql`select count(*)::int as n from messages m join users u on u.id = m.sender_id where u.name = 'mallory'`)[0]!.n);
    const before = await count();
    const result = await attack("sends", ["mallory", PASSWORD, "40"], { HOSTILE_TO: "bob" });
    expect(result.codes.E_RATE_LIMITED).toBeGreaterThan(0);
    // Each refusal holds the connection until one more message is allowed: past the burst, at most one is stored per refusal.
    expect(result.codes.ok).toBeLessThanOrEqual(CONFIG.sendBurst + result.codes.E_RATE_LIMITED + 1);
    expect(result.codes.ok + result.codes.E_RATE_LIMITED).toBe(40);
    expect(result.retryAfterMs).toBeGreaterThan(0);
    expect(await count()).toBe(before + result.codes.ok);
  } finally {
    await sql.end();
  }
  await neighboursKeepChatting();
});

test("uploads past the concurrent cap are E_RATE_LIMITED, and one past the storage quota is E_QUOTA", async () => {
  const uploader = uniqueName("uploader");
  await signup(world.cluster.balancerAddr, uploader);
  const result = await attack("uploads", [uploader, PASSWORD, "5"], { HOSTILE_TO: "bob", HOSTILE_BIG: String(CONFIG.storageQuotaBytes) });
  expect(result.codes).toEqual({ ok: CONFIG.maxConcurrentUploads, E_RATE_LIMITED: 5 - CONFIG.maxConcurrentUploads });
  // The cap on open uploads answers first; a fresh account shows the quota on its own.
  const fresh = uniqueName("hoarder");
  await signup(world.cluster.balancerAddr, fresh);
  const quota = await attack("uploads", [fresh, PASSWORD, "1"], { HOSTILE_TO: "bob", HOSTILE_BIG: String(CONFIG.storageQuotaBytes) });
  expect(quota.codes).toEqual({ ok: 1 });
  expect(quota.big).toBe("E_QUOTA");
  await neighboursKeepChatting();
});

test("a group change naming 65,535 people is refused as E_GROUP_FULL before any is looked up", async () => {
  const result = await attack("members", ["mallory", PASSWORD, "65535"]);
  expect(result.code).toBe("E_GROUP_FULL");
  await neighboursKeepChatting();
});
