/**
 * Devices and sessions: a user may be connected from several devices and
 * several processes of one device at once, on any servers; every connection
 * receives every message live and nobody is kicked out. ChatDB records each
 * connection under the user's and the device's row locks; devices are capped
 * and can be revoked; a resume token brings a client back without its password.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import postgres from "postgres";
import { loginKeys } from "../client/account";
import { ChatSession } from "../client/session";
import type { Link } from "../net/link";
import type { ChatError } from "../protocol/errors";
import { PASSWORD, rawLink, signup, startCluster, uniqueName, until, waitFor, type Cluster } from "./support/cluster";

let cluster: Cluster;
let sql: postgres.Sql;

beforeAll(async () => {
  cluster = await startCluster({ servers: 2, config: { maxDevices: 3 } });
  sql = postgres(cluster.url, { max: 2, onnotice: () => {} });
  // Servers find each other through the servers table once a second: let both peer links come up.
  await Bun.sleep(1_500);
}, 60_000);

afterAll(async () => {
  await sql?.end();
  await cluster?.stop();
});

/** One login on one server as one device, and everything that happened to its connection. */
interface Side {
  server: number;
  link?: Link;
  error?: ChatError;
  bye?: ChatError;
  closed: boolean;
  /** Live messages received. */
  messages: number;
  token?: string;
}

async function loginOn(server: number, name: string, device = `dev-${name}`): Promise<Side> {
  const side: Side = { server, closed: false, messages: 0 };
  try {
    side.link = await rawLink(
      cluster.servers[server]!.addr,
      undefined,
      {
        onBye: (e) => (side.bye = e as ChatError),
        onClose: () => (side.closed = true),
        onEvent: (ev) => void (ev === "msg" && side.messages++),
      },
    );
    const reply = await side.link.request("login", { user: name, auth: (await loginKeys(side.link, name, PASSWORD)).authKey, device: { id: device, name: "test" } });
    side.token = reply.token as string;
    // Live messages wait for the replay of the backlog, as for any client.
    await side.link.request("sync");
  } catch (error) {
    side.error = error as ChatError;
  }
  return side;
}

async function connectionRows(name: string): Promise<{ server_id: string; device: string }[]> {
  return (await sql`select c.server_id, d.key as device from connections c join devices d on d.id = c.device_id join users u on u.id = c.user_id
                    where u.name = ${name} order by c.server_id`) as never;
}

async function send(from: string, to: string): Promise<void> {
  const link = await rawLink(cluster.servers[0]!.addr, from);
  await link.request("send", { to, cmid: crypto.randomUUID(), body: new Uint8Array([7]) });
  link.close();
}

test("two logins of one device racing on two servers both stay live, on record once each, and both receive live", async () => {
  for (let round = 0; round < 5; round++) {
    const name = uniqueName("racer");
    const sender = uniqueName("sender");
    for (const n of [name, sender]) await signup(cluster.balancerAddr, n);
    const sides = await Promise.all([loginOn(0, name), loginOn(1, name)]);
    expect(sides.map((s) => s.error?.code)).toEqual([undefined, undefined]);
    // One device, two connections, one on each server.
    const [{ n }] = (await sql`select count(*)::int as n from devices d join users u on u.id = d.user_id where u.name = ${name}`) as unknown as [{ n: number }];
    expect(n).toBe(1);
    expect((await connectionRows(name)).map((r) => r.server_id).sort()).toEqual([cluster.servers[0]!.id, cluster.servers[1]!.id].sort());
    await send(sender, name);
    await waitFor(() => sides.every((s) => s.messages === 1), `round ${round}: both connections to get the message`, 5_000);
    expect(sides.map((s) => s.closed)).toEqual([false, false]);
    // Each login has its own token, and both resume.
    for (const s of sides) s.link!.close();
    for (const s of sides) {
      const again = await rawLink(cluster.servers[s.server]!.addr);
      const reply = await again.request("resume", { user: name, token: s.token });
      expect(reply.device).toBe(`dev-${name}`);
      again.close();
    }
  }
}, 90_000);

test("a second device logging in kicks nobody out, and both of the user's devices get every message", async () => {
  const name = uniqueName("multi");
  const sender = uniqueName("sender");
  for (const n of [name, sender]) await signup(cluster.balancerAddr, n);
  const laptop = await loginOn(0, name, `laptop-${name}`);
  const phone = await loginOn(1, name, `phone-${name}`);
  const script = await loginOn(1, name, `laptop-${name}`);
  for (let i = 0; i < 3; i++) await send(sender, name);
  await waitFor(() => [laptop, phone, script].every((s) => s.messages === 3), "every connection to get every message", 5_000);
  expect([laptop, phone, script].map((s) => s.closed)).toEqual([false, false, false]);
  for (const s of [laptop, phone, script]) s.link!.close();
});

test("devices are capped: past the cap a new device is refused with E_TOO_MANY_DEVICES, and revoking one makes room", async () => {
  const name = uniqueName("capped");
  await signup(cluster.balancerAddr, name);
  const sides: Side[] = [];
  for (let i = 0; i < 3; i++) sides.push(await loginOn(i % 2, name, `device-${i}-${name}`));
  expect(sides.map((s) => s.error?.code)).toEqual([undefined, undefined, undefined]);
  const fourth = await loginOn(0, name, `device-3-${name}`);
  expect(fourth.error?.code).toBe("E_TOO_MANY_DEVICES");
  // An existing device still logs in.
  const again = await loginOn(1, name, `device-0-${name}`);
  expect(again.error).toBeUndefined();
  const listed = (await sides[0]!.link!.request("devices")).devices as { id: string; online: boolean; current: boolean }[];
  expect(listed.map((d) => d.id)).toEqual([0, 1, 2].map((i) => `device-${i}-${name}`));
  expect(listed.every((d) => d.online)).toBe(true);
  expect(listed.find((d) => d.current)?.id).toBe(`device-0-${name}`);
  // Revoking device 2 (connected to server 0) closes it, kills its token, and makes room.
  await sides[0]!.link!.request("devices.revoke", { device: `device-2-${name}` });
  await waitFor(() => sides[2]!.closed, "the revoked device to be closed", 5_000);
  expect(sides[2]!.bye?.code).toBe("E_DEVICE_REVOKED");
  const resume = await rawLink(cluster.servers[1]!.addr);
  expect(((await resume.request("resume", { user: name, token: sides[2]!.token }).catch((e) => e)) as ChatError).code).toBe("E_TOKEN");
  resume.close();
  const fifth = await loginOn(1, name, `device-4-${name}`);
  expect(fifth.error).toBeUndefined();
  for (const s of [...sides, again, fifth]) s.link?.close();
});

test("a revoked device on another server is closed over the peer link", async () => {
  const name = uniqueName("lost");
  await signup(cluster.balancerAddr, name);
  const kept = await loginOn(0, name, `kept-${name}`);
  const stolen = await loginOn(1, name, `stolen-${name}`);
  await kept.link!.request("devices.revoke", { device: `stolen-${name}` });
  await waitFor(() => stolen.closed, "the stolen device to be closed", 5_000);
  expect(stolen.bye?.code).toBe("E_DEVICE_REVOKED");
  expect((await connectionRows(name)).map((r) => r.device)).toEqual([`kept-${name}`]);
  kept.link!.close();
});

test("a login abandoned before it completes leaves no connection on record, and the live one live", async () => {
  const name = uniqueName("steady");
  const sender = uniqueName("sender");
  for (const n of [name, sender]) await signup(cluster.balancerAddr, n);
  const live = await loginOn(0, name);
  await live.link!.request("sync");
  // A second device starts a login on the other server and hangs up before the answer.
  const quitter = await rawLink(cluster.servers[1]!.addr);
  const auth = (await loginKeys(quitter, name, PASSWORD)).authKey;
  const abandoned = quitter.request("login", { user: name, auth, device: { id: `quitter-${name}`, name: "q" } }).catch(() => {});
  quitter.close();
  await abandoned;
  await until(async () => (await connectionRows(name)).length === 1, "only the live connection to be on record");
  expect(await connectionRows(name)).toEqual([{ server_id: cluster.servers[0]!.id, device: `dev-${name}` }]);
  await send(sender, name);
  await waitFor(() => live.messages === 1, "the message to arrive live");
  expect(live.closed).toBe(false);
  live.link!.close();
  await until(async () => (await connectionRows(name)).length === 0, "the closed connection to leave the record");
});

test("a resume token that was never issued is refused with E_TOKEN", async () => {
  const name = uniqueName("forger");
  await signup(cluster.balancerAddr, name);
  const link = await rawLink(cluster.servers[0]!.addr);
  const forged = Buffer.from(crypto.getRandomValues(new Uint8Array(32))).toString("base64url");
  const refusal = await link.request("resume", { user: name, token: forged }).catch((e: ChatError) => e);
  expect((refusal as ChatError).code).toBe("E_TOKEN");
  link.close();
});

// Stops a server: keep this test last in the file.
test("after its server stops, a client reconnects to the other server with its resume token, without asking for the password again", async () => {
  const name = uniqueName("resumer");
  await signup(cluster.balancerAddr, name);
  let passwordAsked = 0;
  let ended: ChatError | undefined;
  const session = await ChatSession.open({
    balancer: cluster.balancerAddr,
    user: name,
    password: () => {
      passwordAsked++;
      return PASSWORD;
    },
    persist: false,
    onEnd: (e) => (ended = e),
  });
  try {
    expect(passwordAsked).toBe(1);
    const first = cluster.servers.find((s) => s.id === session.serverId)!;
    const other = cluster.servers.find((s) => s.id !== session.serverId)!;
    expect(first).toBeDefined();
    await first.stop();
    await waitFor(() => session.connected && session.serverId === other.id, "the session to reconnect to the other server", 15_000);
    expect(ended).toBeUndefined();
    expect(passwordAsked).toBe(1);
    expect((await connectionRows(name)).map((r) => r.server_id)).toEqual([other.id]);
  } finally {
    await session.close();
  }
}, 60_000);
