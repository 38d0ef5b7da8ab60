/**
 * What the server's file settings promise: a file over maxFileBytes is refused
 * before a single chunk is sent; an upload never completed is deleted after
 * uploadTtlMs, and the next try starts it over; a completed file outlives the
 * upload deadline and is kept until fileRetentionMs, after which the recipient
 * is told it is gone. The janitor sweeps every min(60 s, uploadTtlMs / 2).
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import postgres from "postgres";
import type { Progress } from "../client/progress";
import { ChatError } from "../protocol/errors";
import { home, PASSWORD, ROOT, signup, uniqueName, until, waitFor, type Cluster, type TestUser } from "./support/cluster";
import { startFilePair, stopFilePair, type FilePair, countRequests, randomFile, sha } from "./support/files";

const KiB = 1024;
const MiB = 1024 * KiB;
const LIMIT = 1 * MiB;
const UPLOAD_TTL = 800;
const RETENTION = 3000;
/** How often the janitor sweeps with these settings. */
const SWEEP = Math.min(60_000, UPLOAD_TTL / 2);

let cluster: Cluster;
let sql: postgres.Sql;
let dir: string;
let alice: TestUser;
let bob: TestUser;
let pair: FilePair | undefined;

beforeAll(async () => {
  pair = await startFilePair("limits", { servers: 1, config: { maxFileBytes: LIMIT, uploadTtlMs: UPLOAD_TTL, fileRetentionMs: RETENTION } });
  ({ cluster, dir, alice, bob } = pair);
  sql = postgres(cluster.url, { max: 1, onnotice: () => {} });
}, 60_000);

afterAll(async () => {
  await sql?.end();
  await stopFilePair(pair);
});

test("a file over the server's limit is refused before any upload starts, with a sentence that gives both sizes", async () => {
  const path = randomFile(dir, "too-big.bin", LIMIT + 1);
  const requests = countRequests(alice.session);
  const error = await alice.session.sendFile({ to: bob.name }, path).catch((e) => e);
  expect(error).toBeInstanceOf(ChatError);
  expect(error.code).toBe("E_FILE_TOO_LARGE");
  expect(error.message).toBe(`The file is ${LIMIT + 1} bytes; this server takes files up to ${LIMIT} bytes`);
  // Refused at file.begin: not one chunk went out, nothing is stored, nothing waits to resume.
  expect(requests.count("file.begin")).toBe(1);
  expect(requests.count("file.chunk")).toBe(0);
  expect(await filesOf(alice.name)).toEqual([]);
  expect((await sql`select count(*)::int as n from file_chunks`)[0]!.n).toBe(0);
  expect(uploadsWaiting(alice.name)).toEqual([]);
});

test("`chatterbox send --file` over the limit exits 1 with the refusal, having uploaded nothing", async () => {
  // Another sender: logging alice in from the command line would end her session here.
  const carol = uniqueName("carol");
  await signup(cluster.balancerAddr, carol);
  const path = randomFile(dir, "too-big-cli.bin", 2 * LIMIT);
  // A client home of its own: what it pins on first use is this cluster's CA, not another test's under a reused port.
  const cliHome = mkdtempSync(join(tmpdir(), "chatterbox-limits-home-"));
  const proc = Bun.spawn([process.execPath, join(ROOT, "cli.ts"), "send", "--user", carol, "--to", bob.name, "--file", path, "--balancer", cluster.balancerAddr], {
    env: { ...process.env, CHATTERBOX_HOME: cliHome, CHATTERBOX_PASSWORD: PASSWORD, CHATTERBOX_TEST_KDF: "1" },
    stdin: "ignore",
    stdout: "pipe",
    stderr: "pipe",
  });
  expect(await proc.exited).toBe(1);
  expect(await new Response(proc.stderr).text()).toBe(`chatterbox: The file is ${2 * LIMIT} bytes; this server takes files up to ${LIMIT} bytes (E_FILE_TOO_LARGE)\n`);
  expect(await filesOf(carol)).toEqual([]);
  expect(uploadsWaiting(carol, cliHome)).toEqual([]);
  rmSync(cliHome, { recursive: true, force: true });
});

test("a file of exactly the limit is accepted and delivered", async () => {
  const path = randomFile(dir, "just-fits.bin", LIMIT);
  const sent = await alice.session.sendFile({ to: bob.name }, path);
  const saved = await bob.session.fetchFile(await receivedBy(bob, sent.file.id), alice.name);
  expect(sha(readFileSync(saved))).toBe(sha(readFileSync(path)));
});

test("an upload never completed is deleted after the upload TTL, and sending again starts it over and completes", async () => {
  const path = randomFile(dir, "abandoned.bin", 4 * 256 * KiB);
  // The client gives up after two chunks are stored (its progress callback throws).
  let replies = 0;
  const giveUp: Progress = {
    update() {
      if (++replies === 2) throw new Error("gave up");
    },
    end() {},
  };
  await expect(alice.session.sendFile({ to: bob.name }, path, giveUp)).rejects.toThrow("gave up");
  const [abandoned, ...others] = (await filesOf(alice.name)).filter((f) => !f.complete);
  expect(abandoned).toBeDefined();
  expect(others).toEqual([]);
  expect(await chunksOf(abandoned!.id)).toBeGreaterThanOrEqual(2);
  expect(uploadsWaiting(alice.name)).toHaveLength(1);

  // Gone, chunks and all, once the TTL is past and the janitor has swept.
  const gone = Date.now();
  await until(async () => !(await filesOf(alice.name)).some((f) => f.id === abandoned!.id), "the abandoned upload to be deleted", UPLOAD_TTL + 4 * SWEEP + 5_000);
  expect(Date.now() - gone).toBeLessThan(UPLOAD_TTL + 4 * SWEEP + 2_000);
  expect(await chunksOf(abandoned!.id)).toBe(0);

  // The client's saved state names an upload the server forgot: it begins a new one.
  const requests = countRequests(alice.session);
  const sent = await alice.session.sendFile({ to: bob.name }, path);
  expect(sent.file.id).not.toBe(abandoned!.id);
  expect(requests.count("file.begin")).toBe(1);
  expect(requests.count("file.chunk")).toBe(4);
  const saved = await bob.session.fetchFile(await receivedBy(bob, sent.file.id), alice.name);
  expect(sha(readFileSync(saved))).toBe(sha(readFileSync(path)));
  expect(uploadsWaiting(alice.name)).toEqual([]);
}, 30_000);

test("a completed file outlives the upload TTL, is kept until the retention, and is then reported gone rather than corrupt", async () => {
  const path = randomFile(dir, "kept.bin", 300 * KiB);
  const sent = await alice.session.sendFile({ to: bob.name }, path);
  const completedAt = Date.now();
  const meta = await receivedBy(bob, sent.file.id);

  // Well past the upload TTL and several sweeps: still there, still readable.
  await Bun.sleep(UPLOAD_TTL + 2 * SWEEP + 200 - (Date.now() - completedAt));
  expect(Date.now() - completedAt).toBeLessThan(RETENTION);
  expect(await filesOf(alice.name)).toContainEqual({ id: sent.file.id, complete: true });
  const saved = await bob.session.fetchFile(meta, alice.name);
  expect(sha(readFileSync(saved))).toBe(sha(readFileSync(path)));

  // Past the retention: deleted with its chunks.
  await until(async () => !(await filesOf(alice.name)).some((f) => f.id === sent.file.id), "the file to pass its retention", RETENTION + 4 * SWEEP + 5_000);
  expect(Date.now() - completedAt).toBeGreaterThanOrEqual(RETENTION - 100);
  expect(await chunksOf(sent.file.id)).toBe(0);

  // Fetching it again says it is gone; it is not "refused" as if someone had tampered with it.
  const error = await bob.session.fetchFile(meta, alice.name).catch((e) => e);
  expect(error).toBeInstanceOf(ChatError);
  expect(error.code).toBe("E_NO_SUCH_FILE");
  expect(readdirSync(join(home(), bob.name, "downloads", ".partial"))).toEqual([]);
}, 30_000);

// --- helpers ------------------------------------------------------------------------------

async function receivedBy(user: TestUser, fileId: string) {
  await waitFor(() => user.received.some((m) => m.file?.id === fileId), `${user.name} to receive the file message`);
  return user.received.find((m) => m.file?.id === fileId)!.file!;
}

async function filesOf(user: string): Promise<{ id: string; complete: boolean }[]> {
  const rows = await sql`
    select f.id, f.completed_at is not null as complete from files f join users u on u.id = f.uploader_id
    where u.name = ${user} order by f.created_at`;
  return rows.map((r) => ({ id: r.id, complete: r.complete }));
}

async function chunksOf(fileId: string): Promise<number> {
  return (await sql`select count(*)::int as n from file_chunks where file_id = ${fileId}`)[0]!.n;
}

/** The client's saved state of uploads not yet finished. */
function uploadsWaiting(user: string, under = home()): string[] {
  const uploads = join(under, user, "uploads");
  return existsSync(uploads) ? readdirSync(uploads) : [];
}
