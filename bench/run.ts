/**
 * `chatterbox bench`: one run, a sweep of rates, the balancing strategies side
 * by side, or ChatterBox against the bare relay; as text, JSON and SVG.
 */
import { writeFileSync } from "node:fs";
import { runLoad, type RunContext } from "./coordinator";
import type { BenchOptions } from "./options";
import { strategiesSvg, sweepSvg, timelineSvg } from "./plot";
import { formatReport, type Report } from "./report";
import { provision } from "./provision";
import { startRelays } from "./relays";
import { BENCH_PASSWORD, loadTokens, saveTokens } from "./tokens";
import { benchHome, openBenchDatabase, remoteSystem, SERVER_ARGS, startSystem, type Database } from "./system";
import { resetStatements, STATEMENT_SETTINGS, topStatements } from "./statements";

const STRATEGIES = ["roundrobin", "leastconn", "random", "p2c"];

interface Stoppable {
  stop(): Promise<unknown>;
}

/** What this run started and has not stopped yet: on Ctrl-C or SIGTERM, stopped newest first. */
const running: Stoppable[] = [];

function owned<T extends Stoppable>(thing: T): T {
  running.push(thing);
  return thing;
}

async function stop(thing: Stoppable): Promise<void> {
  const at = running.indexOf(thing);
  if (at >= 0) running.splice(at, 1);
  await thing.stop();
}

/** An interrupted run leaves no server, relay or database behind. */
function stopOnSignal(log: (line: string) => void): void {
  let stopping = false;
  const handler = async (why: string) => {
    if (stopping) return;
    stopping = true;
    log(`${why}: stopping what the bench started`);
    for (const thing of running.reverse()) await thing.stop().catch(() => {});
    process.exit(130);
  };
  process.on("SIGINT", () => void handler("interrupted"));
  process.on("SIGTERM", () => void handler("terminated"));
}

export async function runBench(options: BenchOptions): Promise<void> {
  const log = (line: string) => console.error(`bench: ${line}`);
  stopOnSignal(log);
  const home = benchHome(options.dataDir);
  const out = (reports: Report | Report[], text: string) => console.log(options.json ? JSON.stringify(reports, null, 2) : text);

  if (options.balancer) {
    const ctx: RunContext = { system: remoteSystem(options.balancer), home, tokenKey: `balancer ${options.balancer}`, log };
    const rates = options.sweep ?? [options.rate];
    const reports: Report[] = [];
    for (const rate of rates) reports.push(await runLoad(options, rate, { ...ctx, label: options.sweep ? `${rate} msg/s` : undefined }));
    return finish(options, reports, out);
  }

  const statements = options.pgStatements && !options.databaseUrl;
  const database: Database = owned(await openBenchDatabase({ databaseUrl: options.databaseUrl, dataDir: options.dataDir, log, settings: statements ? STATEMENT_SETTINGS : [] }));
  const serverArgs = [
    ...SERVER_ARGS,
    ...(options.commitBatches ? ["--commit-batches", String(options.commitBatches)] : []),
    ...(options.commitGapMs !== undefined ? ["--commit-gap-ms", String(options.commitGapMs)] : []),
  ];
  const tokenKey = options.databaseUrl ? `database ${options.databaseUrl}` : `embedded ${home}`;
  try {
    // We own this database: make missing accounts and their resume tokens in it, skipping a quarter hour of password hashing.
    saveTokens(home, tokenKey, await provision(database.url, options.prefix, options.clients, BENCH_PASSWORD, loadTokens(home, tokenKey), log));
    if (options.compareStrategies) {
      const reports: Report[] = [];
      for (const strategy of STRATEGIES) {
        const system = owned(await startSystem({ url: database.url, servers: options.servers, strategy, log, serverArgs }));
        try {
          reports.push(await runLoad(options, options.rate, { system, postgresPid: database.pid, home, tokenKey, log, label: strategy }));
        } finally {
          await stop(system);
        }
      }
      const table = strategyTable(reports);
      if (options.plot) writeFileSync(options.plot, strategiesSvg(reports));
      return out(reports, `${reports.map(formatReport).join("\n\n")}\n\n${table}`);
    }
    const system = owned(await startSystem({ url: database.url, servers: options.servers, strategy: options.strategy, log, serverArgs }));
    const reports: Report[] = [];
    try {
      const ctx: RunContext = { system, postgresPid: database.pid, home, tokenKey, log };
      for (const rate of options.sweep ?? [options.rate]) {
        // Counted from here: what provisioning and logging in cost is not the run's.
        if (statements) await resetStatements(database.url);
        const report = await runLoad(options, rate, { ...ctx, label: options.sweep ? `${rate} msg/s` : options.ceiling ? "chatterbox" : undefined });
        reports.push(report);
        if (statements) console.error(await topStatements(database.url, report.delivered));
      }
    } finally {
      await stop(system);
    }
    if (options.ceiling) {
      const relays = owned(await startRelays(options));
      try {
        reports.push(await runLoad(options, options.rate, { system: relays.system, relays: relays.addrs, home, tokenKey: "ceiling", log, label: "ceiling" }));
      } finally {
        await stop(relays);
      }
    }
    return finish(options, reports, out);
  } finally {
    await stop(database);
  }
}

function finish(options: BenchOptions, reports: Report[], out: (r: Report | Report[], text: string) => void): void {
  if (options.plot) writeFileSync(options.plot, options.sweep ? sweepSvg(reports) : timelineSvg(reports));
  const text = reports.map(formatReport).join("\n\n");
  if (options.sweep) return out(reports, `${text}\n\n${sweepTable(reports)}`);
  if (options.ceiling) {
    const [mine, ceiling] = reports as [Report, Report];
    const ratio = ceiling.throughput.deliveredPerS > 0 ? mine.throughput.deliveredPerS / ceiling.throughput.deliveredPerS : 0;
    const summary = `ChatterBox reaches ${(ratio * 100).toFixed(1)}% of the bare relay's rate (${mine.throughput.deliveredPerS.toLocaleString("en-US")} vs ${ceiling.throughput.deliveredPerS.toLocaleString("en-US")} deliveries/s)`;
    return out({ ...reports, ratio } as unknown as Report[], `${text}\n\n${summary}`);
  }
  out(reports.length === 1 ? reports[0]! : reports, text);
}

function sweepTable(reports: Report[]): string {
  const rows = reports.map((r) => {
    const d = r.latencyMs.delivery;
    return `${String(r.config.rate).padStart(9)} ${String(r.throughput.acknowledgedPerS).padStart(10)} ${String(r.throughput.deliveredPerS).padStart(10)} ${String(d?.p50 ?? "-").padStart(8)} ${String(d?.p99 ?? "-").padStart(8)} ${String(d?.p999 ?? "-").padStart(8)} ${String(r.lost).padStart(5)}`;
  });
  return [`     rate     stored  delivered  p50 ms   p99 ms  p99.9 ms  lost`, ...rows].join("\n");
}

function strategyTable(reports: Report[]): string {
  const rows = reports.map((r) => {
    const conns = r.servers.map((s) => s.connections);
    const spread = conns.length ? `${Math.min(...conns)}..${Math.max(...conns)}` : "-";
    const d = r.latencyMs.delivery;
    return `${(r.label ?? "").padEnd(11)} ${conns.join("/").padEnd(24)} ${spread.padEnd(12)} ${String(r.throughput.deliveredPerS).padStart(10)} ${String(d?.p50 ?? "-").padStart(8)} ${String(d?.p99 ?? "-").padStart(8)}`;
  });
  return [`strategy    connections per server   min..max      delivered/s  p50 ms   p99 ms`, ...rows].join("\n");
}
