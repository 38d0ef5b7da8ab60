/**
 * Crashes lose nothing acknowledged, for every device: the server holding one
 * of a user's two devices dies by SIGKILL while messages stream to the user,
 * and both devices end with every message, once each and in order.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { ChatSession, type Received } from "../client/session";
import { migrate, openDatabase } from "../db/connect";
import { testIdentity } from "./support/tls";
import { startBalancer, type Balancer } from "../roles/balancer";
import { connectUser, PASSWORD, signup, spawnServer, uniqueName, waitFor, type ServerProcess } from "./support/cluster";
import { testDatabaseUrl } from "./support/pg";

const N = 300;
const cleanups: (() => Promise<unknown> | unknown)[] = [];

let url: string;
beforeAll(async () => {
  url = await testDatabaseUrl();
  const database = openDatabase(url, { max: 1 });
  await migrate(database);
  await database.close();
}, 60_000);

afterAll(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

async function device(balancerAddr: string, user: string, key: string, shown: Received[]): Promise<ChatSession> {
  const session = await ChatSession.open({ balancer: balancerAddr, user, password: () => PASSWORD, persist: false, deviceKey: key, onMessage: (m) => shown.push(m) });
  cleanups.push(() => session.close());
  return session;
}

test("kill -9 of the server holding one of a user's two devices while messages stream: both devices end with every message, once and in order", async () => {
  const balancer: Balancer = await startBalancer({ port: 0, strategy: "roundrobin", identity: await testIdentity(url) });
  cleanups.push(() => balancer.stop());
  const balancerAddr = `127.0.0.1:${balancer.port}`;
  const servers: ServerProcess[] = await Promise.all([spawnServer(url, balancerAddr), spawnServer(url, balancerAddr)]);
  for (const server of servers) cleanups.push(() => server.kill9());
  await waitFor(() => servers.every((s) => balancer.servers().some((b) => b.id === s.id)), "both servers to register");

  const [alice, bob] = [uniqueName("alice"), uniqueName("bob")];
  for (const n of [alice, bob]) await signup(balancerAddr, n);
  const phoneShown: Received[] = [];
  const laptopShown: Received[] = [];
  const phone = await device(balancerAddr, bob, `phone-${bob}`, phoneShown);
  let laptop = await device(balancerAddr, bob, `laptop-${bob}`, laptopShown);
  for (let i = 0; laptop.serverId === phone.serverId; i++) {
    if (i === 5) throw new Error("could not place the devices apart");
    await laptop.close();
    laptop = await device(balancerAddr, bob, `laptop-${bob}`, laptopShown);
  }
  const sender = await connectUser(balancerAddr, alice);
  cleanups.push(() => sender.session.close());
  const victim = servers.find((s) => s.id === laptop.serverId)!;

  const texts = Array.from({ length: N }, (_, i) => `stream ${i}`);
  let sent = 0;
  const sending = (async () => {
    for (const text of texts) {
      await sender.session.sendText(bob, text);
      sent++;
    }
  })();
  await waitFor(() => sent >= N / 3, "a third of the stream to be stored", 30_000);
  await victim.kill9();
  await sending;

  for (const [name, shown] of [["phone", phoneShown], ["laptop", laptopShown]] as const) {
    await waitFor(() => new Set(shown.map((m) => m.id)).size >= N, `the ${name} to have every message`, 30_000);
    await Bun.sleep(300);
    expect({ name, count: shown.length }).toEqual({ name, count: N });
    expect({ name, texts: shown.map((m) => m.text) }).toEqual({ name, texts });
  }
  expect(laptop.serverId).not.toBe(victim.id);
}, 120_000);
