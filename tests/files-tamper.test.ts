/**
 * The recipient trusts no chunk the server hands back: a chunk altered, moved,
 * cut short, dropped, or taken from another file is refused with
 * E_FILE_CORRUPT and a sentence naming the file, and nothing is left in
 * downloads/, neither under the sender's folder nor half-way in .partial.
 * The tampering is done where an attacker with the database would do it: in
 * the file_chunks table.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { randomBytes } from "node:crypto";
import { existsSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import postgres from "postgres";
import type { FileMeta } from "../client/content";
import { inbox } from "../roles/client";
import { ChatError } from "../protocol/errors";
import { home, PASSWORD, removeHomes, signup, uniqueName, waitFor, type Cluster, type TestUser } from "./support/cluster";
import { startFilePair, stopFilePair, type FilePair } from "./support/files";

const CHUNK = 256 * 1024;
/** Three whole chunks and a short fourth. */
const SIZE = 3 * CHUNK + 1000;

let cluster: Cluster;
let sql: postgres.Sql;
let dir: string;
let alice: TestUser;
let bob: TestUser;
let pair: FilePair | undefined;

beforeAll(async () => {
  pair = await startFilePair("tamper", { servers: 1 });
  ({ cluster, dir, alice, bob } = pair);
  sql = postgres(cluster.url, { max: 1, onnotice: () => {} });
}, 60_000);

afterAll(async () => {
  await sql?.end();
  await stopFilePair(pair);
});

test("a chunk with one byte flipped is refused, and what was already written is removed", async () => {
  const meta = await sendToBob("flipped.bin");
  // The third chunk: two good ones are written to .partial before it.
  await sql`update file_chunks set data = set_byte(data, 100, get_byte(data, 100) # 1) where file_id = ${meta.id} and idx = 2`;
  await expectRefused(meta, /flipped\.bin from alice\w* was refused: chunk 3 of 4 failed its integrity check; nothing was saved/);
});

test("two chunks swapped in place are refused", async () => {
  const meta = await sendToBob("reordered.bin");
  await sql.begin(async (tx) => {
    await tx`update file_chunks set idx = -1 where file_id = ${meta.id} and idx = 1`;
    await tx`update file_chunks set idx = 1 where file_id = ${meta.id} and idx = 2`;
    await tx`update file_chunks set idx = 2 where file_id = ${meta.id} and idx = -1`;
  });
  await expectRefused(meta, /reordered\.bin .* was refused: chunk 2 of 4 failed its integrity check/);
});

test("a file whose last chunk is deleted is refused as missing a chunk", async () => {
  const meta = await sendToBob("truncated.bin");
  await sql`delete from file_chunks where file_id = ${meta.id} and idx = 3`;
  await expectRefused(meta, /truncated\.bin .* was refused: chunk 4 of 4 is missing/);
});

test("a last chunk cut short is refused", async () => {
  const meta = await sendToBob("shortened.bin");
  await sql`update file_chunks set data = substring(data from 1 for length(data) - 100) where file_id = ${meta.id} and idx = 3`;
  await expectRefused(meta, /shortened\.bin .* was refused: chunk 4 of 4 failed its integrity check/);
});

test("chunks swapped between two files of the same size are refused in both", async () => {
  const one = await sendToBob("one.bin");
  const two = await sendToBob("two.bin");
  await sql.begin(async (tx) => {
    const [a] = await tx`select data from file_chunks where file_id = ${one.id} and idx = 1`;
    const [b] = await tx`select data from file_chunks where file_id = ${two.id} and idx = 1`;
    await tx`update file_chunks set data = ${b!.data} where file_id = ${one.id} and idx = 1`;
    await tx`update file_chunks set data = ${a!.data} where file_id = ${two.id} and idx = 1`;
  });
  await expectRefused(one, /one\.bin .* was refused: chunk 2 of 4 failed its integrity check/);
  await expectRefused(two, /two\.bin .* was refused: chunk 2 of 4 failed its integrity check/);
});

test("a file whose whole hash does not match the one its sender signed is refused", async () => {
  const meta = await sendToBob("hashed.bin");
  // Every chunk opens, but the file is not the one the message describes.
  await expectRefused({ ...meta, sha256: "0".repeat(64) }, /hashed\.bin .* was refused: its hash does not match; nothing was saved/);
});

test("untouched, the same file is saved: the refusals above are the tampering's doing", async () => {
  const meta = await sendToBob("intact.bin");
  const saved = await bob.session.fetchFile(meta, alice.name);
  expect(saved).toBe(join(home(), bob.name, "downloads", alice.name, "intact.bin"));
  expect(readdirSync(join(home(), bob.name, "downloads", ".partial"))).toEqual([]);
  rmSync(saved);
});

test("a tampered file in the inbox is reported in a sentence, the other messages still shown, and nothing saved", async () => {
  const carol = uniqueName("carol");
  await signup(cluster.balancerAddr, carol);
  const path = join(dir, "letter.txt");
  writeFileSync(path, randomBytes(SIZE));
  const sent = await alice.session.sendFile({ to: carol }, path);
  await alice.session.sendText(carol, "did the letter arrive?");
  await sql`update file_chunks set data = set_byte(data, 0, get_byte(data, 0) # 128) where file_id = ${sent.file.id} and idx = 0`;

  const lines: string[] = [];
  await inbox({ balancer: cluster.balancerAddr, user: carol, password: async () => PASSWORD, json: false, print: (l) => lines.push(l) });
  expect(lines).toHaveLength(3);
  expect(lines[0]).toContain(`${alice.name} → ${carol}: [file] letter.txt`);
  expect(lines[1]).toBe(`  ⚠ letter.txt from ${alice.name} was refused: chunk 1 of 4 failed its integrity check; nothing was saved`);
  expect(lines[2]).toContain("did the letter arrive?");
  expect(leftovers(carol)).toEqual([]);
  removeHomes([carol]);
});

// --- helpers ------------------------------------------------------------------------------

/** Alice uploads a random file of SIZE to bob; returns the file as bob's message describes it. */
async function sendToBob(name: string): Promise<FileMeta> {
  const path = join(dir, name);
  writeFileSync(path, randomBytes(SIZE));
  const sent = await alice.session.sendFile({ to: bob.name }, path);
  expect(sent.file.chunks).toBe(4);
  await waitFor(() => bob.received.some((m) => m.file?.id === sent.file.id), "bob to receive the file message");
  return bob.received.find((m) => m.file?.id === sent.file.id)!.file!;
}

async function expectRefused(meta: FileMeta, message: RegExp): Promise<void> {
  const error = await bob.session.fetchFile(meta, alice.name).then(
    () => undefined,
    (e) => e,
  );
  expect(error).toBeInstanceOf(ChatError);
  expect(error.code).toBe("E_FILE_CORRUPT");
  expect(error.message).toMatch(message);
  expect(leftovers(bob.name)).toEqual([]);
}

/** Whatever the user has under downloads/: files saved from anyone, and partial downloads. */
function leftovers(user: string): string[] {
  const root = join(home(), user, "downloads");
  if (!existsSync(root)) return [];
  return readdirSync(root, { recursive: true, withFileTypes: true })
    .filter((e) => !e.isDirectory())
    .map((e) => join(e.parentPath, e.name));
}
