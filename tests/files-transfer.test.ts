/**
 * Files across servers, at size: a 50 MiB file reaches a user on another server
 * and a group with an offline member byte for byte, the servers (separate
 * processes, read from /proc) and the clients keep memory flat while it
 * streams, chat goes on during the upload, and the file's plaintext is
 * nowhere an operator can look: not in any table, not in the servers' logs.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { createHash, randomBytes } from "node:crypto";
import { closeSync, mkdtempSync, openSync, readdirSync, readFileSync, readSync, rmSync, writeSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import postgres from "postgres";
import type { Subprocess } from "bun";
import type { Progress } from "../client/progress";
import { inbox } from "../roles/client";
import { migrate, openDatabase } from "../db/connect";
import { startBalancer, type Balancer } from "../roles/balancer";
import { aliceAndBob, apartFrom, home, PASSWORD, ROOT, signup, uniqueName, waitFor, type TestUser } from "./support/cluster";
import { dumpDatabase, findIn } from "./support/dump";
import { testDatabaseUrl } from "./support/pg";
import { testIdentity } from "./support/tls";

const MiB = 1024 * 1024;
const SIZE = 50 * MiB;
const CHUNK = 256 * 1024;
const MARKER = `file-plaintext-marker-${randomBytes(9).toString("hex")}-Käsebrot✓`;
/** The server's default limit: twice the 50 MiB file, to see whether memory follows the size. */
const DOUBLE = 100 * MiB;
/**
 * Holding a 100 MiB file rather than a 50 MiB one would add 50 MiB to the peak
 * on top of what streaming itself grows by between the two, which is garbage
 * waiting for a full collection: measured 9-54 MiB (54 once in a quiet CI run,
 * 41-48 several times under load; the branch point of this round the same).
 * So the bound sits above the noise and below the noise plus a held file.
 */
const FLAT_BOUND = 64 * MiB;
/** Streaming costs 60-100 MiB of RSS over idle (see below); holding the file would add 50 more. */
const ABSOLUTE_BOUND = 120 * MiB;
/** A window of 8 chunks in flight, each as plaintext, sealed and framed, is ~6 MiB. */
const CLIENT_LIVE_BOUND = 20 * MiB;

let url: string;
let sql: postgres.Sql;
let balancer: Balancer;
let balancerAddr: string;
let dir: string;
let bigFile: string;
let bigSha: string;
const servers: LoggedServer[] = [];
let alice: TestUser;
let bob: TestUser;
/** Alice's server and bob's: different processes. */
let aliceServer: LoggedServer;
let bobServer: LoggedServer;
/** Everyone whose folder under CHATTERBOX_HOME this file fills. */
const users: string[] = [];

beforeAll(async () => {
  url = await testDatabaseUrl();
  const database = openDatabase(url, { max: 1 });
  await migrate(database);
  await database.close();
  sql = postgres(url, { max: 1, onnotice: () => {} });
  balancer = await startBalancer({ port: 0, strategy: "roundrobin", identity: await testIdentity(url) });
  balancerAddr = `127.0.0.1:${balancer.port}`;
  servers.push(...(await Promise.all([spawnLoggedServer(url, balancerAddr), spawnLoggedServer(url, balancerAddr)])));
  await waitFor(() => servers.every((s) => balancer.servers().some((b) => b.id === s.id)), "both servers to register");

  dir = mkdtempSync(join(tmpdir(), "chatterbox-files-"));
  bigFile = join(dir, "big.bin");
  // The marker at the start, across the first chunk boundary, in the middle and at the very end.
  bigSha = writeRandomFile(bigFile, SIZE, [0, CHUNK - 10, SIZE / 2 + 12345, SIZE - Buffer.byteLength(MARKER)]);

  [alice, bob] = await aliceAndBob(balancerAddr);
  users.push(alice.name, bob.name);
  bob = await apartFrom(balancerAddr, alice, bob);
  aliceServer = servers.find((s) => s.id === alice.session.serverId)!;
  bobServer = servers.find((s) => s.id === bob.session.serverId)!;
}, 60_000);

afterAll(async () => {
  await alice?.session.close();
  await bob?.session.close();
  for (const s of servers) {
    s.proc.kill("SIGKILL");
    await s.proc.exited;
  }
  balancer?.stop();
  // Drops the 300 MiB of chunks without writing them out at the next checkpoint (DROP DATABASE forces one).
  await sql?.unsafe("truncate files, file_chunks");
  await sql?.end();
  // Some 300 MiB of files: the sent ones and the users' downloads.
  rmSync(dir, { recursive: true, force: true });
  for (const user of users) rmSync(join(home(), user), { recursive: true, force: true });
});

// --- the direct transfer, shared by the tests that look at it ------------------------

/** Peak RSS of alice's server and of bob's. */
type Peaks = { sender: number; recipient: number };

interface Sent {
  saved: string;
  fileId: string;
  key: Uint8Array;
}

interface DirectTransfer extends Sent {
  /** Before either transfer, then the peaks while the 50 MiB file went through and while a 100 MiB one did. */
  idle: Peaks;
  large: Peaks;
  double: Peaks;
  /** The most this process (both clients) held, measured after a full GC at every tenth of each upload and download. */
  clientLive: number;
  /** Whether the upload had finished when bob saw the text alice sent during it. */
  uploadDoneWhenTextArrived?: boolean;
  textSeenAt: number;
  uploadDoneAt: number;
}

let direct: Promise<DirectTransfer> | undefined;

/**
 * Alice sends bob the 50 MiB file, with a text during its upload, then a 100
 * MiB one; bob saves both. The servers' RSS is sampled all along, and the
 * clients' live heap at every tenth of the way.
 */
function directTransfer(): Promise<DirectTransfer> {
  return (direct ??= (async () => {
    const doubleFile = join(dir, "double.bin");
    const doubleSha = writeRandomFile(doubleFile, DOUBLE, []);
    // Logins hash passwords with argon2 (tens of MiB): let the servers give that back first.
    await settle([aliceServer.proc.pid, bobServer.proc.pid]);
    const sampler = sampleRss([aliceServer.proc.pid, bobServer.proc.pid]);
    await Bun.sleep(300);
    const idle = sampler.peaks();
    Bun.gc(true);
    const heapBase = process.memoryUsage().heapUsed;
    let clientLive = 0;
    /** Reports progress to `also`, and at each tenth of the way measures what the client holds. */
    const watch = (size: number, also?: (done: number) => void): Progress => {
      let next = size / 10;
      return {
        update(done) {
          also?.(done);
          if (done < next) return;
          next += size / 10;
          Bun.gc(true);
          clientLive = Math.max(clientLive, process.memoryUsage().heapUsed - heapBase);
        },
        end() {},
      };
    };

    sampler.reset();
    const text = `while uploading ${uniqueName("t")}`;
    let textSending: Promise<unknown> | undefined;
    let uploadDone = false;
    let textSeenAt = 0;
    let uploadDoneWhenTextArrived: boolean | undefined;
    const sendText = (done: number) => {
      if (done < SIZE / 5 || textSending) return;
      textSending = alice.session.sendText(bob.name, text);
      void waitFor(() => bob.texts().includes(text), "bob to see the text", 30_000).then(() => {
        textSeenAt = Date.now();
        uploadDoneWhenTextArrived = uploadDone;
      });
    };
    const first = await sendAndSave(bigFile, watch(SIZE, sendText), watch(SIZE));
    uploadDone = true;
    const large = sampler.peaks();
    await textSending;

    sampler.reset();
    const second = await sendAndSave(doubleFile, watch(DOUBLE), watch(DOUBLE));
    const double = sampler.peaks();
    sampler.stop();
    expect(sha256File(second.saved)).toBe(doubleSha);
    return { ...first, idle, large, double, clientLive, uploadDoneWhenTextArrived, textSeenAt };
  })());
}

async function sendAndSave(path: string, up: Progress, down: Progress): Promise<Sent & { uploadDoneAt: number }> {
  const sent = await alice.session.sendFile({ to: bob.name }, path, up);
  const uploadDoneAt = Date.now();
  await waitFor(() => bob.received.some((m) => m.file?.id === sent.file.id), "bob to receive the file message", 30_000);
  const message = bob.received.find((m) => m.file?.id === sent.file.id)!;
  const saved = await bob.session.fetchFile(message.file!, message.from, down);
  return { saved, fileId: sent.file.id, key: sent.file.key, uploadDoneAt };
}

test("a 50 MiB file sent to a user on another server is saved byte for byte identical", async () => {
  const { saved } = await directTransfer();
  expect(resolve(saved).startsWith(join(home(), bob.name, "downloads", alice.name) + "/")).toBe(true);
  expect(sha256File(saved)).toBe(bigSha);
  // Nothing is left half-way.
  expect(readdirSync(join(home(), bob.name, "downloads", ".partial"))).toEqual([]);
}, 60_000);

/*
 * Why the bound is not "well under the file's size": a Bun process's RSS
 * climbs 60-100 MiB above idle while a stream of 256 KiB buffers goes
 * through it (garbage and allocator pages not yet given back, ~3x the live
 * heap), rising with the bytes streamed up to ~40 MiB and flat from there:
 * the same for 50 MiB as for 100 MiB. So what tells a streaming server from
 * one that holds the file is whether the peak follows the size: a 100 MiB
 * file held would add 50 MiB to the 50 MiB file's peak.
 */
test("neither server holds the file in memory: its peak RSS for 50 MiB stays bounded, and is no higher for 100 MiB", async () => {
  const { idle, large, double } = await directTransfer();
  for (const side of ["sender", "recipient"] as const) {
    console.log(`${side}'s server: RSS ${mib(idle[side])} idle, peak ${mib(large[side])} for 50 MiB, ${mib(double[side])} for 100 MiB`);
  }
  expect(large.sender - idle.sender).toBeLessThan(ABSOLUTE_BOUND);
  expect(large.recipient - idle.recipient).toBeLessThan(ABSOLUTE_BOUND);
  expect(double.sender - large.sender).toBeLessThan(FLAT_BOUND);
  expect(double.recipient - large.recipient).toBeLessThan(FLAT_BOUND);
}, 60_000);

test("neither client holds the file in memory: what sender and recipient hold mid-transfer stays under a few windows of chunks", async () => {
  const { clientLive } = await directTransfer();
  console.log(`clients: at most ${mib(clientLive)} live (after a full GC) over idle during the 50 and 100 MiB transfers`);
  // A client holding the file would hold at least 45 MiB at 90% of the 50 MiB one.
  expect(clientLive).toBeLessThan(CLIENT_LIVE_BOUND);
}, 60_000);

test("chat flows while a large file uploads: a text sent during the upload is delivered before the upload ends", async () => {
  const t = await directTransfer();
  expect(t.uploadDoneWhenTextArrived).toBe(false);
  expect(t.textSeenAt).toBeLessThan(t.uploadDoneAt);
}, 60_000);

// --- the group transfer ---------------------------------------------------------------

interface GroupTransfer {
  fileId: string;
  key: Uint8Array;
  group: string;
  online: string;
  offline: string;
}

let grouped: Promise<GroupTransfer> | undefined;

function groupTransfer(): Promise<GroupTransfer> {
  return (grouped ??= (async () => {
    const carol = uniqueName("carol");
    users.push(carol);
    await signup(balancerAddr, carol);
    const group = uniqueName("g");
    await alice.session.createGroup(group, [bob.name, carol]);
    const sent = await alice.session.sendFile({ group }, bigFile);
    return { fileId: sent.file.id, key: sent.file.key, group, online: bob.name, offline: carol };
  })());
}

test("a 50 MiB file to a group reaches the member online on the other server live, and the offline member at next login, byte for byte", async () => {
  const { fileId, group, offline } = await groupTransfer();
  expect(bob.session.serverId).not.toBe(alice.session.serverId);

  // Bob is online: the message comes to him live, and he saves the file.
  await waitFor(() => bob.received.some((m) => m.file?.id === fileId), "bob to receive the group's file message", 30_000);
  const live = bob.received.find((m) => m.file?.id === fileId)!;
  expect(live.group).toBe(group);
  expect(live.from).toBe(alice.name);
  const bobSaved = await bob.session.fetchFile(live.file!, live.from);
  expect(sha256File(bobSaved)).toBe(bigSha);

  // Carol was offline: `chatterbox inbox` at her next login lists the message and saves the file.
  const lines: string[] = [];
  expect(await inbox({ balancer: balancerAddr, user: offline, password: async () => PASSWORD, json: true, print: (l) => lines.push(l) })).toBeGreaterThan(0);
  const events = lines.map((l) => JSON.parse(l));
  const listed = events.find((e) => e.type === "message" && e.file?.id === fileId);
  expect(listed).toMatchObject({ from: alice.name, group, file: { id: fileId, name: "big.bin", size: SIZE, type: "application/octet-stream" } });
  const saved = events.find((e) => e.type === "file" && e.id === fileId);
  expect(saved).toBeDefined();
  expect(resolve(saved.saved).startsWith(join(home(), offline, "downloads", alice.name) + "/")).toBe(true);
  expect(sha256File(saved.saved)).toBe(bigSha);
}, 60_000);

// --- what an operator can read ----------------------------------------------------------

test("neither the file's plaintext nor its key is anywhere in the database or the servers' logs", async () => {
  const transfers = [await directTransfer(), await groupTransfer()];
  // The search can find the marker: it is in the file, in the clear.
  expect(findIn([{ where: "the file sent", bytes: Buffer.from(await Bun.file(bigFile).slice(0, CHUNK).arrayBuffer()) }], MARKER)).toEqual(["the file sent as raw"]);

  const needles: (string | Uint8Array)[] = [MARKER, ...transfers.map((t) => t.key)];
  const found: string[] = [];
  let chunkBytes = 0;
  // Every chunk stored, as bytes, a batch at a time: there are 200 MiB of them.
  await sql`select file_id, idx, data from file_chunks`.cursor(64, async (rows) => {
    for (const row of rows) {
      chunkBytes += row.data.length;
      for (const needle of needles) found.push(...findIn([{ where: `file_chunks ${row.file_id}#${row.idx}`, bytes: Buffer.from(row.data) }], needle));
    }
  });
  // Everything was searched: two 50 MiB uploads, one of 100 MiB, each chunk 16 bytes longer once sealed.
  expect(chunkBytes).toBe(2 * SIZE + DOUBLE + 16 * (2 * (SIZE / CHUNK) + DOUBLE / CHUNK));
  // Every other table, value by value and row by row.
  const rest = await dumpDatabase(sql, ["file_chunks"]);
  expect(rest.some((h) => h.where === "public.files.id" && h.bytes.toString() === transfers[0]!.fileId)).toBe(true);
  for (const needle of needles) found.push(...findIn(rest, needle));

  const logs = servers.map((s, i) => ({ where: `server ${i}'s log`, bytes: Buffer.from(s.log.join("")) }));
  expect(logs.every((l) => l.bytes.includes("listening on"))).toBe(true);
  for (const needle of needles) found.push(...findIn(logs, needle));

  expect(found).toEqual([]);
}, 60_000);

// --- helpers ----------------------------------------------------------------------------

interface LoggedServer {
  proc: Subprocess<"ignore", "pipe", "pipe">;
  id: string;
  addr: string;
  /** Everything the server printed, stdout and stderr. */
  log: string[];
}

/** Like spawnServer in tests/support/cluster.ts, but keeps what the server logs: an operator can read it. */
async function spawnLoggedServer(databaseUrl: string, balancer: string): Promise<LoggedServer> {
  const proc = Bun.spawn([process.execPath, join(ROOT, "cli.ts"), "serve", "0", "--balancer", balancer, "--database-url", databaseUrl], {
    stdin: "ignore",
    stdout: "pipe",
    stderr: "pipe",
  });
  const log: string[] = [];
  const collect = async (stream: ReadableStream<Uint8Array>) => {
    const decoder = new TextDecoder();
    for await (const chunk of stream) log.push(decoder.decode(chunk, { stream: true }));
  };
  void collect(proc.stdout);
  void collect(proc.stderr);
  await waitFor(() => /server (\S+) listening on (\S+),/.test(log.join("")), "the server to start", 20_000);
  const match = /server (\S+) listening on (\S+),/.exec(log.join(""))!;
  return { proc, id: match[1]!, addr: match[2]!, log };
}

/** Random bytes with the marker written at each offset; returns the SHA-256. Written a piece at a time. */
function writeRandomFile(path: string, size: number, markerAt: number[]): string {
  const fd = openSync(path, "w");
  const hash = createHash("sha256");
  const marker = Buffer.from(MARKER);
  const PIECE = 4 * MiB;
  try {
    for (let start = 0; start < size; start += PIECE) {
      const piece = randomBytes(Math.min(PIECE, size - start));
      for (const at of markerAt) {
        // A marker may straddle two pieces: write the part that falls in this one.
        for (let i = 0; i < marker.length; i++) if (at + i >= start && at + i < start + piece.length) piece[at + i - start] = marker[i]!;
      }
      hash.update(piece);
      writeSync(fd, piece);
    }
  } finally {
    closeSync(fd);
  }
  return hash.digest("hex");
}

function sha256File(path: string): string {
  const hash = createHash("sha256");
  const fd = openSync(path, "r");
  const buf = Buffer.alloc(4 * MiB);
  try {
    for (let n; (n = readSync(fd, buf, 0, buf.length, null)) > 0; ) hash.update(buf.subarray(0, n));
  } finally {
    closeSync(fd);
  }
  return hash.digest("hex");
}

/** Waits (up to 5 s) until each process's RSS stops falling. */
async function settle(pids: number[]): Promise<void> {
  let last = pids.map(rssOf);
  for (let i = 0; i < 25; i++) {
    await Bun.sleep(200);
    const now = pids.map(rssOf);
    if (now.every((n, j) => n > last[j]! - MiB)) return;
    last = now;
  }
}

function rssOf(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, "utf8");
  return Number(/VmRSS:\s+(\d+) kB/.exec(status)![1]) * 1024;
}

/** Samples each process's RSS every 50 ms; peaks() gives each one's highest since the last reset(). */
function sampleRss(pids: number[]) {
  let peak = pids.map(rssOf);
  let samples = 0;
  const timer = setInterval(() => {
    samples++;
    pids.forEach((pid, i) => (peak[i] = Math.max(peak[i]!, rssOf(pid))));
  }, 50);
  return {
    reset() {
      samples = 0;
      peak = pids.map(rssOf);
    },
    peaks(): Peaks {
      expect(samples).toBeGreaterThan(3);
      return { sender: peak[0]!, recipient: peak[1]! };
    },
    stop() {
      clearInterval(timer);
    },
  };
}

function mib(n: number): string {
  return `${(n / MiB).toFixed(1)} MiB`;
}
