/**
 * The balancer over real sockets: servers come and go by announcing, clients
 * are answered by the strategy, and a restart heals itself.
 */
import { afterEach, expect, test } from "bun:test";
import { announce } from "../balancer/announcer";
import { connectAsMember } from "../balancer/member";
import { askBalancer } from "../balancer/ask";
import { Link } from "../net/link";
import { ChatError } from "../protocol/errors";
import { startBalancer } from "../roles/balancer";
import { TEST_MEMBER, testIdentity } from "./support/tls";

const cleanups: (() => void)[] = [];
afterEach(() => {
  for (const cleanup of cleanups.splice(0).reverse()) cleanup();
});

async function balancer(opts: { strategy?: string; port?: number; heartbeatTimeoutMs?: number } = {}) {
  const b = await startBalancer({ port: 0, strategy: "roundrobin", identity: await testIdentity(), ...opts });
  cleanups.push(() => b.stop());
  return { ...b, addr: `127.0.0.1:${b.port}` };
}

function server(balancerAddr: string, id: string, addr: string, load = () => 0) {
  const a = announce({ balancer: balancerAddr, id, addr, load, ...TEST_MEMBER });
  cleanups.push(() => a.stop());
  return a;
}

/** A client's link, or a cluster member's (mutual TLS and the secret's proof) under the id it names. */
async function link(addr: string, role: "server" | "client", id = "x"): Promise<Link> {
  const l = role === "server" ? await connectAsMember(addr, { id, ...TEST_MEMBER }, { timeoutMs: 2000 }) : await Link.connect(addr, { hello: { role }, timeoutMs: 2000 });
  cleanups.push(() => l.close());
  return l;
}

async function waitFor(what: string, condition: () => boolean | Promise<boolean>, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`Timed out waiting for ${what}`);
    await Bun.sleep(20);
  }
}

async function errorCode(promise: Promise<unknown>): Promise<string> {
  try {
    await promise;
  } catch (error) {
    if (error instanceof ChatError) return error.code;
    throw error;
  }
  throw new Error("expected a ChatError");
}

const ids = (b: { servers(): { id: string }[] }) => b.servers().map((s) => s.id).sort();

test("where alternates between two announced servers under roundrobin", async () => {
  const b = await balancer();
  server(b.addr, "a", "127.0.0.1:1111");
  server(b.addr, "b", "127.0.0.1:2222");
  await waitFor("both servers", () => b.servers().length === 2);

  const client = await link(b.addr, "client");
  const answers: string[] = [];
  for (let i = 0; i < 4; i++) answers.push((await client.request("where")).server as string);
  expect(answers[0]).not.toBe(answers[1]);
  expect(answers.slice(2)).toEqual(answers.slice(0, 2));
  expect(new Set(answers)).toEqual(new Set(["127.0.0.1:1111", "127.0.0.1:2222"]));

  const member = await link(b.addr, "server", "tool");
  const listed = (await member.request("servers")).servers as { id: string; addr: string; load: number }[];
  expect(listed.map((s) => s.id).sort()).toEqual(["a", "b"]);
  expect(await askBalancer(b.addr)).toMatch(/^127\.0\.0\.1:(1111|2222)$/);
});

test("heartbeats carry each server's load to the table", async () => {
  const b = await balancer({ strategy: "leastconn" });
  let load = 3;
  server(b.addr, "a", "127.0.0.1:1111", () => load);
  await waitFor("registration", () => b.servers()[0]?.load === 3);
  load = 9;
  await waitFor("a heartbeat with the new load", () => b.servers()[0]?.load === 9, 3000);
});

test("a server whose announcer stops disappears at once", async () => {
  const b = await balancer();
  const a = server(b.addr, "a", "127.0.0.1:1111");
  server(b.addr, "b", "127.0.0.1:2222");
  await waitFor("both servers", () => b.servers().length === 2);
  a.stop();
  await waitFor("server a to leave", () => ids(b).join() === "b", 500);
  expect(await askBalancer(b.addr)).toBe("127.0.0.1:2222");
});

test("a server that stops heartbeating but keeps its socket open is removed", async () => {
  const b = await balancer({ heartbeatTimeoutMs: 600 });
  const silent = await link(b.addr, "server", "mute");
  await silent.request("register", { server: "mute", addr: "127.0.0.1:3333", load: 0 });
  expect(ids(b)).toEqual(["mute"]);
  const started = Date.now();
  await waitFor("the silent server to expire", () => b.servers().length === 0, 3000);
  expect(Date.now() - started).toBeGreaterThanOrEqual(550);
  // The balancer closes the link, so a live but stuck announcer would start afresh.
  await waitFor("the link to close", () => silent.closed, 1000);
});

test("with no live server, where answers E_NO_SERVER", async () => {
  const b = await balancer();
  const client = await link(b.addr, "client");
  expect(await errorCode(client.request("where"))).toBe("E_NO_SERVER");
  expect(await errorCode(askBalancer(b.addr))).toBe("E_NO_SERVER");
});

test("a malformed request gets E_BAD_REQUEST and the balancer keeps serving", async () => {
  const b = await balancer();
  const bad = await link(b.addr, "server");
  expect(await errorCode(bad.request("register", { server: "x", addr: 1234, load: 0 }))).toBe("E_BAD_REQUEST");
  expect(await errorCode(bad.request("register", { server: "x", addr: "no-port", load: 0 }))).toBe("E_BAD_REQUEST");
  expect(await errorCode(bad.request("register", { server: "x", addr: "h:1", load: -1 }))).toBe("E_BAD_REQUEST");
  expect(await errorCode(bad.request("heartbeat", { load: 1 }))).toBe("E_BAD_REQUEST");
  expect(await errorCode(bad.request("teleport"))).toBe("E_UNKNOWN_OP");
  const client = await link(b.addr, "client");
  expect(await errorCode(client.request("register", { server: "x", addr: "h:1", load: 0 }))).toBe("E_AUTH");
  expect(await errorCode(Link.connect(b.addr, { hello: { role: "spy" } }))).toBe("E_BAD_REQUEST");
  expect(b.servers()).toEqual([]);

  // The same connection, and another client, are still answered.
  await bad.request("register", { server: "x", addr: "127.0.0.1:4444", load: 0 });
  expect((await client.request("where")).server).toBe("127.0.0.1:4444");
});

test("registering the same id again replaces the entry and closes the old connection", async () => {
  const b = await balancer();
  const old = await link(b.addr, "server", "a");
  await old.request("register", { server: "a", addr: "127.0.0.1:1111", load: 0 });
  const fresh = await link(b.addr, "server", "a");
  await fresh.request("register", { server: "a", addr: "127.0.0.1:5555", load: 2 });
  await waitFor("the old connection to close", () => old.closed, 1000);
  expect(b.servers().map(({ id, addr, load }) => ({ id, addr, load }))).toEqual([{ id: "a", addr: "127.0.0.1:5555", load: 2 }]);
});

test("after a balancer restart on the same port, servers re-register by themselves", async () => {
  const first = await balancer();
  server(first.addr, "a", "127.0.0.1:1111");
  server(first.addr, "b", "127.0.0.1:2222");
  await waitFor("both servers", () => first.servers().length === 2);

  first.stop();
  expect(await errorCode(askBalancer(first.addr, 500))).toBe("E_UNAVAILABLE");
  await Bun.sleep(300); // the announcers back off against a closed port meanwhile

  const second = await balancer({ port: first.port });
  await waitFor("both servers again", () => second.servers().length === 2, 4000);
  expect(["127.0.0.1:1111", "127.0.0.1:2222"]).toContain(await askBalancer(second.addr));
});
