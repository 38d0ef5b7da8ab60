/**
 * Files across servers, at size: a 50 MiB file reaches a user on another server
 * and a group with an offline member byte for byte, the servers (separate
 * processes, read from /proc) and the clients keep memory flat while it
 * streams, chat goes on during the upload, and the file's plaintext is
 * nowhere an operator can look: not in any table, not in the servers' logs.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { createHash, randomBytes } from "node:crypto";
import { mkdtempSync, openSync, readFileSync, closeSync, writeSync, readdirSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import postgres from "postgres";
import type { Subprocess } from "bun";
import type { Progress } from "../client/progress";
import { inbox } from "../roles/client";
import { migrate, openDatabase } from "../db/connect";
import { startBalancer, type Balancer } from "../roles/balancer";
import { connectUser, PASSWORD, ROOT, signup, uniqueName, waitFor, type TestUser } from "./support/cluster";
import { testDatabaseUrl } from "./support/pg";

const MiB = 1024 * 1024;
const SIZE = 50 * MiB;
const CHUNK = 256 * 1024;
const MARKER = `file-plaintext-marker-${randomBytes(9).toString("hex")}-Käsebrot✓`;
/** A server that held the whole file would grow by at least its size; streaming keeps it to a few windows of chunks. */
const SERVER_GROWTH_BOUND = 40 * MiB;
const CLIENT_GROWTH_BOUND = 40 * MiB;

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

beforeAll(async () => {
  url = await testDatabaseUrl();
  const database = openDatabase(url, { max: 1 });
  await migrate(database);
  await database.close();
  sql = postgres(url, { max: 1, onnotice: () => {} });
  balancer = await startBalancer({ port: 0, strategy: "roundrobin" });
  balancerAddr = `127.0.0.1:${balancer.port}`;
  servers.push(...(await Promise.all([spawnLoggedServer(url, balancerAddr), spawnLoggedServer(url, balancerAddr)])));
  await waitFor(() => servers.every((s) => balancer.servers().some((b) => b.id === s.id)), "both servers to register");

  dir = mkdtempSync(join(tmpdir(), "chatterbox-files-"));
  bigFile = join(dir, "big.bin");
  // The marker at the start, across the first chunk boundary, in the middle and at the very end.
  bigSha = writeRandomFile(bigFile, SIZE, [0, CHUNK - 10, SIZE / 2 + 12345, SIZE - Buffer.byteLength(MARKER)]);

  const [a, b] = [uniqueName("alice"), uniqueName("bob")];
  await signup(balancerAddr, a);
  await signup(balancerAddr, b);
  alice = await connectUser(balancerAddr, a);
  bob = await connectUser(balancerAddr, b);
  // Round robin alternates, so another try lands on the other server.
  for (let attempt = 0; bob.session.serverId === alice.session.serverId; attempt++) {
    if (attempt === 5) throw new Error("could not place alice and bob on different servers");
    await bob.session.close();
    bob = await connectUser(balancerAddr, b);
  }
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
  await sql?.end();
});

// --- the direct transfer, shared by the tests that look at it ------------------------

interface DirectTransfer {
  saved: string;
  /** Peak VmRSS growth over the baseline taken just before the transfer, per server. */
  serverGrowth: { sender: number; recipient: number };
  clientGrowth: number;
  /** Whether the upload had finished when bob saw the text alice sent during it. */
  uploadDoneWhenTextArrived: boolean;
  textSentAt: number;
  textSeenAt: number;
  uploadDoneAt: number;
}

let direct: Promise<DirectTransfer> | undefined;

/** Alice sends the 50 MiB file to bob, and a text half way through the upload; bob saves the file. */
function directTransfer(): Promise<DirectTransfer> {
  return (direct ??= (async () => {
    Bun.gc(true);
    const sampler = sampleRss([aliceServer.proc.pid, bobServer.proc.pid, process.pid]);
    await Bun.sleep(200);
    sampler.rebase();
    let uploadDone = false;
    let textSentAt = 0;
    let textSeenAt = 0;
    let uploadDoneWhenTextArrived = true;
    const text = `while uploading ${uniqueName("t")}`;
    let textSending: Promise<unknown> | undefined;
    const progress: Progress = {
      update(done) {
        if (done >= SIZE / 5 && !textSending) {
          textSentAt = Date.now();
          textSending = alice.session.sendText(bob.name, text);
          void waitFor(() => bob.texts().includes(text), "bob to see the text", 30_000).then(() => {
            textSeenAt = Date.now();
            uploadDoneWhenTextArrived = uploadDone;
          });
        }
      },
      end() {},
    };
    const sent = await alice.session.sendFile({ to: bob.name }, bigFile, progress);
    uploadDone = true;
    const uploadDoneAt = Date.now();
    await textSending;
    await waitFor(() => bob.received.some((m) => m.file?.id === sent.file.id), "bob to receive the file message", 30_000);
    const message = bob.received.find((m) => m.file?.id === sent.file.id)!;
    const saved = await bob.session.fetchFile(message.file!, message.from);
    const peaks = sampler.stop();
    return {
      saved,
      serverGrowth: { sender: peaks[0]!, recipient: peaks[1]! },
      clientGrowth: peaks[2]!,
      uploadDoneWhenTextArrived,
      textSentAt,
      textSeenAt,
      uploadDoneAt,
    };
  })());
}

test("a 50 MiB file sent to a user on another server is saved byte for byte identical", async () => {
  const { saved } = await directTransfer();
  expect(resolve(saved).startsWith(join(process.env.CHATTERBOX_HOME!, bob.name, "downloads", alice.name) + "/")).toBe(true);
  expect(sha256File(saved)).toBe(bigSha);
  // Nothing is left half-way.
  expect(readdirSync(join(process.env.CHATTERBOX_HOME!, bob.name, "downloads", ".partial"))).toEqual([]);
}, 60_000);

test("neither server holds the file in memory: each one's RSS grows far less than the file's size during the transfer", async () => {
  const { serverGrowth } = await directTransfer();
  console.log(`server RSS growth during 50 MiB: sender's ${mib(serverGrowth.sender)}, recipient's ${mib(serverGrowth.recipient)}`);
  expect(serverGrowth.sender).toBeLessThan(SERVER_GROWTH_BOUND);
  expect(serverGrowth.recipient).toBeLessThan(SERVER_GROWTH_BOUND);
}, 60_000);

test("neither client holds the file in memory: the process running both grows far less than the file's size", async () => {
  const { clientGrowth } = await directTransfer();
  console.log(`client RSS growth during 50 MiB up and down: ${mib(clientGrowth)}`);
  expect(clientGrowth).toBeLessThan(CLIENT_GROWTH_BOUND);
}, 60_000);

test("chat flows while a large file uploads: a text sent during the upload is delivered before the upload ends", async () => {
  const t = await directTransfer();
  expect(t.textSeenAt).toBeGreaterThan(0);
  expect(t.uploadDoneWhenTextArrived).toBe(false);
  expect(t.textSeenAt).toBeLessThan(t.uploadDoneAt);
}, 60_000);

// --- the group transfer ---------------------------------------------------------------

test("a 50 MiB file to a group reaches the member online on the other server live and the offline member at next login, byte for byte", async () => {
  const [carol] = [uniqueName("carol")];
  await signup(balancerAddr, carol);
  const group = uniqueName("g");
  await alice.session.createGroup(group, [bob.name, carol]);
  const before = bob.received.length;

  const sent = await alice.session.sendGroupFile(group);
  void sent;
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
    for (let n; (n = require("node:fs").readSync(fd, buf, 0, buf.length, null)) > 0; ) hash.update(buf.subarray(0, n));
  } finally {
    closeSync(fd);
  }
  return hash.digest("hex");
}

function rssOf(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, "utf8");
  return Number(/VmRSS:\s+(\d+) kB/.exec(status)![1]) * 1024;
}

/** Samples each process's RSS every 50 ms; stop() gives each one's peak growth over the baseline. */
function sampleRss(pids: number[]) {
  let base = pids.map(rssOf);
  const peak = [...base];
  let samples = 0;
  const timer = setInterval(() => {
    samples++;
    pids.forEach((pid, i) => (peak[i] = Math.max(peak[i]!, rssOf(pid))));
  }, 50);
  return {
    rebase() {
      base = pids.map(rssOf);
      pids.forEach((_, i) => (peak[i] = base[i]!));
    },
    stop(): number[] {
      clearInterval(timer);
      expect(samples).toBeGreaterThan(5);
      return peak.map((p, i) => p - base[i]!);
    },
  };
}

function mib(n: number): string {
  return `${(n / MiB).toFixed(1)} MiB`;
}
