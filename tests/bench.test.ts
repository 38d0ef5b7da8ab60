/**
 * `chatterbox bench` as a user runs it: its own embedded PostgreSQL, a
 * balancer and two servers as processes, simulated clients in worker
 * processes, briefly and at a low rate. The report must have its shape, and
 * nothing acknowledged may be lost.
 */
import { expect, test } from "bun:test";
import { chmodSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ROOT } from "./support/cluster";

test("a short bench run delivers every acknowledged message and reports throughput, latency and each server", async () => {
  const work = mkdtempSync(join(tmpdir(), "chatterbox-bench-test-"));
  // As root, PostgreSQL runs as the postgres user, who must be able to enter the data folder's parent.
  chmodSync(work, 0o755);
  const env: Record<string, string> = { ...(process.env as Record<string, string>) };
  delete env.DATABASE_URL;
  // Its simulated clients' own home: what they pin is this run's CA, not another cluster's under a reused port.
  env.CHATTERBOX_HOME = join(work, "home");
  try {
    const args = ["bench", "--data", join(work, "bench"), "--clients", "20", "--duration", "2", "--warmup", "0.5", "--rate", "200", "--json", "--plot", join(work, "run.svg")];
    const proc = Bun.spawn([process.execPath, join(ROOT, "cli.ts"), ...args], { env, stdout: "pipe", stderr: "pipe" });
    const [out, err] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text()]);
    expect(await proc.exited, err).toBe(0);
    const report = JSON.parse(out);

    expect(report.config).toMatchObject({ pattern: "dm", clients: 20, servers: 2, rate: 200 });
    expect(report.setup.failedClients).toBe(0);
    expect(report.sent).toBeGreaterThan(300);
    expect(report.acknowledged).toBe(report.sent);
    expect(report.delivered).toBe(report.acknowledged);
    expect(report.lost).toBe(0);
    expect(report.duplicates).toBe(0);
    expect(report.totals.deliveries).toBe(report.totals.expectedDeliveries);
    expect(report.throughput.acknowledgedPerS).toBeGreaterThan(150);
    for (const kind of ["ack", "delivery"]) {
      const p = report.latencyMs[kind];
      expect(p.p50).toBeGreaterThan(0);
      expect(p.p50).toBeLessThanOrEqual(p.p90);
      expect(p.p90).toBeLessThanOrEqual(p.p99);
      expect(p.p99).toBeLessThanOrEqual(p.p999);
      expect(p.p999).toBeLessThanOrEqual(p.max);
    }
    // The servers' commit path, read from their metrics over the measured window (a batch in flight at either edge counts in some stages only).
    expect(report.commitPath.stages.total.count).toBeGreaterThanOrEqual(report.sent * 0.9);
    expect(Math.abs(report.commitPath.stages.queued.count - report.commitPath.stages.total.count)).toBeLessThan(report.sent * 0.1);
    expect(report.commitPath.commitsPerS).toBeGreaterThan(0);
    expect(report.cpuUsPerDelivery.servers).toBeGreaterThan(0);
    expect(report.servers).toHaveLength(2);
    for (const s of report.servers) {
      expect(s.connections).toBeGreaterThan(0);
      expect(s.cpuPercent).toBeGreaterThanOrEqual(0);
      expect(s.rssMiB).toBeGreaterThan(0);
    }
    expect(report.servers.reduce((n: number, s: { connections: number }) => n + s.connections, 0)).toBe(20);
    expect(report.timeline.length).toBeGreaterThan(2);
    expect(readFileSync(join(work, "run.svg"), "utf8")).toStartWith("<svg");
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}, 60_000);

/** Processes whose parent is `pid`, from /proc. */
function childrenOf(pid: number): number[] {
  const out: number[] = [];
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    const status = (() => {
      try {
        return readFileSync(`/proc/${entry}/status`, "utf8");
      } catch {
        return "";
      }
    })();
    if (new RegExp(`^PPid:\\s+${pid}$`, "m").test(status)) out.push(Number(entry));
  }
  return out;
}

const alive = (pid: number) => existsSync(`/proc/${pid}`) && !/^State:\s+Z/m.test(readFileSync(`/proc/${pid}/status`, "utf8"));

test("Ctrl-C during a bench run stops the servers, workers and PostgreSQL it started", async () => {
  const work = mkdtempSync(join(tmpdir(), "chatterbox-bench-test-"));
  chmodSync(work, 0o755);
  const env: Record<string, string> = { ...(process.env as Record<string, string>) };
  delete env.DATABASE_URL;
  // Its simulated clients' own home: what they pin is this run's CA, not another cluster's under a reused port.
  env.CHATTERBOX_HOME = join(work, "home");
  try {
    const args = ["bench", "--data", join(work, "bench"), "--clients", "20", "--duration", "60", "--warmup", "0", "--rate", "100"];
    const proc = Bun.spawn([process.execPath, join(ROOT, "cli.ts"), ...args], { env, stdout: "pipe", stderr: "pipe" });
    let err = "";
    const reading = (async () => {
      for await (const chunk of proc.stderr) err += new TextDecoder().decode(chunk);
    })();
    const deadline = Date.now() + 30_000;
    while (!/clients connected/.test(err) && Date.now() < deadline) await Bun.sleep(50);
    expect(err).toContain("clients connected");
    // The embedded PostgreSQL, two servers and two workers (and whatever they started in turn).
    const started = childrenOf(proc.pid);
    expect(started.length).toBeGreaterThanOrEqual(5);
    // While it runs, no process shows the database password on its command line (issue 13).
    const password = readFileSync(join(work, "bench", "pg", ".chatterbox-password"), "utf8").trim();
    const ps = await new Response(Bun.spawn(["ps", "-eo", "args"], { stdout: "pipe" }).stdout).text();
    expect(password.length).toBeGreaterThan(8);
    expect(ps).toContain(" serve ");
    expect(ps).not.toContain(password);
    proc.kill("SIGINT");
    expect(await proc.exited).toBe(130);
    await reading;
    expect(err).toContain("interrupted: stopping what the bench started");
    const until = Date.now() + 10_000;
    while (started.some(alive) && Date.now() < until) await Bun.sleep(100);
    expect(started.filter(alive)).toEqual([]);
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}, 60_000);
