/**
 * One live session per user, cluster-wide: the row lock in ChatDB decides
 * between logins racing on different servers, the displaced connection is told
 * why and closed, and a resume token brings a client back without its password.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import postgres from "postgres";
import { loginKeys } from "../client/account";
import { ChatSession } from "../client/session";
import type { Link } from "../net/link";
import type { ChatError } from "../protocol/errors";
import { PASSWORD, rawLink, signup, startCluster, uniqueName, waitFor, type Cluster } from "./support/cluster";

let cluster: Cluster;
let sql: postgres.Sql;

beforeAll(async () => {
  cluster = await startCluster({ servers: 2 });
  sql = postgres(cluster.url, { max: 2, onnotice: () => {} });
  // Servers find each other through the servers table once a second: let both
  // peer links come up, so that a displaced session hears of it over the link.
  await Bun.sleep(1_500);
}, 60_000);

afterAll(async () => {
  await sql?.end();
  await cluster?.stop();
});

/** One login attempt on one server, and everything that happened to its connection. */
interface Side {
  server: number;
  link?: Link;
  error?: ChatError;
  bye?: ChatError;
  byeAt?: number;
  closed: boolean;
  /** Live messages received. */
  messages: number;
}

async function loginOn(server: number, name: string): Promise<Side> {
  const side: Side = { server, closed: false, messages: 0 };
  try {
    side.link = await rawLink(cluster.servers[server]!.addr, name, {
      onBye: (e) => {
        side.bye = e as ChatError;
        side.byeAt = performance.now();
      },
      onClose: () => (side.closed = true),
      onEvent: (ev) => void (ev === "msg" && side.messages++),
    });
  } catch (error) {
    // The loser may be displaced before its login reply is even sent.
    side.error = error as ChatError;
  }
  return side;
}

/** Which server the sessions table gives the user to. */
async function sessionServer(name: string): Promise<string | null> {
  const [row] = await sql`select s.server_id from sessions s join users u on u.id = s.user_id where u.name = ${name}`;
  return row?.server_id ?? null;
}

test("two logins of one user racing on two servers end with exactly one live session, and the loser was told why", async () => {
  const rounds: { name: string; sides: Side[] }[] = [];
  for (let round = 0; round < 10; round++) {
    const name = uniqueName("racer");
    await signup(cluster.balancerAddr, name);
    const sides = await Promise.all([loginOn(0, name), loginOn(1, name)]);
    rounds.push({ name, sides });
    // The displaced side hears of it over the peer link, or from the audit within ~2 s.
    await waitFor(() => sides.filter((s) => s.closed).length >= 1, `round ${round}: one login to be displaced`, 3_000);
  }
  // Let one more audit pass on both servers: it must not change the verdict.
  await Bun.sleep(2_500);

  for (const { name, sides } of rounds) {
    const live = sides.filter((s) => s.link && !s.closed);
    const lost = sides.filter((s) => s.closed);
    expect({ name, live: live.length, lost: lost.length }).toEqual({ name, live: 1, lost: 1 });
    const [winner] = live;
    const [loser] = lost;
    // The winner is logged in: a request that needs a login is answered.
    const who = await winner!.link!.request("who");
    expect(who.users).toContain(name);
    // The loser was told why before it was closed.
    expect({ name, bye: loser!.bye?.code }).toEqual({ name, bye: "E_SESSION_REPLACED" });
    if (loser!.error) expect(loser!.error.code).toBe("E_CLOSED");
    // And the database agrees on the winner.
    expect(await sessionServer(name)).toBe(cluster.servers[winner!.server]!.id);
  }
  for (const { sides } of rounds) for (const s of sides) s.link?.close();
}, 90_000);

test("a login on another server displaces the first session at once, over the peer link", async () => {
  const name = uniqueName("mover");
  await signup(cluster.balancerAddr, name);
  let previous = await loginOn(0, name);
  expect(previous.link).toBeDefined();
  // Back and forth, so that an audit that happens to run at the right moment cannot pass for the peer link.
  for (const server of [1, 0, 1]) {
    const next = await loginOn(server, name);
    const loggedInAt = performance.now();
    expect(next.link).toBeDefined();
    await waitFor(() => previous.closed, "the first session to be closed", 3_000);
    expect(previous.bye?.code).toBe("E_SESSION_REPLACED");
    expect(previous.byeAt! - loggedInAt).toBeLessThan(500);
    expect(next.closed).toBe(false);
    expect(await sessionServer(name)).toBe(cluster.servers[server]!.id);
    previous = next;
  }
  previous.link!.close();
});

test("a second login on the same server displaces the first at once", async () => {
  const name = uniqueName("twice");
  await signup(cluster.balancerAddr, name);
  const first = await loginOn(0, name);
  const second = await loginOn(0, name);
  await waitFor(() => first.closed, "the first session to be closed", 1_000);
  expect(first.bye?.code).toBe("E_SESSION_REPLACED");
  expect((await second.link!.request("who")).users).toContain(name);
  second.link!.close();
});

test("a login abandoned before it completes leaves the live session live and on record", async () => {
  const name = uniqueName("steady");
  const sender = uniqueName("sender");
  for (const n of [name, sender]) await signup(cluster.balancerAddr, n);
  const live = await loginOn(0, name);
  await live.link!.request("sync");
  // A second device starts a login on the other server and hangs up before the answer.
  const quitter = await rawLink(cluster.servers[1]!.addr);
  const auth = (await loginKeys(quitter, name, PASSWORD)).authKey;
  const abandoned = quitter.request("login", { user: name, auth }).catch(() => {});
  quitter.close();
  await abandoned;
  // Long enough for the abandoned login to run its course, and for an audit to pass.
  await Bun.sleep(2_500);
  const row = await sessionServer(name);
  if (live.closed) {
    // Acceptable: the newer login displaced it and said so, and nobody holds the session.
    expect(live.bye?.code).toBe("E_SESSION_REPLACED");
    expect(row).toBeNull();
    return;
  }
  // Otherwise it is still the user's session: on record, and reached by live delivery from the other server.
  expect({ live: true, row }).toEqual({ live: true, row: cluster.servers[0]!.id });
  const from = await rawLink(cluster.servers[1]!.addr, sender);
  await from.request("send", { to: name, cmid: crypto.randomUUID(), body: new Uint8Array([7]) });
  from.close();
  await waitFor(() => live.messages === 1, "the message to arrive live", 3_000);
  live.link!.close();
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
  const statuses: string[] = [];
  let ended: ChatError | undefined;
  const session = await ChatSession.open({
    balancer: cluster.balancerAddr,
    user: name,
    password: () => {
      passwordAsked++;
      return PASSWORD;
    },
    persist: false,
    onStatus: (line) => statuses.push(line),
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
    expect(await sessionServer(name)).toBe(other.id);
    expect(await session.who()).toContain(name);
  } finally {
    await session.close();
  }
}, 60_000);
