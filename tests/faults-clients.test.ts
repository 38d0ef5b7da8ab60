/**
 * Clients under faults: a chat stopped (SIGSTOP) while large messages pour in,
 * a sender's keys that cannot be fetched for a while, and an inbox whose
 * server is killed in the middle of its replay.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { openDatabase, type Database } from "../db/connect";
import { testIdentity } from "./support/tls";
import { startBalancer, type Balancer } from "../roles/balancer";
import { ChatSession, type Received } from "../client/session";
import { PASSWORD, connectUser, signup, spawnServer, uniqueName, until, waitFor, type ServerProcess, type TestUser } from "./support/cluster";
import { runClient } from "./support/cli-process";
import { testDatabaseUrl } from "./support/pg";
import { migrate } from "../db/connect";

const SIZE = 8_000;

let url: string;
let database: Database;
let balancer: Balancer;
let balancerAddr: string;
const servers: ServerProcess[] = [];
const senders: TestUser[] = [];
const homes: string[] = [];

beforeAll(async () => {
  url = await testDatabaseUrl();
  database = openDatabase(url, { max: 2 });
  await migrate(database);
  balancer = await startBalancer({ port: 0, strategy: "roundrobin", identity: await testIdentity(url) });
  balancerAddr = `127.0.0.1:${balancer.port}`;
  // The pourers send backlogs as fast as the servers store them: a bot's allowance, not a person's 10 a second.
  for (let i = 0; i < 2; i++) servers.push(await spawnServer(url, balancerAddr, ["--send-rate", "10000"]));
  await waitFor(() => balancer.servers().length === 2, "both servers to register");
  for (let i = 0; i < 4; i++) {
    const name = uniqueName("pourer");
    await signup(balancerAddr, name);
    senders.push(await connectUser(balancerAddr, name));
  }
}, 60_000);

afterAll(async () => {
  for (const s of senders) await s.session.close().catch(() => {});
  for (const server of servers) server.proc.kill("SIGKILL");
  balancer?.stop();
  await database?.close();
  for (const home of homes) rmSync(home, { recursive: true, force: true });
});

function freshHome(): string {
  const home = mkdtempSync(join(tmpdir(), "chatterbox-faults-home-"));
  homes.push(home);
  return home;
}

/** `count` sealed DMs of SIZE characters to `to`, from every sender in turn; returns the texts by sender. */
async function pour(to: string, count: number, from = 0): Promise<Map<string, string[]>> {
  const texts = new Map(senders.map((s) => [s.name, [] as string[]]));
  await Promise.all(
    senders.map(async (s, k) => {
      for (let i = from + k; i < from + count; i += senders.length) {
        const text = `${String(i).padStart(5, "0")} ${"y".repeat(SIZE - 6)}`;
        texts.get(s.name)!.push(text);
        await s.session.sendText(to, text);
      }
    }),
  );
  return texts;
}

function bySender(messages: { from: string; text: string }[]): Map<string, string[]> {
  const out = new Map(senders.map((s) => [s.name, [] as string[]]));
  for (const m of messages) out.get(m.from)?.push(m.text);
  return out;
}

test("a chat stopped with SIGSTOP while 12 MB of messages pour in catches up after SIGCONT, on the same connection, each once and in order", async () => {
  const name = uniqueName("sleeper");
  await signup(balancerAddr, name);
  const chat = runClient("chat", { balancer: balancerAddr, user: name, home: freshHome() });
  try {
    // One message each first: the chat is up, and knows every sender's keys.
    const hello = await pour(name, senders.length);
    await chat.waitForMessages(senders.length);
    chat.proc.kill("SIGSTOP");
    const poured = await pour(name, 1_500, senders.length);
    chat.proc.kill("SIGCONT");
    await chat.waitForMessages(senders.length + 1_500, 120_000);
    const messages = chat.messages();
    expect(messages.length).toBe(senders.length + 1_500);
    const expected = new Map([...hello].map(([s, t]) => [s, [...t, ...poured.get(s)!]]));
    expect(bySender(messages)).toEqual(expected);
    // Never cut off: no reconnect, no slow-consumer goodbye.
    const trouble = chat.lines.filter((l) => l.type === "error" || (l.type === "status" && !String(l.text).startsWith("logged in")));
    expect(trouble).toEqual([]);
  } finally {
    chat.proc.kill("SIGCONT");
    chat.proc.stdin.end();
    await chat.proc.exited;
  }
}, 180_000);

test("a sender's keys that cannot be fetched for a while delay the replayed messages but never hide them", async () => {
  const alice = senders[0]!;
  const bob = uniqueName("patient");
  await signup(balancerAddr, bob);
  for (let i = 0; i < 3; i++) await alice.session.sendText(bob, `before ${i}`);
  // A real fault in the database: the keys query fails (undefined column) until the column is back.
  const failures = async () => {
    const [row] = await database.sql`select xact_rollback::int as n from pg_stat_database where datname = current_database()`;
    return row!.n as number;
  };
  const failedBefore = await failures();
  await database.sql`alter table users rename column dh_public to dh_public_away`;
  const received: Received[] = [];
  const statuses: string[] = [];
  let opened: ChatSession | undefined;
  try {
    const opening = ChatSession.open({
      balancer: balancerAddr,
      user: bob,
      password: () => PASSWORD,
      persist: false,
      onMessage: (m) => received.push(m),
      onStatus: (s) => statuses.push(s),
    });
    // Bob's session asked for alice's keys, and was refused, more than once (each refusal is a rolled-back query).
    await until(async () => (await failures()) >= failedBefore + 3, "bob's session to be refused alice's keys", 30_000);
    // Nothing was shown as failed meanwhile.
    expect(received).toEqual([]);
    await database.sql`alter table users rename column dh_public_away to dh_public`;
    opened = await opening;
    expect(received.map((m) => m.text)).toEqual(["before 0", "before 1", "before 2"]);
    expect(received.every((m) => m.verified && m.problem === undefined)).toBe(true);
  } finally {
    await database.sql`alter table users rename column dh_public_away to dh_public`.catch(() => {});
    await opened?.close();
  }
}, 60_000);

test("inbox exits, with everything shown once, after its server is killed in the middle of its replay", async () => {
  const name = uniqueName("failover");
  await signup(balancerAddr, name);
  const texts = await pour(name, 2_500);
  const inbox = runClient("inbox", { balancer: balancerAddr, user: name, home: freshHome() });
  await inbox.waitForMessages(100, 120_000);
  const [row] = await database.sql`select c.server_id from connections c join users u on u.id = c.user_id where u.name = ${name}`;
  const server = servers.find((s) => s.id === row?.server_id);
  expect(server).toBeDefined();
  await server!.kill9();
  const printedBeforeKill = inbox.messages().length;
  expect(await inbox.proc.exited).toBe(0);
  expect(printedBeforeKill).toBeLessThan(2_500);
  const messages = inbox.messages();
  expect(new Set(messages.map((m) => m.id)).size).toBe(messages.length);
  expect(messages.length).toBe(2_500);
  expect(bySender(messages)).toEqual(texts);
  servers.splice(servers.indexOf(server!), 1);
}, 180_000);
