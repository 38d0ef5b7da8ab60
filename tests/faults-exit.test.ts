/**
 * A one-shot command whose every server goes away in the middle of its
 * replay: it ends, with an error, once no server has answered for --wait
 * seconds, instead of trying for ever.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { migrate, openDatabase } from "../db/connect";
import { startBalancer, type Balancer } from "../roles/balancer";
import { connectUser, signup, spawnServer, uniqueName, waitFor, type ServerProcess, type TestUser } from "./support/cluster";
import { runClient } from "./support/cli-process";
import { testDatabaseUrl } from "./support/pg";
import { testIdentity } from "./support/tls";

let balancer: Balancer;
let balancerAddr: string;
let server: ServerProcess;
const senders: TestUser[] = [];
const home = mkdtempSync(join(tmpdir(), "chatterbox-faults-home-"));

beforeAll(async () => {
  const url = await testDatabaseUrl();
  const database = openDatabase(url, { max: 1 });
  await migrate(database);
  await database.close();
  balancer = await startBalancer({ port: 0, strategy: "roundrobin", identity: await testIdentity(url) });
  balancerAddr = `127.0.0.1:${balancer.port}`;
  // A backlog is poured in as fast as the server stores it: a bot's allowance, not a person's 10 a second.
  server = await spawnServer(url, balancerAddr, ["--send-rate", "10000"]);
  await waitFor(() => balancer.servers().length === 1, "the server to register");
}, 60_000);

afterAll(async () => {
  for (const s of senders) await s.session.close().catch(() => {});
  server?.proc.kill("SIGKILL");
  balancer?.stop();
  rmSync(home, { recursive: true, force: true });
});

test("inbox whose only server is killed mid-replay exits with E_UNAVAILABLE after --wait seconds without a server", async () => {
  const name = uniqueName("stranded");
  await signup(balancerAddr, name);
  for (let i = 0; i < 3; i++) {
    const sender = uniqueName("pourer");
    await signup(balancerAddr, sender);
    senders.push(await connectUser(balancerAddr, sender));
  }
  await Promise.all(senders.map(async (s) => {
    for (let i = 0; i < 600; i++) await s.session.sendText(name, `${i} ${"z".repeat(8_000)}`);
  }));
  for (const s of senders.splice(0)) await s.session.close();
  const inbox = runClient("inbox", { balancer: balancerAddr, user: name, home, extra: ["--wait", "2"] });
  await inbox.waitForMessages(50, 120_000);
  await server.kill9();
  const printedBeforeKill = inbox.messages().length;
  expect(printedBeforeKill).toBeLessThan(1_800);
  expect(await inbox.proc.exited).toBe(1);
  expect(inbox.stderr()).toContain("E_UNAVAILABLE");
}, 180_000);
