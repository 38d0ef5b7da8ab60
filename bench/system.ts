/**
 * The system under test. By default our own: the embedded PostgreSQL (durable:
 * fsync and synchronous_commit on, as `chatterbox up` runs it), a balancer, and
 * each chat server as its own process, started as `chatterbox serve` would be.
 * With --balancer, someone else's running system, seen only through the
 * protocol (no process figures then).
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import type { Subprocess } from "bun";
import { migrate, openDatabase } from "../db/connect";
import { defaultDataDir, startEmbeddedPostgres, type EmbeddedPostgres } from "../db/embedded";
import { connectAsMember, type Membership } from "../balancer/member";
import { PLAINTEXT } from "../net/tls";
import { setDefaultTrust } from "../net/trust";
import { startBalancer, type Balancer } from "../roles/balancer";
import { clusterIdentityFrom } from "../server/cluster-identity";
import { selfCommand } from "../roles/self";

export interface ServerInfo {
  id: string;
  addr: string;
  /** Logged-in connections, as the server last told the balancer. */
  load: number;
  pid?: number;
  /** Its metrics endpoint, HOST:PORT, when we started it (the commit path's stages are read there: bench/server-stages.ts). */
  metrics?: string;
}

export interface Database {
  url: string;
  /** The postmaster, when it is ours. */
  pid?: number;
  stop(): Promise<void>;
}

export interface System {
  balancer: string;
  servers(): Promise<ServerInfo[]>;
  stop(): Promise<void>;
}

/** Where bench accounts' tokens and our own database live: beside the default data directory. */
export function benchHome(dataDir?: string): string {
  return dataDir ?? join(dirname(defaultDataDir()), "bench");
}

/**
 * Checkpoints and autovacuum runs are logged, with PostgreSQL's timestamps, so
 * that a stall in a run can be laid beside them (the ~1 s stall of issue 15).
 */
const BENCH_PG_SETTINGS = ["log_checkpoints=on", "log_autovacuum_min_duration=0"];
const ATTRIBUTABLE = /checkpoint|automatic (vacuum|analyze)/;

export async function openBenchDatabase(options: { databaseUrl?: string; dataDir?: string; log(line: string): void; settings?: string[] }): Promise<Database> {
  let url = options.databaseUrl;
  let postgres: EmbeddedPostgres | undefined;
  if (!url) {
    const home = benchHome(options.dataDir);
    mkdirSync(home, { recursive: true, mode: 0o755 });
    options.log(`starting the embedded PostgreSQL in ${join(home, "pg")} (durable: fsync and synchronous_commit on)`);
    postgres = await startEmbeddedPostgres({
      dataDir: join(home, "pg"),
      settings: [...BENCH_PG_SETTINGS, ...(options.settings ?? [])],
      log: (line) => ATTRIBUTABLE.test(line) && options.log(`postgres: ${line}`),
    });
    url = postgres.url;
  }
  const database = openDatabase(url, { max: 1 });
  await migrate(database);
  await database.close();
  return { url, pid: postgres?.pid, stop: async () => postgres?.stop() };
}

/** With --insecure-plaintext (CHATTERBOX_INSECURE_PLAINTEXT=1), every hop of the system we start is plaintext. */
export function plaintextRequested(): boolean {
  return process.env.CHATTERBOX_INSECURE_PLAINTEXT === "1";
}

export async function startSystem(options: { url: string; servers: number; strategy: string; log(line: string): void; serverArgs?: string[] }): Promise<System> {
  const identity = await clusterIdentityFrom(options.url, ["127.0.0.1"]);
  const plaintext = plaintextRequested();
  const tls = plaintext ? PLAINTEXT : identity.tls;
  const balancer: Balancer = await startBalancer({ port: 0, strategy: options.strategy, identity: { tls, secret: identity.secret } });
  const address = `127.0.0.1:${balancer.port}`;
  // Our workers (and this process) trust our cluster's CA, given as a file; nothing is pinned in anyone's home.
  const caDir = mkdtempSync(join(tmpdir(), "chatterbox-bench-ca-"));
  writeFileSync(join(caDir, "ca.pem"), identity.tls.caPem, { mode: 0o600 });
  process.env.CHATTERBOX_CA = join(caDir, "ca.pem");
  setDefaultTrust();
  const member: Membership = { id: "bench", secret: identity.secret, tls: plaintext ? PLAINTEXT : { ...identity.tls } };
  const children: Subprocess<"ignore", "pipe", "pipe">[] = [];
  const pidOf = new Map<string, number>();
  const metricsOf = new Map<string, string>();
  for (let i = 0; i < options.servers; i++) {
    // The server logs its metrics address before the line with its id.
    let metricsAddr: string | undefined;
    // The database URL holds a password: through the environment, never argv, which `ps` shows everyone.
    const child = Bun.spawn([...profiled(selfCommand(), `server-${i + 1}`), "serve", "0", "--balancer", address, "--log-format", "pretty", "--metrics", "127.0.0.1:0", ...(options.serverArgs ?? SERVER_ARGS), ...(plaintext ? ["--insecure-plaintext"] : [])], {
      stdin: "ignore",
      stdout: "pipe",
      stderr: "pipe",
      env: { ...process.env, DATABASE_URL: options.url },
    });
    children.push(child);
    // The server logs on stdout; stderr has only what escaped the logger (a crash).
    for (const stream of [child.stdout, child.stderr]) void watchLog(stream, (line) => {
      const listening = /server (\S+) listening on (\S+)/.exec(line);
      const metrics = /metrics at http:\/\/(\S+)\/metrics/.exec(line);
      if (listening) {
        pidOf.set(listening[1]!, child.pid);
        if (metricsAddr) metricsOf.set(listening[1]!, metricsAddr);
      } else if (metrics) metricsAddr = metrics[1]!;
      else if (!/registered|peer link/.test(line)) options.log(`[server ${i + 1}] ${line}`);
    });
  }
  const deadline = Date.now() + 30_000;
  while (balancer.servers().length < options.servers) {
    if (children.some((c) => c.exitCode !== null)) throw new Error("A chat server exited during start-up");
    if (Date.now() > deadline) throw new Error(`Only ${balancer.servers().length} of ${options.servers} servers registered within 30 s`);
    await Bun.sleep(50);
  }
  // Every server should see every other in the servers table before load starts.
  await Bun.sleep(1200);
  return {
    balancer: address,
    servers: async () => (await listServers(address, member)).map((s) => ({ ...s, pid: pidOf.get(s.id), metrics: metricsOf.get(s.id) })),
    async stop() {
      for (const child of children) child.kill("SIGTERM");
      // A profiled server writes its profile on the way out, which takes a while.
      const grace = process.env.CHATTERBOX_BENCH_PROFILE ? 60_000 : 10_000;
      await Promise.race([Promise.all(children.map((c) => c.exited)), Bun.sleep(grace)]);
      for (const child of children) child.kill("SIGKILL");
      balancer.stop();
      rmSync(caDir, { recursive: true, force: true });
    },
  };
}

/**
 * The load bench measures capacity, not abuse: no per-user send limit there
 * (bench/hostile.ts runs the servers with their limits on).
 */
export const SERVER_ARGS = ["--send-rate", "0"];

/** Someone else's system: the balancer lists its servers to members only, so no per-server figures. */
export function remoteSystem(balancer: string): System {
  return { balancer, servers: async () => [], stop: async () => {} };
}

/** The balancer's `servers` op, for members: each live server and its connection count. */
export async function listServers(balancer: string, member: Membership): Promise<ServerInfo[]> {
  const link = await connectAsMember(balancer, member, { timeoutMs: 5000 });
  try {
    const reply = await link.request("servers");
    return (reply.servers as ServerInfo[]).map(({ id, addr, load }) => ({ id, addr, load }));
  } finally {
    link.close();
  }
}

async function watchLog(stream: ReadableStream<Uint8Array>, onLine: (line: string) => void): Promise<void> {
  const decoder = new TextDecoder();
  let partial = "";
  for await (const chunk of stream) {
    const parts = (partial + decoder.decode(chunk, { stream: true })).split("\n");
    partial = parts.pop()!;
    for (const line of parts) onLine(line);
  }
}

/**
 * CHATTERBOX_BENCH_PROFILE=DIR (from source only): each process we start writes
 * a CPU profile there when it exits, as markdown too (bun --cpu-prof-md).
 */
export function profiled(command: string[], name: string): string[] {
  const dir = process.env.CHATTERBOX_BENCH_PROFILE;
  if (!dir || command.length < 2) return command;
  return [command[0]!, "--cpu-prof", "--cpu-prof-md", `--cpu-prof-dir=${dir}`, `--cpu-prof-name=${name}`, ...command.slice(1)];
}
