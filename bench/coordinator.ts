/**
 * One measured run: workers connect the simulated clients, the load runs for
 * the warm-up and the duration, the system drains, and the workers' counts,
 * bit sets and histograms are merged into one report.
 */
import { randomBytes } from "node:crypto";
import { Bitmap } from "./bitmap";
import { nowMs } from "./clock";
import { addEncoded, newHistogram, type Histogram } from "./hist";
import type { FromWorker, Tick, WorkerResult, WorkerSetup } from "./messages";
import type { BenchOptions } from "./options";
import { groupMembers, groupOf } from "./patterns";
import { CpuMeter, rssBytes, tree } from "./procstat";
import { Progress } from "./progress";
import { buildReport, type Report } from "./report";
import { readStages, stageSplit, type StageSplit } from "./server-stages";
import type { ServerInfo, System } from "./system";
import { BENCH_PASSWORD, loadTokens, saveTokens } from "./tokens";
import { WorkerProcess } from "./workers";

const TICK_MS = 500;
/** After the last acknowledgement, how long deliveries may stall before the rest count as lost. */
const DRAIN_IDLE_MS = 5_000;

export interface RunContext {
  system: System;
  /** Ceiling relays instead of a system: the workers connect to these. */
  relays?: string[];
  postgresPid?: number;
  home: string;
  /** Which system the tokens belong to. */
  tokenKey: string;
  label?: string;
  log(line: string): void;
}

export async function runLoad(options: BenchOptions, rate: number | "max", ctx: RunContext): Promise<Report> {
  const run = randomBytes(4).toString("hex");
  const tokens = loadTokens(ctx.home, ctx.tokenKey);
  const timeline = new Map<number, { ticks: Tick[] }>();
  const delivered = new Map<number, number>();
  const progress = new Progress(options.warmupS + options.durationS, !options.json);
  const workers = Array.from({ length: options.workers }, (_, w) =>
    new WorkerProcess(w, (m: FromWorker) => {
      if (m.type === "log") {
        ctx.log(`[worker ${m.worker}] ${m.line}`);
        return true;
      }
      if (m.type !== "tick") return false;
      const slot = timeline.get(m.k) ?? { ticks: [] };
      slot.ticks.push(m);
      timeline.set(m.k, slot);
      delivered.set(m.worker, m.deliveredTotal);
      if (slot.ticks.length === options.workers) progress.update(((m.k + 1) * TICK_MS) / 1000, slot.ticks);
      return true;
    }),
  );
  try {
    const before = await serverMemory(ctx.system);
    ctx.log(`connecting ${options.clients} clients from ${options.workers} worker processes ...`);
    workers.forEach((w, i) => {
      const setup: WorkerSetup = {
        type: "setup",
        worker: i,
        balancer: ctx.system.balancer,
        relays: ctx.relays,
        prefix: options.prefix,
        password: BENCH_PASSWORD,
        users: Array.from({ length: options.clients }, (_, c) => c).filter((c) => c % options.workers === i),
        clients: options.clients,
        tokens,
        pattern: options.pattern,
        groupSize: options.groupSize,
        contacts: options.contacts,
        partners: options.partners,
        size: options.size,
        e2e: options.e2e,
        mls: options.mls,
        rate: rate === "max" ? null : rate / options.workers,
        window: options.window,
        run,
        idle: options.idle,
      };
      w.send(setup);
    });
    const ready = await Promise.all(workers.map((w) => w.next("ready")));
    if (!ctx.relays) saveTokens(ctx.home, ctx.tokenKey, { ...tokens, ...Object.assign({}, ...ready.map((r) => r.tokens)) });
    const failed = ready.reduce((n, r) => n + r.failed, 0);
    const setupMs = Math.max(...ready.map((r) => r.setupMs));
    ctx.log(`${options.clients - failed} clients connected in ${(setupMs / 1000).toFixed(1)} s${failed ? ` (${failed} failed)` : ""}`);
    const placement = Object.assign({}, ...ready.map((r) => r.placement));

    const serversAtStart = await ctx.system.servers();
    const serverCpu = new CpuMeter(() => serversAtStart.flatMap((s) => (s.pid ? [s.pid] : [])));
    const pgCpu = new CpuMeter(() => (ctx.postgresPid ? tree(ctx.postgresPid) : []));
    const genCpu = new CpuMeter(() => workers.map((w) => w.pid));
    const perServer = new Map(serversAtStart.map((s) => [s.id, new CpuMeter(() => (s.pid ? [s.pid] : []))]));
    const meters = [serverCpu, pgCpu, genCpu, ...perServer.values()];

    if (options.idle) {
      // Let every server's heartbeat carry its new count to the balancer.
      await Bun.sleep(2500);
      const servers = await ctx.system.servers();
      const after = servers.map((s) => ({ ...s, rss: s.pid ? rssBytes(s.pid) : undefined }));
      progress.done();
      await finish(workers);
      return buildReport({ options, rate, label: ctx.label, setupMs, failed, idle: { before, after } });
    }

    const at = nowMs() + 300;
    const measureFrom = at + options.warmupS * 1000;
    const measureMs = options.durationS * 1000;
    let servers: ServerInfo[] = serversAtStart;
    const metricsAddrs = serversAtStart.flatMap((s) => (s.metrics ? [s.metrics] : []));
    let commitPath: StageSplit | undefined;
    const sampled = (async () => {
      await Bun.sleep(Math.max(0, measureFrom - nowMs()));
      for (const m of meters) m.begin();
      const stagesBefore = metricsAddrs.length ? readStages(metricsAddrs) : undefined;
      await Bun.sleep(measureMs / 2);
      servers = await ctx.system.servers().catch(() => servers);
      await Bun.sleep(Math.max(0, measureFrom + measureMs - nowMs()));
      const cpu = meters.map((m) => m.end());
      if (stagesBefore) commitPath = stageSplit(await stagesBefore, await readStages(metricsAddrs));
      return cpu;
    })();
    for (const w of workers) w.send({ type: "start", at, warmupMs: options.warmupS * 1000, durationMs: measureMs, tickMs: TICK_MS, placement });
    const cpu = await sampled;
    const expected = (await Promise.all(workers.map((w) => w.next("sent")))).reduce((n, s) => n + s.expected, 0);
    progress.done();

    let offline: { replayed: number; ms: number } | undefined;
    if (options.pattern === "offline") {
      ctx.log("sending done; the offline recipients log in and replay their inboxes ...");
      const t0 = nowMs();
      for (const w of workers) w.send({ type: "offline-login" });
      const done = await Promise.all(workers.map((w) => w.next("offline-done")));
      offline = { replayed: done.reduce((n, d) => n + d.replayed, 0), ms: nowMs() - t0 };
    }
    await drain(expected, delivered, ctx.log);
    const results = await finish(workers);
    const cpuByServer = new Map([...perServer.keys()].map((id, i) => [id, cpu[3 + i]!]));
    return buildReport({
      options,
      rate,
      label: ctx.label,
      setupMs,
      failed,
      results,
      expected,
      timeline: mergeTimeline(timeline),
      lost: countLost(results, options),
      measureMs,
      servers: servers.map((s) => ({ ...s, cpu: cpuByServer.get(s.id), rss: s.pid ? rssBytes(s.pid) : undefined })),
      cpu: { servers: serversAtStart.some((s) => s.pid) ? cpu[0]! : null, postgres: ctx.postgresPid ? cpu[1]! : null, generator: cpu[2]! },
      offline,
      commitPath,
    });
  } finally {
    progress.done();
    for (const w of workers) w.kill();
  }
}

async function finish(workers: WorkerProcess[]): Promise<WorkerResult[]> {
  for (const w of workers) w.send({ type: "finish" });
  return Promise.all(workers.map((w) => w.next("result")));
}

/** Waits until every expected delivery arrived, or deliveries stopped coming. */
async function drain(expected: number, delivered: Map<number, number>, log: (line: string) => void): Promise<void> {
  const total = () => [...delivered.values()].reduce((a, b) => a + b, 0);
  let last = total();
  let since = nowMs();
  while (total() < expected) {
    await Bun.sleep(50);
    const now = total();
    if (now !== last) {
      last = now;
      since = nowMs();
    } else if (nowMs() - since > DRAIN_IDLE_MS) {
      log(`drain: ${expected - now} deliveries still missing after ${DRAIN_IDLE_MS / 1000} s without progress`);
      return;
    }
  }
  await Bun.sleep(TICK_MS + 100); // the last tick carries the final count of duplicates too
}

/** Acknowledged messages that some recipient never got. */
function countLost(results: WorkerResult[], options: BenchOptions): number {
  const recvDm = new Map<string, Bitmap>();
  const recvGroup = new Map<string, Bitmap>();
  for (const r of results) {
    for (const [k, v] of Object.entries(r.recvDm)) {
      const b = recvDm.get(k);
      if (b) b.or(Bitmap.decode(v));
      else recvDm.set(k, Bitmap.decode(v));
    }
    for (const [k, v] of Object.entries(r.recvGroup)) recvGroup.set(k, Bitmap.decode(v));
  }
  let lost = 0;
  const pop = { clients: options.clients, groupSize: options.groupSize, contacts: options.contacts };
  for (const r of results) {
    for (const [sender, v] of Object.entries(r.ackedDm)) lost += Bitmap.decode(v).missingFrom(recvDm.get(sender));
    for (const [sender, v] of Object.entries(r.ackedGroup)) {
      const acked = Bitmap.decode(v);
      for (const member of groupMembers(groupOf(Number(sender), options.groupSize), pop)) {
        if (member !== Number(sender)) lost += acked.missingFrom(recvGroup.get(`${member}:${sender}`));
      }
    }
  }
  return lost;
}

export interface TimelinePoint {
  t: number;
  sent: number;
  acked: number;
  delivered: number;
  errors: number;
  ack: Histogram;
  delivery: Histogram;
}

function mergeTimeline(timeline: Map<number, { ticks: Tick[] }>): TimelinePoint[] {
  return [...timeline.entries()]
    .sort(([a], [b]) => a - b)
    .map(([k, { ticks }]) => {
      const ack = newHistogram();
      const delivery = newHistogram();
      for (const t of ticks) {
        addEncoded(ack, t.ackHist);
        addEncoded(delivery, t.deliveryHist);
      }
      const sum = (f: (t: Tick) => number) => ticks.reduce((n, t) => n + f(t), 0);
      return { t: ((k + 1) * TICK_MS) / 1000, sent: sum((t) => t.sent), acked: sum((t) => t.acked), delivered: sum((t) => t.delivered), errors: sum((t) => t.errors), ack, delivery };
    });
}

async function serverMemory(system: System): Promise<{ id: string; rss?: number }[]> {
  const servers = await system.servers();
  return servers.map((s) => ({ id: s.id, rss: s.pid ? rssBytes(s.pid) : undefined }));
}

export const TICK_SECONDS = TICK_MS / 1000;
