/**
 * A server survives bad input: each malformed, out-of-order, oversized,
 * unauthorised or slow connection gets a refusal with a stable code (and, where
 * the stream cannot go on, a bye and a close), while a well-behaved client on
 * the same server keeps chatting and the messages stored before stay intact.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { heapStats } from "bun:jsc";
import postgres from "postgres";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Link, parseAddress } from "../net/link";
import { decode, encode } from "../protocol/codec";
import type { ChatError } from "../protocol/errors";
import { frame, FrameReader, HEADER_BYTES } from "../protocol/frame";
import { MAX_ACKS, PROTOCOL_VERSION } from "../protocol/messages";
import { signupAccount } from "../client/account";
import { connectUser, PASSWORD, rawLink, ROOT, signup, startCluster, uniqueName, waitFor, type Cluster, type TestUser } from "./support/cluster";
import { refusal } from "./support/errors";
import { TEST_CA } from "./support/tls";

// Long enough that a real login under a loaded CI machine (TLS, argon2id) never
// meets it; the tests below show it is enforced, not how fast.
const LOGIN_TIMEOUT_MS = 2_000;
const OUTBOX_LIMIT = 64 * 1024;

let cluster: Cluster;
let addr: string;
let good: TestUser;
let friend: TestUser;
/** What the good client has sent to its friend, in order: the history must hold exactly these. */
const sent: string[] = [];

beforeAll(async () => {
  cluster = await startCluster({ servers: 1, config: { loginTimeoutMs: LOGIN_TIMEOUT_MS, outboxLimit: OUTBOX_LIMIT, sendsPerSecond: 0 } });
  addr = cluster.servers[0]!.addr;
  for (const name of ["good", "friend", "prober", "flooder"]) await signup(cluster.balancerAddr, name);
  good = await connectUser(cluster.balancerAddr, "good");
  friend = await connectUser(cluster.balancerAddr, "friend");
  await goodClientStillWorks();
}, 60_000);

afterAll(async () => {
  await good?.session.close();
  await friend?.session.close();
  await cluster?.stop();
});

/** The well-behaved client on the same server: its send is acknowledged and delivered, and `who` answers. */
async function goodClientStillWorks(): Promise<void> {
  expect(good.ended).toBeUndefined();
  expect(good.session.connected).toBe(true);
  const text = `still chatting ${sent.length + 1}`;
  const reply = await good.session.sendText("friend", text);
  sent.push(text);
  expect(reply.seq).toBe(sent.length);
  expect(reply.duplicate).toBe(false);
  await waitFor(() => friend.texts().includes(text), "the friend to receive the good client's message", 5_000);
  // Presence shows the people one shares a conversation with.
  const contacts = await good.session.who();
  expect(contacts.filter((c) => c.online).map((c) => c.name)).toContain("friend");
}

/** Link handlers that record the bye and the close. */
function watcher() {
  const seen = { bye: undefined as ChatError | undefined, closed: false, events: [] as string[] };
  const handlers = {
    onBye: (e: Error) => (seen.bye = e as ChatError),
    onClose: () => (seen.closed = true),
    onEvent: (ev: string) => seen.events.push(ev),
  };
  return { seen, handlers };
}

/** A TCP connection that speaks frames but none of Link's manners (no hello unless asked). */
async function rawSocket(address: string) {
  const { host, port } = parseAddress(address);
  const reader = new FrameReader();
  const frames: Record<string, unknown>[] = [];
  let closed = false;
  let handshaken!: () => void;
  const ready = new Promise<void>((resolve) => (handshaken = resolve));
  const socket = await Bun.connect({
    hostname: host,
    port,
    tls: { ca: TEST_CA.certPem, rejectUnauthorized: true },
    socket: {
      // What is written before the TLS handshake ends is lost: wait for it.
      handshake: () => handshaken(),
      data: (_s, chunk) => {
        for (const payload of reader.push(chunk)) frames.push(decode(payload));
      },
      close: () => void (closed = true),
      error: () => void (closed = true),
    },
  });
  await ready;
  return {
    frames,
    get closed() {
      return closed;
    },
    send: (value: Record<string, unknown>) => socket.write(encode(value)),
    close: () => socket.end(),
  };
}

function header(length: number): Uint8Array {
  const out = new Uint8Array(HEADER_BYTES);
  new DataView(out.buffer).setUint32(0, length);
  return out;
}

test("a frame that is not MessagePack gets bye E_BAD_FRAME and the connection is closed", async () => {
  const { seen, handlers } = watcher();
  const link = await rawLink(addr, "prober", handlers);
  link.sendRaw(frame(new Uint8Array([0x85, 0xa1, 0x00, 0xff])));
  await waitFor(() => seen.closed, "the server to close the connection", 5_000);
  expect(seen.bye?.code).toBe("E_BAD_FRAME");
  await goodClientStillWorks();
});

test("a well-formed map that is not a request gets bye E_BAD_FRAME and the connection is closed", async () => {
  const { seen, handlers } = watcher();
  const link = await rawLink(addr, "prober", handlers);
  link.sendRaw(encode({ t: "res", id: "one", hello: "?" }));
  await waitFor(() => seen.closed, "the server to close the connection", 5_000);
  expect(seen.bye?.code).toBe("E_BAD_FRAME");
  await goodClientStillWorks();
});

test("a header announcing more than maxFrame gets bye E_FRAME_TOO_LARGE before its body is sent, and the connection is closed", async () => {
  const { seen, handlers } = watcher();
  const link = await rawLink(addr, "prober", handlers);
  const maxFrame = link.helloReply.maxFrame as number;
  expect(maxFrame).toBeGreaterThan(0);
  // The header alone: the server must not wait for (or buffer) the body it announces.
  link.sendRaw(header(maxFrame + 1));
  await waitFor(() => seen.closed, "the server to close the connection", 5_000);
  expect(seen.bye?.code).toBe("E_FRAME_TOO_LARGE");
  await goodClientStillWorks();
});

test("a first request that is not hello is refused with E_HELLO_FIRST, then bye and close", async () => {
  const socket = await rawSocket(addr);
  socket.send({ t: "req", id: 1, op: "ping" });
  await waitFor(() => socket.closed, "the server to close the connection", 5_000);
  expect(socket.frames).toEqual([
    { t: "res", id: 1, ok: false, code: "E_HELLO_FIRST", message: expect.any(String) },
    { t: "bye", code: "E_HELLO_FIRST", message: expect.any(String) },
  ]);
  await goodClientStillWorks();
});

test("a hello with another protocol version is refused with E_VERSION, then bye and close", async () => {
  const socket = await rawSocket(addr);
  socket.send({ t: "req", id: 1, op: "hello", v: PROTOCOL_VERSION + 1, role: "client" });
  await waitFor(() => socket.closed, "the server to close the connection", 5_000);
  expect(socket.frames).toEqual([
    { t: "res", id: 1, ok: false, code: "E_VERSION", message: expect.any(String) },
    { t: "bye", code: "E_VERSION", message: expect.any(String) },
  ]);
  // Link.connect reports the same refusal to its caller.
  const error = await refusal(Link.connect(addr, { hello: { role: "client", v: 0 } }));
  expect(error.code).toBe("E_VERSION");
  await goodClientStillWorks();
});

test("an unknown op is refused with E_UNKNOWN_OP and the connection stays usable", async () => {
  const { seen, handlers } = watcher();
  const link = await rawLink(addr, undefined, handlers);
  expect((await refusal(link.request("frobnicate", { x: 1 }))).code).toBe("E_UNKNOWN_OP");
  expect(await link.request("ping")).toMatchObject({ ok: true });
  expect(link.closed).toBe(false);
  expect(seen.bye).toBeUndefined();
  link.close();
  await goodClientStillWorks();
});

test("an op named like a built-in object property is unknown too, not an internal error", async () => {
  const link = await rawLink(addr);
  for (const op of ["__proto__", "constructor", "toString", "hasOwnProperty"]) {
    const error = await refusal(link.request(op));
    expect({ op, code: error.code }).toEqual({ op, code: "E_UNKNOWN_OP" });
  }
  expect(await link.request("ping")).toMatchObject({ ok: true });
  link.close();
  await goodClientStillWorks();
});

test("requests before login are refused with E_NOT_LOGGED_IN and store nothing", async () => {
  const link = await rawLink(addr);
  const send = link.request("send", { to: "friend", cmid: "before-login", body: new Uint8Array([1, 2, 3]) });
  expect((await refusal(send)).code).toBe("E_NOT_LOGGED_IN");
  for (const op of ["who", "sync", "history"]) {
    expect((await refusal(link.request(op, { with: "friend" }))).code).toBe("E_NOT_LOGGED_IN");
  }
  expect(await link.request("ping")).toMatchObject({ ok: true });
  link.close();
  await goodClientStillWorks();
});

const INVALID_NAMES = ["", "Alice", "a b", "a".repeat(33), "../x", "bob\n", "é"];

/**
 * A link on which the real client's signup goes out with some fields replaced:
 * a request that is valid in every other field, whatever the signup carries.
 */
function tampered(link: Link, fields: Record<string, unknown>): Link {
  return { request: (op: string, args: Record<string, unknown>) => link.request(op, { ...args, ...fields }) } as unknown as Link;
}

test("the server refuses a signup with an invalid name with E_INVALID_NAME", async () => {
  const link = await rawLink(addr);
  for (const name of INVALID_NAMES) {
    const error = await refusal(signupAccount(tampered(link, { user: name }), "placeholder", PASSWORD));
    expect({ name, code: error.code }).toEqual({ name, code: "E_INVALID_NAME" });
  }
  for (const user of [undefined, 42, ["alice"]]) {
    expect((await refusal(signupAccount(tampered(link, { user }), "placeholder", PASSWORD))).code).toBe("E_INVALID_NAME");
  }
  link.close();
  // The longest valid name is accepted: the limit is 32, not less.
  await signup(cluster.balancerAddr, "a".repeat(32));
  await goodClientStillWorks();
});

test("the client refuses an invalid name with E_INVALID_NAME, not a crash", async () => {
  for (const name of INVALID_NAMES) {
    const error = await refusal(signup(cluster.balancerAddr, name));
    expect({ name, code: error.code }).toEqual({ name, code: "E_INVALID_NAME" });
  }
});

test("the server refuses a signup whose login key is not 32 bytes with E_BAD_REQUEST", async () => {
  const link = await rawLink(addr);
  for (const auth of [new Uint8Array(31), new Uint8Array(33), "a password in clear", undefined]) {
    const name = uniqueName("badkey");
    const error = await refusal(signupAccount(tampered(link, { auth }), name, PASSWORD));
    expect({ auth, code: error.code }).toEqual({ auth, code: "E_BAD_REQUEST" });
  }
  link.close();
  await goodClientStillWorks();
});

// The password never leaves the client, so the client is the one that refuses it.
test("signup with a short password is refused with E_WEAK_PASSWORD and does not take the name", async () => {
  const name = uniqueName("weak");
  expect((await refusal(signup(cluster.balancerAddr, name, "short"))).code).toBe("E_WEAK_PASSWORD");
  await signup(cluster.balancerAddr, name);
  await goodClientStillWorks();
});

test("signup with a taken name is refused with E_NAME_TAKEN, and the owner can still log in", async () => {
  expect((await refusal(signup(cluster.balancerAddr, "friend", "another password"))).code).toBe("E_NAME_TAKEN");
  const link = await rawLink(addr, "prober");
  link.close();
  await goodClientStillWorks();
});

test("login as a user who does not exist is refused with E_NO_SUCH_USER", async () => {
  expect((await refusal(rawLink(addr, "nobody-here"))).code).toBe("E_NO_SUCH_USER");
  await goodClientStillWorks();
});

test("a message to a user who does not exist is refused with E_NO_SUCH_USER and the connection stays usable", async () => {
  const link = await rawLink(addr, "prober");
  const send = link.request("send", { to: "ghost", cmid: "to-ghost", body: new Uint8Array([1]) });
  expect((await refusal(send)).code).toBe("E_NO_SUCH_USER");
  expect(await link.request("ping")).toMatchObject({ ok: true });
  link.close();
  await goodClientStillWorks();
});

test("a send whose body is not bytes is refused with E_BAD_REQUEST and stores nothing", async () => {
  const link = await rawLink(addr, "prober");
  for (const body of ["text, not bytes", [1, 2, 3], 42, null, { 0: 1 }]) {
    const error = await refusal(link.request("send", { to: "friend", cmid: `bad-body-${typeof body}-${Math.random()}`, body }));
    expect({ body, code: error.code }).toEqual({ body, code: "E_BAD_REQUEST" });
  }
  const history = await link.request("history", { with: "friend" });
  expect(history.messages).toEqual([]);
  link.close();
  await goodClientStillWorks();
});

test("an ack with malformed pairs is refused with E_BAD_REQUEST and moves no cursor or read marker; one good ack moves each of its conversations", async () => {
  const link = await rawLink(addr, "prober");
  const peer = uniqueName("acked");
  await signup(cluster.balancerAddr, peer);
  const sentToFriend = await link.request("send", { to: peer, cmid: `ack-${Math.random()}`, body: new Uint8Array([1]) });
  const conv = sentToFriend.conv as number;
  const sql = postgres(cluster.url, { max: 1, onnotice: () => {} });
  // The device's delivery cursor and the person's read marker.
  const cursor = async () => {
    const [row] = await sql`select coalesce((select max(dc.seq) from device_cursors dc join devices d on d.id = dc.device_id where d.user_id = u.id and dc.conversation_id = ${conv}), 0)::int as c,
                              m.read_seq::int as r from members m join users u on u.id = m.user_id where u.name = 'prober' and m.conversation_id = ${conv}`;
    return `${row!.c}/${row!.r}`;
  };
  try {
    const before = await cursor();
    const tooMany = Array.from({ length: MAX_ACKS + 1 }, (_, i) => [i + 1, 1]);
    for (const acks of [undefined, [], "1:1", [[conv]], [[conv, -1]], [[conv, 1.5]], [[String(conv), 1]], [[0, 1]], [[conv, 1], [conv, 2]], tooMany]) {
      const shown = String(JSON.stringify(acks)).slice(0, 40);
      for (const field of ["acks", "read"]) {
        const error = await refusal(link.request("ack", acks === undefined ? {} : { [field]: acks }));
        expect({ field, acks: shown, code: error.code }).toEqual({ field, acks: shown, code: "E_BAD_REQUEST" });
      }
    }
    expect(await cursor()).toBe(before);
    // A conversation that is not the prober's is no error, and moves nobody's cursor.
    const [other] = await sql`select id from conversations where id <> ${conv} order by id limit 1`;
    const otherCursors = async () =>
      (await sql`select (coalesce(sum(read_seq), 0) + coalesce((select sum(seq) from device_cursors where conversation_id = ${other?.id ?? 0}), 0))::int as s
                 from members where conversation_id = ${other?.id ?? 0}`)[0]!.s;
    const othersBefore = await otherCursors();
    const pairs = [[conv, sentToFriend.seq as number], [other?.id ?? 2 ** 31 - 1, 999_999]];
    await link.request("ack", { acks: pairs, read: pairs, flush: true });
    expect(await cursor()).toBe(`${sentToFriend.seq}/${sentToFriend.seq}`);
    expect(await otherCursors()).toBe(othersBefore);
  } finally {
    await sql.end();
    link.close();
  }
  await goodClientStillWorks();
});

test("a connection that does not log in within loginTimeoutMs gets bye E_LOGIN_TIMEOUT and is closed", async () => {
  const { seen, handlers } = watcher();
  const started = Date.now();
  await rawLink(addr, undefined, handlers);
  await waitFor(() => seen.closed, "the server to close the idle connection", LOGIN_TIMEOUT_MS + 10_000);
  const waited = Date.now() - started;
  expect(seen.bye?.code).toBe("E_LOGIN_TIMEOUT");
  // Not before its time: a login that is merely slow is not cut off.
  expect(waited).toBeGreaterThanOrEqual(LOGIN_TIMEOUT_MS - 50);
  await goodClientStillWorks();
});

test("a connection that never even says hello is closed with bye E_LOGIN_TIMEOUT", async () => {
  const socket = await rawSocket(addr);
  await waitFor(() => socket.closed, "the server to close the silent connection", LOGIN_TIMEOUT_MS + 10_000);
  expect(socket.frames).toEqual([{ t: "bye", code: "E_LOGIN_TIMEOUT", message: expect.any(String) }]);
  await goodClientStillWorks();
});

test("repeated wrong passwords lock the account: E_RATE_LIMITED by the sixth attempt, even for the right password", async () => {
  const victim = uniqueName("victim");
  await signup(cluster.balancerAddr, victim);
  // rawLink's last argument is the password it logs in with.
  const attempt = () => refusal(rawLink(addr, victim, {}, "wrong password!"));
  const codes: string[] = [];
  for (let i = 0; i < 6; i++) codes.push((await attempt()).code);
  expect(codes.slice(0, 4)).toEqual(["E_AUTH", "E_AUTH", "E_AUTH", "E_AUTH"]);
  expect(codes[5]).toBe("E_RATE_LIMITED");
  // Locked means locked: the right password is refused too, without being checked.
  expect((await refusal(rawLink(addr, victim))).code).toBe("E_RATE_LIMITED");
  // The lock is short at first: once it expires, the right password works again.
  let link: Link | undefined;
  const deadline = Date.now() + 5_000;
  while (!link) {
    try {
      link = await rawLink(addr, victim);
    } catch (error) {
      expect((error as ChatError).code).toBe("E_RATE_LIMITED");
      if (Date.now() > deadline) throw error;
      await Bun.sleep(200);
    }
  }
  link.close();
  await goodClientStillWorks();
});

/**
 * A child process that logs in, syncs, then blocks its own event loop so that
 * it reads nothing until `go` exists (the kernel's buffers fill, then the
 * server's queue); then it reads what is left and reports what it saw once the
 * server has closed the connection.
 */
const SLOW_READER = `
import { existsSync, readFileSync, writeSync } from "node:fs";
import { rawLink } from ${JSON.stringify(join(ROOT, "tests/support/cluster.ts"))};
const [addr, name, go] = process.argv.slice(2);
const seen = { bye: null, closed: false, messages: 0 };
const link = await rawLink(addr, name, {
  onEvent: (ev) => { if (ev === "msg") seen.messages++; },
  onBye: (e) => { seen.bye = e.code; },
  onClose: () => { seen.closed = true; },
});
await link.request("sync");
writeSync(1, "READY\\n");
while (!existsSync(go)) Bun.sleepSync(20);
const expected = Number(readFileSync(go, "utf8"));
const deadline = Date.now() + 20_000;
while (!seen.closed && seen.messages < expected && Date.now() < deadline) await Bun.sleep(10);
writeSync(1, JSON.stringify(seen) + "\\n");
process.exit(0);
`;

async function startSlowReader(name: string) {
  const dir = mkdtempSync(join(tmpdir(), "chatterbox-slow-"));
  const script = join(dir, "slow-reader.ts");
  const go = join(dir, "go");
  writeFileSync(script, SLOW_READER);
  const proc = Bun.spawn([process.execPath, script, addr, name, go], { stdout: "pipe", stderr: "inherit", cwd: ROOT });
  const stdout = proc.stdout.getReader();
  let out = "";
  const readLine = async () => {
    while (!out.includes("\n")) {
      const { value, done } = await stdout.read();
      if (done) throw new Error(`the slow reader exited: ${out}`);
      out += new TextDecoder().decode(value);
    }
    const line = out.slice(0, out.indexOf("\n"));
    out = out.slice(out.indexOf("\n") + 1);
    return line;
  };
  expect(await readLine()).toBe("READY");
  return {
    /** Lets the child read again until it has `expected` messages, and returns what it saw. */
    async wake(expected: number): Promise<{ bye: string | null; closed: boolean; messages: number }> {
      writeFileSync(go, String(expected));
      const report = JSON.parse(await readLine());
      await proc.exited;
      return report;
    },
    stop() {
      proc.kill("SIGKILL");
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** Whether a server still holds a connection of the user, as ChatDB records it. */
async function online(name: string): Promise<boolean> {
  const sql = postgres(cluster.url, { max: 1, onnotice: () => {} });
  try {
    const [row] = await sql`select count(*)::int as n from connections c join users u on u.id = c.user_id where u.name = ${name}`;
    return row!.n > 0;
  } finally {
    await sql.end();
  }
}

/** Bytes this process (servers included: they run in it) still holds after a full collection. */
function retainedBytes(): number {
  Bun.gc(true);
  Bun.gc(true);
  return heapStats().heapSize;
}

const BODY_BYTES = 16 * 1024;

/**
 * Pours `total` bytes of 16 KiB messages into `to`, `burst` at a time (a burst
 * is sent in one write and committed together). Returns the bytes poured.
 */
async function flood(to: string, total: number, burst: number): Promise<number> {
  const link = await rawLink(addr, "flooder");
  const body = new Uint8Array(BODY_BYTES).fill(0x5a);
  let poured = 0;
  try {
    while (poured < total) {
      await Promise.all(Array.from({ length: burst }, () => link.request("send", { to, cmid: crypto.randomUUID(), body })));
      poured += burst * BODY_BYTES;
    }
  } finally {
    link.close();
  }
  return poured;
}

/** A logged-in, synced link that reads everything and counts the messages. */
async function reader(name: string) {
  await signup(cluster.balancerAddr, name);
  const { seen, handlers } = watcher();
  const link = await rawLink(addr, name, handlers);
  await link.request("sync");
  return { name, link, seen, messages: () => seen.events.filter((e) => e === "msg").length };
}

// Two 16 KiB messages at a time stay well inside OUTBOX_LIMIT for a client that reads.
const STEADY = 2;
// Well past what the kernel's socket buffers on both ends take (a few MiB) before
// the server's own queue starts to fill.
const FLOOD_BYTES = 16 * 1024 * 1024;
// A server that bounds each connection holds at most OUTBOX_LIMIT for it (plus
// noise); one that does not holds most of the flood.
const RETAINED_MAX = 4 * 1024 * 1024;

test("a client that reads a steady stream keeps up and is not cut off", async () => {
  const r = await reader(uniqueName("reader"));
  try {
    const poured = await flood(r.name, 4 * 1024 * 1024, STEADY);
    await waitFor(() => r.messages() === poured / BODY_BYTES || r.seen.closed, "every message to arrive", 10_000);
    expect(r.seen.bye?.code).toBeUndefined();
    expect(r.messages()).toBe(poured / BODY_BYTES);
  } finally {
    r.link.close();
  }
  await goodClientStillWorks();
}, 60_000);

test("a client that stops reading is not cut off: memory stays bounded, others are undisturbed, and when it reads again it gets every message", async () => {
  const slow = uniqueName("slow");
  await signup(cluster.balancerAddr, slow);
  const child = await startSlowReader(slow);
  try {
    expect(await online(slow)).toBe(true);
    const before = retainedBytes();
    const poured = await flood(slow, FLOOD_BYTES, STEADY);
    expect(retainedBytes() - before).toBeLessThan(RETAINED_MAX);
    await goodClientStillWorks();
    // What did not fit was left in the database: when it reads again, it catches up on the same connection.
    const seen = await child.wake(poured / BODY_BYTES);
    expect(seen.bye).toBeNull();
    expect(seen.closed).toBe(false);
    expect(seen.messages).toBe(poured / BODY_BYTES);
  } finally {
    child.stop();
  }
  await goodClientStillWorks();
}, 60_000);

test("a client that reads is not cut off by a burst its socket can take at once", async () => {
  // Six 16 KiB messages committed together: ~96 KiB, over OUTBOX_LIMIT, but less
  // than a loopback socket accepts in one write.
  const r = await reader(uniqueName("burst"));
  try {
    // One message first, so that the conversation exists and the burst is committed as one batch.
    await flood(r.name, BODY_BYTES, 1);
    await flood(r.name, 6 * BODY_BYTES, 6);
    await waitFor(() => r.messages() === 7 || r.seen.closed, "the burst to arrive", 5_000);
    expect(r.seen.bye?.code).toBeUndefined();
    expect(r.messages()).toBe(7);
  } finally {
    r.link.close();
  }
  await goodClientStillWorks();
});

test("a client that logs in and never syncs cannot make the server hold live messages without bound", async () => {
  const slow = uniqueName("nosync");
  await signup(cluster.balancerAddr, slow);
  const { seen, handlers } = watcher();
  // Logged in, but no sync: its live messages stay in the database until it asks for the backlog.
  const link = await rawLink(addr, slow, handlers);
  try {
    const before = retainedBytes();
    const poured = await flood(slow, FLOOD_BYTES, STEADY);
    expect(retainedBytes() - before).toBeLessThan(RETAINED_MAX);
    expect(seen.events.filter((e) => e === "msg").length).toBe(0);
    await link.request("sync", {}, 60_000);
    await waitFor(() => seen.events.filter((e) => e === "msg").length >= poured / BODY_BYTES || seen.closed, "the backlog to arrive", 20_000);
    expect(seen.bye?.code).toBeUndefined();
    expect(seen.events.filter((e) => e === "msg").length).toBe(poured / BODY_BYTES);
  } finally {
    link.close();
  }
  await goodClientStillWorks();
}, 60_000);

test("after all the bad input, every message stored before is intact and in order", async () => {
  await goodClientStillWorks();
  const history = await good.session.history("friend", 1000);
  expect(history.map((m) => m.text)).toEqual(sent);
  expect(history.map((m) => m.seq)).toEqual(sent.map((_, i) => i + 1));
  expect(history.every((m) => m.from === "good")).toBe(true);
  // And the friend saw each exactly once, in order.
  expect(friend.texts()).toEqual(sent);
});
