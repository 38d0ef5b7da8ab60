/**
 * The peer mesh as it grows: N chat server processes on one database, every
 * pair linked. For each N: how long until every server has its N-1 links,
 * and then, idle for a few seconds, each server's CPU and memory and
 * PostgreSQL's CPU (every server heartbeats and re-reads the servers table
 * each second). The figures SCALING.md extrapolates to 100 servers.
 *
 *   bun bench/mesh.ts [--servers 2,4,8,16] [--idle 5]
 */
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import type { Subprocess } from "bun";
import postgres from "postgres";
import { startBalancer } from "../roles/balancer";
import { selfCommand } from "../roles/self";
import { clusterIdentityFrom } from "../server/cluster-identity";
import { scratchDir } from "./local-system";
import { cpuSeconds, rssBytes, tree } from "./procstat";
import { openBenchDatabase } from "./system";

const { values } = parseArgs({ options: { servers: { type: "string", default: "2,4,8,16" }, idle: { type: "string", default: "5" } } });
const counts = values.servers!.split(",").map(Number);
const IDLE_S = Number(values.idle);
const dir = scratchDir("chatterbox-mesh-");
const database = await openBenchDatabase({ dataDir: dir, log: () => {} });
const identity = await clusterIdentityFrom(database.url, ["127.0.0.1"]);
const balancer = await startBalancer({ port: 0, strategy: "roundrobin", identity: { tls: identity.tls, secret: identity.secret } });
const logs = mkdtempSync(join(tmpdir(), "chatterbox-mesh-logs-"));

async function scrape(addr: string, name: string): Promise<number> {
  const text = await (await fetch(`http://${addr}/metrics`)).text();
  return Number(new RegExp(`^${name} (\\S+)$`, "m").exec(text)?.[1] ?? NaN);
}

const admin = postgres(database.url, { max: 1, onnotice: () => {} });
console.log("servers   links   mesh after   CPU per server (idle)   RSS per server   PostgreSQL CPU (idle)   database connections");
try {
  for (const n of counts) {
    const children: { proc: Subprocess; log: string }[] = [];
    const started = performance.now();
    for (let i = 0; i < n; i++) {
      const log = join(logs, `${n}-${i}.log`);
      // The database URL holds a password: through the environment, not argv.
      const proc = Bun.spawn([...selfCommand(), "serve", "0", "--balancer", `127.0.0.1:${balancer.port}`, "--metrics", "0", "--log-format", "json"], {
        stdout: Bun.file(log),
        stderr: "inherit",
        env: { ...process.env, DATABASE_URL: database.url },
      });
      children.push({ proc, log });
    }
    const metricsOf = async (log: string): Promise<string> => {
      for (;;) {
        const found = /"metrics":"([^"]+)"/.exec(readFileSync(log, "utf8"));
        if (found) return found[1]!;
        await Bun.sleep(50);
      }
    };
    const addrs = await Promise.all(children.map((c) => metricsOf(c.log)));
    for (;;) {
      const links = await Promise.all(addrs.map((a) => scrape(a, "chatterbox_peer_links")));
      if (links.every((l) => l === n - 1)) break;
      await Bun.sleep(50);
    }
    const meshed = (performance.now() - started) / 1000;
    const pids = children.map((c) => c.proc.pid);
    const pgPids = database.pid === undefined ? [] : tree(database.pid);
    const cpu0 = pids.map((p) => cpuSeconds(p) ?? 0);
    const pg0 = pgPids.reduce((s, p) => s + (cpuSeconds(p) ?? 0), 0);
    await Bun.sleep(IDLE_S * 1000);
    const cpu = pids.map((p, i) => (cpuSeconds(p) ?? 0) - cpu0[i]!);
    const pg = tree(database.pid!).reduce((s, p) => s + (cpuSeconds(p) ?? 0), 0) - pg0;
    const rss = pids.map((p) => rssBytes(p) ?? 0);
    const [{ connections }] = (await admin`select count(*)::int as connections from pg_stat_activity where application_name = 'chatterbox'`) as unknown as [{ connections: number }];
    const mean = (list: number[]) => list.reduce((a, b) => a + b, 0) / list.length;
    console.log(
      [
        String(n).padStart(7),
        String(n * (n - 1)).padStart(7),
        `${meshed.toFixed(1)} s`.padStart(12),
        `${((mean(cpu) / IDLE_S) * 100).toFixed(2)}%`.padStart(23),
        `${(mean(rss) / 1024 / 1024).toFixed(1)} MiB`.padStart(16),
        `${((pg / IDLE_S) * 100).toFixed(1)}%`.padStart(23),
        String(connections).padStart(22),
      ].join(" "),
    );
    for (const c of children) c.proc.kill("SIGTERM");
    await Promise.all(children.map((c) => c.proc.exited));
  }
} finally {
  balancer.stop();
  await admin.end();
  await database.stop();
  rmSync(dir, { recursive: true, force: true });
  rmSync(logs, { recursive: true, force: true });
}
