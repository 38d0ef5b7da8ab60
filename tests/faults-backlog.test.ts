/**
 * Large backlogs: 2,500 sealed DMs of 8,000 characters waiting for one user
 * are read in full by `inbox` and by `chat` (the replay used to overflow the
 * 8 MiB outbox at every login); `inbox` killed half way through its replay
 * catches up at the next run without showing again what it had shown.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { openDatabase, type Database } from "../db/connect";
import { connectUser, signup, startCluster, uniqueName, waitFor, type Cluster, type TestUser } from "./support/cluster";
import { runClient } from "./support/cli-process";

const BACKLOG = 2_500;
const SIZE = 8_000;
const SENDERS = 5;

let cluster: Cluster;
let database: Database;
let senders: TestUser[] = [];
const homes: string[] = [];

beforeAll(async () => {
  // The backlog is poured in as fast as the server stores it: the senders get a bot's allowance, not a person's 10 a second.
  cluster = await startCluster({ servers: 1, config: { sendsPerSecond: 10_000 } });
  database = openDatabase(cluster.url, { max: 1 });
  for (let i = 0; i < SENDERS; i++) {
    const name = uniqueName("pourer");
    await signup(cluster.balancerAddr, name);
    senders.push(await connectUser(cluster.balancerAddr, name));
  }
}, 60_000);

afterAll(async () => {
  for (const s of senders) await s.session.close().catch(() => {});
  await database?.close();
  await cluster?.stop();
  for (const home of homes) rmSync(home, { recursive: true, force: true });
});

function freshHome(): string {
  const home = mkdtempSync(join(tmpdir(), "chatterbox-faults-home-"));
  homes.push(home);
  return home;
}

/** A new user with `count` sealed DMs of `size` characters waiting, from every sender in turn; returns their texts by sender. */
async function backlogFor(count: number, size: number): Promise<{ name: string; texts: Map<string, string[]> }> {
  const name = uniqueName("reader");
  await signup(cluster.balancerAddr, name);
  const texts = new Map(senders.map((s) => [s.name, [] as string[]]));
  await Promise.all(
    senders.map(async (s, k) => {
      for (let i = k; i < count; i += senders.length) {
        const text = `${String(i).padStart(5, "0")} ${"x".repeat(size - 6)}`;
        texts.get(s.name)!.push(text);
        await s.session.sendText(name, text);
      }
    }),
  );
  return { name, texts };
}

function bySender(messages: { from: string; text: string }[]): Map<string, string[]> {
  const out = new Map(senders.map((s) => [s.name, [] as string[]]));
  for (const m of messages) out.get(m.from)?.push(m.text);
  return out;
}

test("inbox reads a backlog of 2,500 messages of 8,000 characters in full, each once and in order", async () => {
  const { name, texts } = await backlogFor(BACKLOG, SIZE);
  const inbox = runClient("inbox", { balancer: cluster.balancerAddr, user: name, home: freshHome() });
  expect(await inbox.proc.exited).toBe(0);
  const messages = inbox.messages();
  expect(messages.length).toBe(BACKLOG);
  expect(messages.every((m) => m.verified)).toBe(true);
  expect(bySender(messages)).toEqual(texts);
  // And it acknowledged them all: the next inbox has nothing.
  const again = runClient("inbox", { balancer: cluster.balancerAddr, user: name, home: freshHome() });
  expect(await again.proc.exited).toBe(0);
  expect(again.messages().length).toBe(0);
}, 180_000);

test("chat reads a backlog of 2,500 messages of 8,000 characters in full at start-up", async () => {
  const { name, texts } = await backlogFor(BACKLOG, SIZE);
  const chat = runClient("chat", { balancer: cluster.balancerAddr, user: name, home: freshHome() });
  try {
    await chat.waitForMessages(BACKLOG, 120_000);
    expect(chat.proc.exitCode).toBeNull();
    expect(chat.lines.filter((l) => l.type === "status" && String(l.text).includes("reconnecting"))).toEqual([]);
    const messages = chat.messages();
    expect(messages.length).toBe(BACKLOG);
    expect(bySender(messages)).toEqual(texts);
  } finally {
    chat.proc.stdin.end();
    await chat.proc.exited;
  }
}, 180_000);

test("inbox killed with SIGKILL half way through its replay catches up at the next run, without showing again what it had acknowledged", async () => {
  const { name, texts } = await backlogFor(1_500, SIZE);
  const home = freshHome();
  const first = runClient("inbox", { balancer: cluster.balancerAddr, user: name, home });
  await first.waitForMessages(400, 120_000);
  first.proc.kill("SIGKILL");
  await first.proc.exited;
  const firstIds = first.messages().map((m) => m.id);
  expect(firstIds.length).toBeLessThan(1_500);

  const second = runClient("inbox", { balancer: cluster.balancerAddr, user: name, home });
  expect(await second.proc.exited).toBe(0);
  const secondIds = second.messages().map((m) => m.id);
  // Together, everything; the second run starts where the first left off, not at the beginning.
  const all = [...first.messages(), ...second.messages()];
  expect(new Set(all.map((m) => m.id)).size).toBe(1_500);
  expect(secondIds).not.toContain(firstIds[0]);
  expect(secondIds.length).toBeLessThan(1_500);
  const distinct = [...new Map(all.map((m) => [m.id, m])).values()];
  expect(bySender(distinct)).toEqual(texts);
  // And the server's read marker caught up with what was shown.
  const [row] = await database.sql`
    select count(*)::int as n from members me join users u on u.id = me.user_id
    join messages m on m.conversation_id = me.conversation_id and m.seq > me.read_seq and m.sender_id <> me.user_id
    where u.name = ${name}`;
  expect(row!.n).toBe(0);
}, 180_000);
