/**
 * `chatterbox up`: the whole system on one machine. An embedded PostgreSQL
 * (unless a database URL is given), migrations, a balancer on the port and the
 * chat servers on the next ports, each server its own process, so one crashing
 * does not take the others with it, and one that exits unasked is started
 * again (roles/supervise.ts). Ctrl-C or SIGTERM stops everything.
 */
import { relative } from "node:path";
import { migrate, openDatabase } from "../db/connect";
import { defaultDataDir, startEmbeddedPostgres, type EmbeddedPostgres } from "../db/embedded";
import { explainDatabaseError } from "../db/explain";
import { explainListenError } from "../net/listen-error";
import { parseMetricsAddress, serveMetrics, type MetricsEndpoint } from "../net/metrics-http";
import { clusterIdentity } from "../server/cluster-identity";
import { startBalancer } from "./balancer";
import { createLogger, type LogFormat } from "./logger";
import { onSignal } from "./run";
import { selfCommand } from "./self";
import { KeptPostgres } from "./keep-postgres";
import { Supervised } from "./supervise";

export interface UpOptions {
  servers: number;
  port: number;
  strategy: string;
  dataDir?: string;
  databaseUrl?: string;
  /** Passed on to every `serve`: the server limits. */
  serverArgs?: string[];
  /** HOST:PORT for the balancer's metrics; server i gets PORT+i on the same host. */
  metrics?: string;
  logFormat?: LogFormat;
}

export async function runUp(options: UpOptions): Promise<void> {
  if (!Number.isInteger(options.servers) || options.servers < 1 || options.servers > 64) throw new Error("--servers takes 1 to 64");
  let postgres: EmbeddedPostgres | undefined;
  let url = options.databaseUrl;
  if (!url) {
    const dataDir = options.dataDir ?? defaultDataDir();
    console.log(`Starting the embedded PostgreSQL (data in ${dataDir}) ...`);
    postgres = await startEmbeddedPostgres({ dataDir });
    url = postgres.url;
  }
  const database = openDatabase(url, { max: 1 });
  try {
    await migrate(database);
  } catch (error) {
    await database.close();
    await postgres?.stop();
    throw explainDatabaseError(error, url);
  }
  // The cluster CA is made here on first start, in ChatDB (so in the data folder), next to the cluster secret.
  const identity = await clusterIdentity(database.sql, ["127.0.0.1"]);
  await database.close();

  const logFormat = options.logFormat ?? "json";
  const metricsAt = options.metrics ? parseMetricsAddress(options.metrics) : undefined;
  const balancer = await startBalancer({
    port: options.port,
    strategy: options.strategy,
    identity: { tls: identity.tls, secret: identity.secret },
    log: createLogger({ role: "balancer", format: logFormat }),
  }).catch(async (error) => {
    await postgres?.stop();
    throw explainListenError(error, "127.0.0.1", options.port, "the balancer");
  });
  let balancerMetrics: MetricsEndpoint | undefined;
  const children: Supervised[] = [];
  const log = createLogger({ role: "up", format: logFormat });
  // Started again on its port if it dies, so the URL the servers were given stays right.
  const dataDir = postgres?.dataDir;
  const kept = postgres && new KeptPostgres(postgres, (port) => startEmbeddedPostgres({ dataDir: dataDir!, port }), log);
  const serverMetrics: string[] = [];
  // From before the first server starts: a signal during start-up must not leave servers running.
  onSignal(async () => {
    console.log("\nStopping ...");
    for (const child of children) child.kill("SIGTERM");
    await Promise.race([Promise.all(children.map((c) => c.current.exited)), Bun.sleep(10_000)]);
    for (const child of children) child.kill("SIGKILL");
    balancerMetrics?.stop();
    balancer.stop();
    await kept?.stop();
    console.log("Stopped.");
  });

  for (let i = 1; i <= options.servers; i++) {
    // Port 0 (any free port) for the balancer means any free port for each server too.
    const port = options.port === 0 ? 0 : options.port + i;
    const metricsPort = metricsAt && (metricsAt.port === 0 ? 0 : metricsAt.port + i);
    const metrics = metricsAt ? [`${metricsAt.host.includes(":") ? `[${metricsAt.host}]` : metricsAt.host}:${metricsPort}`] : [];
    serverMetrics.push(...metrics);
    // The database URL holds a password: through the environment, never argv, which `ps` shows everyone.
    const args = ["serve", String(port), "--balancer", `127.0.0.1:${balancer.port}`, "--log-format", logFormat];
    const command = [...selfCommand(), ...args, ...metrics.flatMap((m) => ["--metrics", m]), ...(options.serverArgs ?? [])];
    const spawn = () =>
      Bun.spawn(command, {
        // Their logs are ours: one stream of lines, each saying which server.
        stdout: "inherit",
        stderr: "inherit",
        env: { ...process.env, DATABASE_URL: url },
      });
    children.push(new Supervised(`chat server ${i} (port ${port || "any"})`, spawn, log));
  }
  try {
    if (metricsAt) balancerMetrics = serveMetrics(`${metricsAt.host}:${metricsAt.port}`, balancer.metrics.registry);
    await waitForServers(balancer.servers, options.servers, 20_000, children);
  } catch (error) {
    for (const child of children) child.kill("SIGTERM");
    await Promise.all(children.map((c) => c.current.exited));
    balancerMetrics?.stop();
    balancer.stop();
    await postgres?.stop();
    throw error;
  }

  console.log("");
  console.log("ChatterBox is up.");
  console.log(`  balancer    127.0.0.1:${balancer.port} (${options.strategy})`);
  for (const s of balancer.servers().sort((a, b) => a.addr.localeCompare(b.addr))) console.log(`  server      ${s.addr}`);
  const servers = metricsAt?.port === 0 ? "each server's is in its log line \"metrics at ...\"" : `${serverMetrics.map((m) => `http://${m}/metrics`).join(", ")} (servers)`;
  if (balancerMetrics) console.log(`  metrics     http://${balancerMetrics.addr}/metrics (balancer); ${servers}`);
  console.log(`  database    ${postgres ? `embedded PostgreSQL in ${postgres.dataDir}, port ${postgres.port}` : "the URL you gave"}`);
  console.log(`  cluster CA  ${identity.caFingerprint}`);
  console.log("              (clients pin it on first use; compare it with what they show, or pass --ca-fingerprint)");
  console.log("");
  console.log("In another terminal:");
  const b = balancer.port === 7000 ? "" : ` --balancer 127.0.0.1:${balancer.port}`;
  const me = howToRunMe();
  console.log(`  ${me} signup --user alice${b}`);
  console.log(`  ${me} chat --user alice${b}`);
  console.log("Ctrl-C stops everything.");
  // Up and registered: from now on a server that exits is started again.
  for (const child of children) child.watch();
  kept?.watch();
}

/** What to type to run this program again: the binary's path, or bun and cli.ts from a checkout. */
function howToRunMe(): string {
  const [first, script] = selfCommand();
  if (!script) return first!;
  return `npx bun ${relative(process.cwd(), script) || script}`;
}

async function waitForServers(list: () => unknown[], count: number, timeoutMs: number, children: Supervised[]): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (list().length < count) {
    const gone = children.findIndex((c) => c.current.exitCode !== null);
    if (gone >= 0) throw new Error(`Chat server ${gone + 1} exited during start-up (exit ${children[gone]!.current.exitCode}); its reason is above`);
    if (Date.now() > deadline) throw new Error(`Only ${list().length} of ${count} servers registered within ${timeoutMs / 1000} s`);
    await Bun.sleep(100);
  }
}
