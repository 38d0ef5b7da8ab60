/**
 * `chatterbox db backup` and `db restore`, run as processes: a database
 * restored into a new, empty PostgreSQL serves every user's history (direct and
 * group, still verified, in order), and new messages follow the old ones.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { chmodSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { connectUser, ROOT, signup, startCluster, uniqueName, type Cluster, type TestUser } from "./support/cluster";
import { testDatabaseUrl } from "./support/pg";

const work = mkdtempSync(join(tmpdir(), "chatterbox-backup-"));
// As root, PostgreSQL runs as the postgres user, who must be able to enter the data folder's parent.
chmodSync(work, 0o755);
const file = join(work, "chatdb.backup");
const [alice, bob, carol] = [uniqueName("alice"), uniqueName("bob"), uniqueName("carol")];
const group = uniqueName("team");
let before: Cluster;
let after: Cluster | undefined;
/** What each user sees in each conversation before the backup. */
const seen: Record<string, string[]> = {};

async function cli(...args: string[]): Promise<{ code: number; out: string; err: string }> {
  const proc = Bun.spawn([process.execPath, join(ROOT, "cli.ts"), ...args], { stdout: "pipe", stderr: "pipe", env: { ...process.env, DATABASE_URL: "" } });
  const [out, err] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text()]);
  return { code: await proc.exited, out, err };
}

async function conversations(users: Record<string, TestUser>): Promise<Record<string, string[]>> {
  const texts = (list: { text: string; verified: boolean }[]) => list.map((m) => `${m.verified ? "" : "UNVERIFIED "}${m.text}`);
  return {
    "alice-bob": texts(await users.alice!.session.history(bob)),
    "bob-alice": texts(await users.bob!.session.history(alice)),
    "carol-group": texts(await users.carol!.session.groupHistory(group)),
    "alice-group": texts(await users.alice!.session.groupHistory(group)),
  };
}

async function everyone(cluster: Cluster): Promise<Record<string, TestUser>> {
  return { alice: await connectUser(cluster.balancerAddr, alice), bob: await connectUser(cluster.balancerAddr, bob), carol: await connectUser(cluster.balancerAddr, carol) };
}

async function closeAll(users: Record<string, TestUser>): Promise<void> {
  for (const u of Object.values(users)) await u.session.close();
}

beforeAll(async () => {
  before = await startCluster({ servers: 2 });
  for (const name of [alice, bob, carol]) await signup(before.balancerAddr, name);
  const users = await everyone(before);
  for (let i = 0; i < 3; i++) await users.alice!.session.sendText(bob, `dm ${i} with a newline\nand a backslash \\ and a tab\t`);
  await users.bob!.session.sendText(alice, "a reply");
  await users.alice!.session.createGroup(group, [bob, carol]);
  await users.carol!.session.sendGroupText(group, "hello team");
  await users.bob!.session.sendGroupText(group, "hi carol");
  Object.assign(seen, await conversations(users));
  await closeAll(users);
}, 60_000);

afterAll(async () => {
  await after?.stop();
  await before?.stop();
  rmSync(work, { recursive: true, force: true });
});

test("a backup restored into a new database serves every user's history, verified and in order", async () => {
  expect(seen["alice-bob"]).toHaveLength(4);
  // (The membership line the server recorded, then the two messages.)
  expect(seen["carol-group"]!.filter((t) => !t.includes(group))).toEqual(["hello team", "hi carol"]);

  const backedUp = await cli("db", "backup", file, "--database-url", before.url);
  expect(backedUp.err).toBe("");
  expect(backedUp.code).toBe(0);
  expect(backedUp.out).toMatch(/^Backed up \d+ rows of \d+ tables from postgres:\/\/\S+:\*\*\*@/);
  expect(backedUp.out).not.toContain(new URL(before.url).password);

  const fresh = await testDatabaseUrl();
  const restored = await cli("db", "restore", file, "--database-url", fresh);
  expect(restored.err).toBe("");
  expect(restored.code).toBe(0);

  await before.stop();
  after = await startCluster({ servers: 2, url: fresh });
  const users = await everyone(after);
  try {
    expect(await conversations(users)).toEqual(seen);
    // New messages come after the restored ones: ids and sequence numbers carry on.
    await users.bob!.session.sendText(alice, "after the restore");
    const history = await users.alice!.session.history(bob);
    expect(history.map((m) => m.text)).toEqual([...seen["alice-bob"]!, "after the restore"]);
    expect(history.at(-1)!.seq).toBeGreaterThan(history.at(-2)!.seq);
  } finally {
    await closeAll(users);
  }
}, 60_000);

test("a restore refuses a database that already has data, and a file that is not a backup", async () => {
  const into = await cli("db", "restore", file, "--database-url", after!.url);
  expect(into.code).toBe(1);
  expect(into.err).toContain("restore into a new, empty database");

  const junk = join(work, "junk");
  await Bun.write(junk, Bun.gzipSync(new TextEncoder().encode("hello\n")));
  const bad = await cli("db", "restore", junk, "--database-url", await testDatabaseUrl());
  expect(bad.code).toBe(1);
  expect(bad.err).toContain("is not a ChatterBox backup");
});

test("restore and backup work on an embedded data folder too, starting its PostgreSQL for the command alone", async () => {
  const data = join(work, "restored-data");
  const restored = await cli("db", "restore", file, "--data", data);
  expect(restored.err).toBe("");
  expect(restored.code).toBe(0);
  const rows = /^Restored (\d+) rows/.exec(restored.out)![1];
  const again = await cli("db", "backup", join(work, "again.backup"), "--data", data);
  expect(again.err).toBe("");
  expect(again.out).toStartWith(`Backed up ${rows} rows`);
  // Nothing is left running on the folder.
  expect(await Bun.file(join(data, "postmaster.pid")).exists()).toBe(false);
}, 60_000);
