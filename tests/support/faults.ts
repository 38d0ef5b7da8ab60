/**
 * Fault scenarios shared by tests/faults-*.test.ts and bench/faults.ts: real
 * server processes, a balancer, clients that stream numbered messages, and a
 * PostgreSQL that is stopped or crashed under them. Returns what the clients
 * saw and a few figures; the callers decide what must hold.
 */
import { migrate, openDatabase } from "../../db/connect";
import { testIdentity, trustTestCa } from "./tls";
import { startBalancer } from "../../roles/balancer";
import type { SendResult } from "../../client/session";
import { connectUser, signup, spawnServer, uniqueName, waitFor, type ServerProcess, type TestUser } from "./cluster";
import type { RestartablePostgres } from "./restartable-pg";

export const numbered = (i: number) => `message ${String(i).padStart(6, "0")}`;

/** One sender's stream: sends numbered texts, `window` unanswered at a time, in index order. */
export class Stream {
  readonly results: (SendResult | undefined)[] = [];
  readonly latencies: number[] = [];
  /** When each send was answered (ms since the epoch), by index. */
  readonly answeredAt: number[] = [];
  private next = 0;
  private stopped = false;
  readonly done: Promise<void>;

  constructor(
    readonly from: TestUser,
    readonly to: string,
    window: number,
  ) {
    const worker = async () => {
      while (!this.stopped) {
        const i = this.next++;
        const started = Date.now();
        this.results[i] = await from.session.sendText(to, numbered(i));
        this.answeredAt[i] = Date.now();
        this.latencies.push(Date.now() - started);
      }
    };
    this.done = Promise.all(Array.from({ length: window }, worker)).then(() => {});
  }

  get started(): number {
    return this.next;
  }

  acked(): number {
    return this.results.filter(Boolean).length;
  }

  /** No new sends; `done` resolves once every send begun has been answered. */
  stop(): Promise<void> {
    this.stopped = true;
    return this.done;
  }
}

export interface OutageReport {
  kind: "fast" | "immediate";
  sent: number;
  /** Longest time one send waited for its answer. */
  maxSendMs: number;
  /** From PostgreSQL accepting connections again until every sender had a send answered. */
  resumedMs: number;
  /** SIGTERM to exit, per server. */
  shutdownMs: number[];
  exitCodes: (number | null)[];
  pairs: { stream: Stream; recipient: TestUser }[];
}

export interface OutageOptions {
  pg: RestartablePostgres;
  kind: "fast" | "immediate";
  pairs?: number;
  window?: number;
  beforeMs?: number;
  downMs?: number;
  afterMs?: number;
}

/**
 * Two server processes and a balancer over `pg`; `pairs` senders stream to as
 * many recipients on the other server; PostgreSQL goes down (fast or crash)
 * for downMs and comes back; the streams stop; every recipient is waited for;
 * then the servers get SIGTERM.
 */
export async function databaseOutage(options: OutageOptions): Promise<OutageReport> {
  const { pg, kind } = options;
  const database = openDatabase(pg.url, { max: 1 });
  await migrate(database);
  await database.close();
  // The test cluster's CA, trusted here (bench/faults.ts runs this without the test preload).
  trustTestCa();
  const balancer = await startBalancer({ port: 0, strategy: "roundrobin", identity: await testIdentity(pg.url) });
  const balancerAddr = `127.0.0.1:${balancer.port}`;
  const servers: ServerProcess[] = [];
  const users: TestUser[] = [];
  try {
    for (let i = 0; i < 2; i++) servers.push(await spawnServer(pg.url, balancerAddr));
    await waitFor(() => balancer.servers().length === 2, "both servers to register");
    const pairs: { stream?: Stream; sender: TestUser; recipient: TestUser }[] = [];
    for (let i = 0; i < (options.pairs ?? 4); i++) {
      const [s, r] = [uniqueName("sender"), uniqueName("recipient")];
      await signup(balancerAddr, s);
      await signup(balancerAddr, r);
      // Round robin alternates: each sender and its recipient land on different servers.
      const sender = await connectUser(balancerAddr, s);
      const recipient = await connectUser(balancerAddr, r);
      users.push(sender, recipient);
      pairs.push({ sender, recipient });
    }
    for (const p of pairs) await p.sender.session.sendText(p.recipient.name, "hello");
    const streams = pairs.map((p) => (p.stream = new Stream(p.sender, p.recipient.name, options.window ?? 8)));
    await Bun.sleep(options.beforeMs ?? 1_000);

    if (kind === "fast") await pg.stopFast();
    else await pg.crash();
    await Bun.sleep(options.downMs ?? 3_000);
    await pg.start();
    const back = Date.now();
    const firstAnswer = (s: Stream) => Math.min(...s.answeredAt.filter((t) => t !== undefined && t >= back));
    await waitFor(() => streams.every((s) => Number.isFinite(firstAnswer(s))), "every sender to be answered again", 60_000);
    const resumedMs = Math.max(...streams.map((s) => firstAnswer(s) - back));
    await Bun.sleep(options.afterMs ?? 1_000);
    await Promise.all(streams.map((s) => s.stop()));
    const delivered = (p: (typeof pairs)[number]) => p.recipient.received.filter((m) => m.from === p.sender.name).length >= p.stream!.acked() + 1;
    await waitFor(() => pairs.every(delivered), "every recipient to receive every acknowledged message", 60_000).catch((error) => {
      const missing = pairs.filter((p) => !delivered(p)).map((p) => {
        const got = new Set(p.recipient.received.map((m) => m.text));
        const lost = p.stream!.results.map((r, i) => (r && !got.has(numbered(i)) ? `${i}@seq${r.seq}` : undefined)).filter(Boolean);
        return `${p.recipient.name} (connected ${p.recipient.session.connected}, statuses ${JSON.stringify(p.recipient.statuses)}) misses ${lost.length}: ${lost.slice(0, 5).join(", ")}`;
      });
      throw new Error(`${(error as Error).message}: ${missing.join("; ")}`);
    });
    // Late duplicates would arrive after the last new message: give them a moment.
    await Bun.sleep(300);

    const shutdownMs: number[] = [];
    const exitCodes: (number | null)[] = [];
    for (const u of users.splice(0)) await u.session.close();
    for (const server of servers.splice(0)) {
      const t = Date.now();
      server.proc.kill("SIGTERM");
      exitCodes.push(await server.proc.exited);
      shutdownMs.push(Date.now() - t);
    }
    return {
      kind,
      sent: streams.reduce((n, s) => n + s.acked(), 0),
      maxSendMs: Math.max(...streams.flatMap((s) => s.latencies)),
      resumedMs,
      shutdownMs,
      exitCodes,
      pairs: pairs.map((p) => ({ stream: p.stream!, recipient: p.recipient })),
    };
  } finally {
    for (const u of users) await u.session.close().catch(() => {});
    for (const server of servers) server.proc.kill("SIGKILL");
    balancer.stop();
  }
}
