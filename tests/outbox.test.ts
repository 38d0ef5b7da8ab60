/**
 * The outbox survives: what is typed while no server is reachable waits on
 * disk, and goes out in order, each message stored once, when one is back,
 * even if the client was killed in between and started again.
 */
import { Database } from "bun:sqlite";
import { afterAll, beforeAll, expect, setDefaultTimeout, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import postgres from "postgres";
import { PASSWORD, ROOT, connectUser, signup, startCluster, uniqueName, waitFor, type Cluster } from "./support/cluster";

setDefaultTimeout(90_000);

let cluster: Cluster;
let sql: postgres.Sql;
const homes: string[] = [];

beforeAll(async () => {
  cluster = await startCluster({ servers: 1 });
  sql = postgres(cluster.url, { max: 1, onnotice: () => {} });
}, 60_000);

afterAll(async () => {
  await sql?.end();
  await cluster?.stop();
  for (const home of homes) rmSync(home, { recursive: true, force: true });
});

/** Stops every server: the balancer then knows none. */
async function allServersDown(): Promise<void> {
  for (const server of cluster.servers.splice(0)) await server.stop();
}

async function storedTexts(from: string): Promise<{ n: number; cmids: number }> {
  const [row] = await sql`select count(*)::int as n, count(distinct cmid)::int as cmids from messages m join users u on u.id = m.sender_id where u.name = ${from}`;
  return row as never;
}

test("lines sent while every server is down are stored in order once one is back, each once", async () => {
  const [alice, bob] = [uniqueName("alice"), uniqueName("bob")];
  for (const n of [alice, bob]) await signup(cluster.balancerAddr, n);
  const a = await connectUser(cluster.balancerAddr, alice);
  await a.session.sendText(bob, "before the outage");
  await allServersDown();
  await waitFor(() => !a.session.connected, "alice to notice");
  const sends = Array.from({ length: 10 }, (_, i) => a.session.sendText(bob, `offline ${i}`));
  await Bun.sleep(500);
  expect(a.session.pendingSends).toBe(10);
  await cluster.addServer();
  const results = await Promise.all(sends);
  expect(results.map((r) => r.seq)).toEqual(Array.from({ length: 10 }, (_, i) => i + 2));
  expect(await storedTexts(alice)).toEqual({ n: 11, cmids: 11 });
  expect(a.session.pendingSends).toBe(0);
  await a.session.close();
  const b = await connectUser(cluster.balancerAddr, bob);
  expect(b.texts()).toEqual(["before the outage", ...Array.from({ length: 10 }, (_, i) => `offline ${i}`)]);
  await b.session.close();
});

test("a chat killed while its lines are pending sends them at its next start, in order, each stored once", async () => {
  const [alice, bob] = [uniqueName("alice"), uniqueName("bob")];
  for (const n of [alice, bob]) await signup(cluster.balancerAddr, n);
  const home = mkdtempSync(join(tmpdir(), "chatterbox-outbox-"));
  homes.push(home);
  const env = { ...process.env, CHATTERBOX_HOME: home, CHATTERBOX_PASSWORD: PASSWORD, CHATTERBOX_TEST_KDF: "1" };
  const chat = Bun.spawn([process.execPath, join(ROOT, "cli.ts"), "chat", "--user", alice, "--json", "--balancer", cluster.balancerAddr], { env, stdin: "pipe", stdout: "pipe", stderr: "ignore" });
  let out = "";
  void (async () => {
    for await (const chunk of chat.stdout) out += new TextDecoder().decode(chunk);
  })();
  await waitFor(() => out.includes("logged in"), "chat to log in", 20_000);
  chat.stdin.write(`/dm ${bob}\nhello while up\n`);
  await waitFor(() => out.includes('"sent"'), "the first line to be stored");
  await allServersDown();
  chat.stdin.write("pending one\npending two\npending three\n");
  const outbox = () => {
    const db = new Database(join(home, alice, "store.db"), { readonly: true });
    try {
      return (db.query("select count(*) as n from outbox").get() as { n: number }).n;
    } finally {
      db.close();
    }
  };
  await waitFor(() => outbox() === 3, "the three lines to wait in the outbox on disk", 10_000);
  chat.kill("SIGKILL");
  await chat.exited;
  await cluster.addServer();
  // Any next run of the client on that home sends them.
  await using next = Bun.spawn([process.execPath, join(ROOT, "cli.ts"), "chat", "--user", alice, "--json", "--balancer", cluster.balancerAddr], { env, stdin: "pipe", stdout: "pipe", stderr: "pipe" });
  const deadline = Date.now() + 20_000;
  while ((await storedTexts(alice)).n < 4 && Date.now() < deadline) await Bun.sleep(100);
  next.stdin.write("/quit\n");
  await next.stdin.end();
  await next.exited;
  expect(await storedTexts(alice)).toEqual({ n: 4, cmids: 4 });
  expect(outbox()).toBe(0);
  const b = await connectUser(cluster.balancerAddr, bob);
  expect(b.texts()).toEqual(["hello while up", "pending one", "pending two", "pending three"]);
  await b.session.close();
});
