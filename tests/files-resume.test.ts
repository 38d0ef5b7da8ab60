/**
 * Broken transfers resume: an upload whose client was killed, an upload whose
 * server was killed, and a download cut short each pick up where they stopped
 * and finish, without sending or fetching again the chunks already through.
 * Requests are counted on the wire (a relay in front of the server) or at the
 * session's request method: the client is ours to watch, the network and the
 * database are not faked.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import postgres from "postgres";
import { announce } from "../balancer/announcer";
import type { FileMeta } from "../client/content";
import type { Progress } from "../client/progress";
import { decode } from "../protocol/codec";
import { frame, FrameReader } from "../protocol/frame";
import { startBalancer } from "../roles/balancer";
import { startServer } from "../roles/server";
import { apartFrom, connectUser, home, PASSWORD, ROOT, signup, spawnServer, startCluster, uniqueName, until, waitFor, type Cluster, type ServerProcess, type TestUser } from "./support/cluster";
import { countRequests, randomFile, sha } from "./support/files";
import { startRelay } from "./support/relay";
import { TEST_MEMBER, TEST_TLS, testIdentity } from "./support/tls";

const CHUNK = 256 * 1024;
const MiB = 1024 * 1024;

let cluster: Cluster;
let sql: postgres.Sql;
let relay: CountingRelay;
const stops: (() => unknown)[] = [];
let dir: string;
const users: string[] = [];

beforeAll(async () => {
  cluster = await startCluster({ servers: 0 });
  sql = postgres(cluster.url, { max: 1, onnotice: () => {} });
  // One server, reached only through a relay that counts (and can hold back) the file chunks sent to it.
  const server = await startServer({ port: 0, databaseUrl: cluster.url, log: () => {} });
  cluster.servers.push(server);
  relay = await startCountingRelay(server.addr);
  const announcer = announce({ balancer: cluster.balancerAddr, id: server.id, addr: relay.addr, load: () => server.connections(), ...TEST_MEMBER });
  stops.push(() => announcer.stop(), () => relay.stop());
  await waitFor(() => cluster.balancer.servers().length === 1, "the server to register");
  dir = mkdtempSync(join(tmpdir(), "chatterbox-resume-"));
}, 60_000);

afterAll(async () => {
  for (const stop of stops.reverse()) await stop();
  await sql?.end();
  await cluster?.stop();
  rmSync(dir, { recursive: true, force: true });
  for (const user of users) rmSync(join(home(), user), { recursive: true, force: true });
});

test("an upload whose client was killed half way resumes on the next run and sends only the chunks the server lacks", async () => {
  const [alice, bob] = await pair();
  const path = randomFile(dir, "report.bin", 12 * MiB);
  const chunks = (12 * MiB) / CHUNK;
  const HALF = chunks / 2;

  // First run: the relay lets HALF chunks through, then holds the rest back, and the client dies by SIGKILL.
  relay.reset((op) => op === "file.chunk" && relay.passed("file.chunk") >= HALF);
  const first = cli(["send", "--user", alice, "--to", bob, "--file", path]);
  await waitFor(() => relay.passed("file.chunk") === HALF && relay.held > 0, "half the chunks to go through", 30_000);
  await until(async () => (await stored(alice)) === HALF, "the server to store them");
  first.kill("SIGKILL");
  await first.exited;
  expect(await stored(alice)).toBe(HALF);
  expect(await fileRows(alice)).toEqual([{ chunks, complete: false }]);

  // Second run, the same command: it finishes, sending only the other half.
  relay.reset();
  const second = cli(["send", "--user", alice, "--to", bob, "--file", path]);
  expect(await second.exited).toBe(0);
  expect(await new Response(second.stdout).text()).toContain("Sent");
  expect(relay.passed("file.begin")).toBe(0);
  expect(relay.passed("file.chunk")).toBe(chunks - HALF);
  // The same upload, completed: not a second one.
  expect(await fileRows(alice)).toEqual([{ chunks, complete: true }]);
  // The upload's state file is gone once the message is stored.
  expect(readdirSync(join(home(), alice, "uploads"))).toEqual([]);

  const recipient = await connectUser(cluster.balancerAddr, bob);
  try {
    await waitFor(() => recipient.received.some((m) => m.file), "bob to receive the file message");
    const message = recipient.received.find((m) => m.file)!;
    expect(sha(readFileSync(await recipient.session.fetchFile(message.file!, alice)))).toBe(sha(readFileSync(path)));
    // One message for the file: the second run announced it under the first run's client message id.
    await Bun.sleep(200);
    expect(recipient.received.filter((m) => m.file)).toHaveLength(1);
  } finally {
    await recipient.session.close();
  }
}, 60_000);

test("a client killed after its upload completed, before the message announcing it was stored, sends only the message on the next run", async () => {
  const [alice, bob] = await pair();
  const path = randomFile(dir, "notes.bin", 2 * MiB);
  relay.reset((op) => op === "send");
  const first = cli(["send", "--user", alice, "--to", bob, "--file", path]);
  await waitFor(() => relay.held > 0, "the message to be sent", 30_000);
  first.kill("SIGKILL");
  await first.exited;
  expect(await fileRows(alice)).toEqual([{ chunks: 8, complete: true }]);

  relay.reset();
  const second = cli(["send", "--user", alice, "--to", bob, "--file", path]);
  expect(await second.exited).toBe(0);
  expect(relay.passed("file.begin")).toBe(0);
  expect(relay.passed("file.chunk")).toBe(0);
  expect(relay.passed("send")).toBe(1);

  const recipient = await connectUser(cluster.balancerAddr, bob);
  try {
    await waitFor(() => recipient.received.some((m) => m.file), "bob to receive the file message");
    await Bun.sleep(200);
    expect(recipient.received.filter((m) => m.file)).toHaveLength(1);
    const message = recipient.received.find((m) => m.file)!;
    expect(sha(readFileSync(await recipient.session.fetchFile(message.file!, alice)))).toBe(sha(readFileSync(path)));
  } finally {
    await recipient.session.close();
  }
}, 60_000);

test("an upload whose server is killed with SIGKILL half way finishes through another server, resending only the chunks that were in flight", async () => {
  const balancer = await startBalancer({ port: 0, strategy: "roundrobin", identity: await testIdentity(cluster.url) });
  stops.push(() => balancer.stop());
  const balancerAddr = `127.0.0.1:${balancer.port}`;
  const servers = await Promise.all([spawnServer(cluster.url, balancerAddr), spawnServer(cluster.url, balancerAddr)]);
  for (const server of servers) stops.push(() => server.kill9());
  await waitFor(() => servers.every((s) => balancer.servers().some((b) => b.id === s.id)), "both servers to register");
  const [aliceName, bobName] = await pair(balancerAddr);
  const alice = await connectUser(balancerAddr, aliceName);
  stops.push(() => alice.session.close());
  const bob = await apartFrom(balancerAddr, alice, await connectUser(balancerAddr, bobName));
  stops.push(() => bob.session.close());
  const aliceServer = servers.find((s) => s.id === alice.session.serverId) as ServerProcess;

  const size = 24 * MiB;
  const chunks = size / CHUNK;
  const path = randomFile(dir, "video.bin", size);
  const requests = countRequests(alice.session);
  let repliesAtKill = -1;
  let killing: Promise<void> | undefined;
  const progress: Progress = {
    update(done) {
      if (killing || done < size / 3) return;
      repliesAtKill = Math.round(done / CHUNK);
      killing = aliceServer.kill9();
    },
    end() {},
  };
  const sent = await alice.session.sendFile({ to: bobName }, path, progress);
  await killing;

  // The server died while chunks were still to go, and the session moved to the survivor by itself.
  expect(repliesAtKill).toBeGreaterThan(0);
  expect(repliesAtKill).toBeLessThan(chunks);
  expect(alice.session.serverId).toBe(bob.session.serverId);
  // One upload; at most the window of chunks in flight at the kill went twice.
  expect(requests.count("file.begin")).toBe(1);
  expect(requests.count("file.chunk")).toBeGreaterThanOrEqual(chunks);
  expect(requests.count("file.chunk")).toBeLessThanOrEqual(chunks + 8);

  await waitFor(() => bob.received.some((m) => m.file?.id === sent.file.id), "bob to receive the file message", 30_000);
  const saved = await bob.session.fetchFile(sent.file, aliceName);
  expect(sha(readFileSync(saved))).toBe(sha(readFileSync(path)));
}, 60_000);

test("a download cut short resumes from the chunks already saved, fetching only the rest", async () => {
  const { bob, meta, path, from } = await fileFor("photo.bin", 4 * MiB);
  const chunks = meta.chunks;
  const CUT = 6;
  const interrupted = bob.session.fetchFile(meta, from, {
    update(done) {
      if (done >= CUT * CHUNK) throw new Error("cut short");
    },
    end() {},
  });
  await expect(interrupted).rejects.toThrow("cut short");
  // What was fetched waits in .partial, and nothing is in downloads/ yet.
  const partial = join(home(), bob.name, "downloads", ".partial");
  expect(readdirSync(partial).sort()).toEqual([`${meta.id}.part`, `${meta.id}.part.json`]);
  expect(JSON.parse(readFileSync(join(partial, `${meta.id}.part.json`), "utf8"))).toEqual({ next: CUT });
  expect(existsSync(join(home(), bob.name, "downloads", from))).toBe(false);

  const requests = countRequests(bob.session);
  const saved = await bob.session.fetchFile(meta, from);
  expect(requests.count("file.get")).toBe(chunks - CUT);
  expect(sha(readFileSync(saved))).toBe(sha(readFileSync(path)));
  expect(readdirSync(partial)).toEqual([]);
}, 60_000);

test("a download whose session is closed half way stops at once, and a new session resumes it", async () => {
  // Big enough that the download is still going when the link closes.
  const { bob, meta, path, from } = await fileFor("slides.bin", 24 * MiB);
  let closing: Promise<void> | undefined;
  const started = Date.now();
  const interrupted = bob.session.fetchFile(meta, from, {
    update(done) {
      if (done >= 4 * CHUNK) closing ??= bob.session.close();
    },
    end() {},
  });
  const outcome = await Promise.race([
    interrupted.then(
      () => "finished",
      (e) => (e as { code?: string }).code ?? String(e),
    ),
    Bun.sleep(5_000).then(() => "still retrying after 5 s"),
  ]);
  await closing;
  // It neither finishes on a closed session nor keeps retrying (for ~45 s) before it gives up.
  expect(outcome).toBe("E_CLOSED");
  expect(Date.now() - started).toBeLessThan(5_000);

  const again = await connectUser(cluster.balancerAddr, bob.name);
  try {
    const requests = countRequests(again.session);
    const saved = await again.session.fetchFile(meta, from);
    expect(requests.count("file.get")).toBeLessThanOrEqual(meta.chunks - 4);
    expect(sha(readFileSync(saved))).toBe(sha(readFileSync(path)));
  } finally {
    await again.session.close();
  }
}, 60_000);

// --- helpers ------------------------------------------------------------------------------

/** Signs up a new alice and bob; returns their names. */
async function pair(balancerAddr = cluster.balancerAddr): Promise<[string, string]> {
  const names: [string, string] = [uniqueName("alice"), uniqueName("bob")];
  for (const name of names) await signup(balancerAddr, name);
  users.push(...names);
  return names;
}

/** Alice uploads a random file to bob; bob, online, has its message. */
async function fileFor(name: string, size: number): Promise<{ bob: TestUser; meta: FileMeta; path: string; from: string }> {
  const [aliceName, bobName] = await pair();
  const alice = await connectUser(cluster.balancerAddr, aliceName);
  const bob = await connectUser(cluster.balancerAddr, bobName);
  stops.push(() => alice.session.close(), () => bob.session.close());
  const path = randomFile(dir, name, size);
  const sent = await alice.session.sendFile({ to: bobName }, path);
  await waitFor(() => bob.received.some((m) => m.file?.id === sent.file.id), "bob to receive the file message");
  return { bob, meta: bob.received.find((m) => m.file?.id === sent.file.id)!.file!, path, from: aliceName };
}

async function stored(user: string): Promise<number> {
  const [row] = await sql`
    select count(*)::int as n from file_chunks c join files f on f.id = c.file_id join users u on u.id = f.uploader_id
    where u.name = ${user}`;
  return row!.n;
}

async function fileRows(user: string): Promise<{ chunks: number; complete: boolean }[]> {
  return [
    ...(await sql`
    select f.chunks, f.completed_at is not null as complete from files f join users u on u.id = f.uploader_id where u.name = ${user}`),
  ].map((r) => ({ chunks: r.chunks, complete: r.complete }));
}

/** `chatterbox ...` as a user runs it, with this test's CHATTERBOX_HOME. */
function cli(args: string[]) {
  return Bun.spawn([process.execPath, join(ROOT, "cli.ts"), ...args, "--balancer", cluster.balancerAddr], {
    env: { ...process.env, CHATTERBOX_HOME: home(), CHATTERBOX_PASSWORD: PASSWORD, CHATTERBOX_TEST_KDF: "1" },
    stdin: "ignore",
    stdout: "pipe",
    stderr: "pipe",
  });
}

// --- a relay that counts file chunks ---------------------------------------------------

interface CountingRelay {
  addr: string;
  /** Requests of this kind passed on to the server since the last reset. */
  passed(op: string): number;
  /** Requests held back (never passed on) since the last reset. */
  held: number;
  /** Starts counting again; `hold` says which requests from now on never reach the server. */
  reset(hold?: (op: string) => boolean): void;
  stop(): void;
}

/** A TCP relay to `target` that reads the client's frames, so that it can count requests and hold some back. */
async function startCountingRelay(target: string): Promise<CountingRelay> {
  let passed = new Map<string, number>();
  let hold: ((op: string) => boolean) | undefined;
  const relay: CountingRelay = {
    addr: "",
    passed: (op) => passed.get(op) ?? 0,
    held: 0,
    reset(next) {
      passed = new Map();
      relay.held = 0;
      hold = next;
    },
    stop: () => {},
  };
  const inner = await startRelay(target, {
    terminateTls: TEST_TLS,
    fromClient() {
      const reader = new FrameReader(4 * MiB);
      return (chunk) => {
        const out: Uint8Array[] = [];
        for (const payload of reader.push(chunk)) {
          const op = String(decode(payload).op);
          if (hold?.(op)) {
            relay.held++;
            continue;
          }
          passed.set(op, relay.passed(op) + 1);
          out.push(frame(payload));
        }
        return out;
      };
    },
  });
  relay.addr = inner.addr;
  relay.stop = () => inner.stop();
  return relay;
}
