/**
 * Real systems for tests: a balancer and chat servers on free ports over a
 * fresh database, in this process or as separate processes (for kill -9), and
 * client sessions that record what their user would see.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Subprocess } from "bun";
import { ChatSession, type Received, type TypingEvent } from "../../client/session";
import { startBalancer, type Balancer } from "../../roles/balancer";
import { startServer, type ChatServer } from "../../roles/server";
import type { ServerConfig } from "../../server/context";
import { Link } from "../../net/link";
import { PLAINTEXT } from "../../net/tls";
import { askBalancer } from "../../balancer/ask";
import { loginKeys, signupAccount } from "../../client/account";
import type { IdentityKeys } from "../../crypto/keys";
import { testDatabaseUrl } from "./pg";
import { seedCluster, testIdentity } from "./tls";

export const ROOT = join(import.meta.dir, "..", "..");
/** In-process servers are quiet in tests; CHATTERBOX_TEST_LOG=1 shows what they log. */
const serverLog = process.env.CHATTERBOX_TEST_LOG ? (line: string) => console.error(`[server] ${line}`) : () => {};
export const PASSWORD = "correct horse battery";

process.env.CHATTERBOX_HOME ??= mkdtempSync(join(tmpdir(), "chatterbox-home-"));
// Cheap key derivation for test accounts: the real setting costs ~250 ms a login.
process.env.CHATTERBOX_TEST_KDF = "1";

export interface Cluster {
  url: string;
  balancer: Balancer;
  balancerAddr: string;
  servers: ChatServer[];
  addServer(config?: Partial<ServerConfig>): Promise<ChatServer>;
  stop(): Promise<void>;
}

/** With plaintext, every hop is (--insecure-plaintext); the caller sets the clients' trust to match. */
export async function startCluster(options: { servers?: number; config?: Partial<ServerConfig>; url?: string; plaintext?: boolean } = {}): Promise<Cluster> {
  const url = options.url ?? (await testDatabaseUrl());
  await seedCluster(url);
  const identity = await testIdentity();
  const balancer = await startBalancer({ port: 0, strategy: "roundrobin", identity: options.plaintext ? { ...identity, tls: PLAINTEXT } : identity });
  const balancerAddr = `127.0.0.1:${balancer.port}`;
  const servers: ChatServer[] = [];
  const addServer = async (config?: Partial<ServerConfig>) => {
    const server = await startServer({
      port: 0,
      databaseUrl: url,
      balancer: balancerAddr,
      config: { ...options.config, ...config },
      insecurePlaintext: options.plaintext,
      log: serverLog,
    });
    servers.push(server);
    await waitFor(() => balancer.servers().some((s) => s.id === server.id), "the server to register");
    return server;
  };
  for (let i = 0; i < (options.servers ?? 2); i++) await addServer();
  return {
    url,
    balancer,
    balancerAddr,
    servers,
    addServer,
    async stop() {
      await Promise.all(servers.map((s) => s.stop()));
      balancer.stop();
    },
  };
}

/** A chat server in its own process, so that it can be killed with SIGKILL. */
export interface ServerProcess {
  proc: Subprocess;
  id: string;
  addr: string;
  kill9(): Promise<void>;
}

export async function spawnServer(url: string, balancer: string, extraArgs: string[] = []): Promise<ServerProcess> {
  // The URL through the environment, as `up` passes it: argv is for everyone to read.
  const proc = Bun.spawn([process.execPath, join(ROOT, "cli.ts"), "serve", "0", "--balancer", balancer, ...extraArgs], {
    stdout: "pipe",
    stderr: "ignore",
    env: { ...process.env, DATABASE_URL: url },
  });
  const reader = proc.stdout.getReader();
  let text = "";
  const deadline = Date.now() + 20_000;
  for (;;) {
    const match = /server (\S+) listening on (\S+),/.exec(text);
    if (match) {
      // The server logs on stdout: keep reading it, so that a full pipe never blocks it.
      void (async () => {
        while (!(await reader.read()).done);
      })().catch(() => {});
      return {
        proc,
        id: match[1]!,
        addr: match[2]!,
        async kill9() {
          proc.kill("SIGKILL");
          await proc.exited;
        },
      };
    }
    if (Date.now() > deadline) throw new Error(`server did not start: ${text}`);
    const { value, done } = await reader.read();
    if (done) throw new Error(`server exited: ${text}`);
    text += new TextDecoder().decode(value);
  }
}

/** A signed-up user's live session that records every message shown, in order. */
export interface TestUser {
  name: string;
  session: ChatSession;
  /** Messages from others, as shown. */
  received: Received[];
  /** The user's own messages that reached this session from another of their connections or devices. */
  own: Received[];
  texts(): string[];
  ended?: Error;
  statuses: string[];
  /** Who was typing where, as the session was told. */
  typings: TypingEvent[];
}

/** Signs up through the balancer as the real client does; returns the account's identity keys. */
export async function signup(balancerAddr: string, name: string, password = PASSWORD): Promise<IdentityKeys> {
  const link = await Link.connect(await askBalancer(balancerAddr), { hello: { role: "client" } });
  try {
    return await signupAccount(link, name, password);
  } finally {
    link.close();
  }
}

export async function connectUser(balancerAddr: string, name: string, password = PASSWORD): Promise<TestUser> {
  return openUser(balancerAddr, name, password, { persist: false });
}

/** A session that keeps its keys, pins, token and seen-message list under `home`, as the real client does. */
export async function connectPersistent(balancerAddr: string, home: string, name: string, password = PASSWORD): Promise<TestUser> {
  // Read at construction and again at each save: leave it set while the session lives.
  process.env.CHATTERBOX_HOME = home;
  return openUser(balancerAddr, name, password, {});
}

/**
 * A session whose every message is recorded as shown to its person (so the
 * read marker follows it). Sessions kept in memory only share one device per
 * user in this process, as the processes of one client home do.
 */
async function openUser(balancerAddr: string, name: string, password: string, options: { persist?: false }): Promise<TestUser> {
  const user = { name, received: [] as Received[], own: [] as Received[], statuses: [] as string[], typings: [] as TypingEvent[] } as TestUser;
  user.texts = () => user.received.map((m) => m.text);
  user.session = await ChatSession.open({
    balancer: balancerAddr,
    user: name,
    password: () => password,
    deviceKey: `test-device-${name}`.replace(/[^A-Za-z0-9_-]/g, "_"),
    ...options,
    onMessage: (m) => {
      // A membership change the user made is the server's line, shown like anyone else's.
      if (m.from === name && m.kind !== "system") return void user.own.push(m);
      user.received.push(m);
      user.session?.markRead(m.conv, m.seq);
    },
    onStatus: (s) => user.statuses.push(s),
    onTyping: (t) => user.typings.push(t),
    onEnd: (e) => (user.ended = e),
  });
  // What the replay showed before the session was returned was shown too.
  for (const m of user.received) user.session.markRead(m.conv, m.seq);
  return user;
}

/** An empty CHATTERBOX_HOME, as on a new device; added to `homes`, for the test to remove. */
export function freshHome(homes: string[]): string {
  const home = mkdtempSync(join(tmpdir(), "chatterbox-e2e-home-"));
  homes.push(home);
  return home;
}

/** Sessions opened by a test file, remembered so that afterAll can close whichever are still open. */
export class Sessions {
  private readonly open: TestUser[] = [];
  constructor(private readonly balancerAddr: () => string) {}

  async connect(name: string): Promise<TestUser> {
    const user = await connectUser(this.balancerAddr(), name);
    this.open.push(user);
    return user;
  }

  async close(user: TestUser): Promise<void> {
    await user.session.close();
    this.open.splice(this.open.indexOf(user), 1);
  }

  async closeAll(): Promise<void> {
    for (const u of this.open) await u.session.close().catch(() => {});
  }
}

/** A new alice and bob (unique names), signed up and logged in. */
export async function aliceAndBob(balancerAddr: string): Promise<[TestUser, TestUser]> {
  const [a, b] = [uniqueName("alice"), uniqueName("bob")];
  await signup(balancerAddr, a);
  await signup(balancerAddr, b);
  return [await connectUser(balancerAddr, a), await connectUser(balancerAddr, b)];
}

/** Logs `name` in again until it is on another server than `other`; returns the session that is. */
export async function apartFrom(balancerAddr: string, other: TestUser, user: TestUser): Promise<TestUser> {
  // Round robin alternates, so another try lands on the other server.
  for (let attempt = 0; user.session.serverId === other.session.serverId; attempt++) {
    if (attempt === 5) throw new Error(`could not place ${other.name} and ${user.name} on different servers`);
    await user.session.close();
    user = await connectUser(balancerAddr, user.name);
  }
  return user;
}

/** The CHATTERBOX_HOME of this test process: each user's keys, uploads and downloads are in a folder of their name. */
export function home(): string {
  return process.env.CHATTERBOX_HOME!;
}

export async function waitFor(check: () => boolean, what: string, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await Bun.sleep(10);
  }
}

/** Deletes each user's folder under CHATTERBOX_HOME; names never set are skipped. */
export function removeHomes(names: (string | undefined)[]): void {
  for (const name of names) if (name) rmSync(join(home(), name), { recursive: true, force: true });
}

/** waitFor, for a check that has to ask (the database, say). */
export async function until(check: () => Promise<boolean>, what: string, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await Bun.sleep(20);
  }
}

export function uniqueName(prefix: string): string {
  return `${prefix}${Math.random().toString(36).slice(2, 8)}`;
}

/**
 * A raw protocol link to one server, logged in as `name` (or just greeted when
 * name is omitted): for tests that speak the wire protocol directly.
 * Goes through the same login steps as the real client.
 */
export async function rawLink(
  addr: string,
  name?: string,
  handlers: { onEvent?(ev: string, frame: Record<string, unknown>): void; onBye?(e: Error): void; onClose?(): void } = {},
  password = PASSWORD,
  deviceKey?: string,
): Promise<Link> {
  const link = await Link.connect(addr, { hello: { role: "client" }, ...handlers });
  if (name) await link.request("login", { user: name, auth: (await loginKeys(link, name, password)).authKey, device: { id: deviceKey ?? `raw-${name}-device`.replace(/[^A-Za-z0-9_-]/g, "_"), name: "raw link" } });
  return link;
}
