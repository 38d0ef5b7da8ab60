/**
 * The report: what was sent, stored and delivered, what was lost, how long it
 * took at each percentile, and what each process spent; as text for people and
 * JSON (--json) for machines.
 */
import { cpus, totalmem } from "node:os";
import type { TimelinePoint } from "./coordinator";
import { addEncoded, newHistogram, percentiles, type Percentiles } from "./hist";
import type { WorkerResult } from "./messages";
import type { BenchOptions } from "./options";
import { formatSplit, type StageSplit } from "./server-stages";
import type { ServerInfo } from "./system";

export interface ServerFigures {
  id: string;
  addr: string;
  connections: number;
  /** Percent of one core over the measured window; null for a system we did not start. */
  cpuPercent: number | null;
  rssMiB: number | null;
}

export interface Report {
  label?: string;
  config: {
    pattern: string;
    servers: number | null;
    clients: number;
    workers: number;
    rate: number | "max";
    window: number | null;
    durationS: number;
    warmupS: number;
    size: number;
    e2e: boolean;
    mls: boolean;
    groupSize: number | null;
    /** Direct-message partners: "fixed" contacts or "random" (anyone). */
    partners?: string;
    target: string;
    /** "tls" (the default) or "plaintext" (--insecure-plaintext). */
    transport: "tls" | "plaintext";
  };
  machine: { cpu: string; cores: number; memoryGiB: number; bun: string };
  setup: { seconds: number; failedClients: number };
  /** Messages due in the measured window. */
  sent: number;
  acknowledged: number;
  /** Deliveries (one per recipient) of the messages due in the window. */
  delivered: number;
  totals: { sent: number; acknowledged: number; deliveries: number; expectedDeliveries: number };
  /** Acknowledged messages that a recipient never received, after the drain. */
  lost: number;
  duplicates: number;
  errors: Record<string, number>;
  throughput: { sentPerS: number; acknowledgedPerS: number; deliveredPerS: number };
  /** sendLag: due → handed to its connection by the load generator (open loop: its own share of ack and delivery). */
  latencyMs: { ack: Percentiles | null; delivery: Percentiles | null; sendLag?: Percentiles | null };
  servers: ServerFigures[];
  cpuPercent: { servers: number | null; postgres: number | null; loadGenerator: number | null };
  /** The same, in microseconds of CPU a delivered message (in the measured window). */
  cpuUsPerDelivery: { servers: number | null; postgres: number | null; loadGenerator: number | null };
  /** The servers' commit path over the measured window, from their metrics (servers we started only). */
  commitPath?: StageSplit;
  timeline: { t: number; sentPerS: number; acknowledgedPerS: number; deliveredPerS: number; errors: number; ackP50: number | null; ackP99: number | null; deliveryP50: number | null; deliveryP99: number | null; deliveryP999: number | null }[];
  offline?: { replayed: number; seconds: number; messagesPerS: number };
  idle?: { connections: number; rssBeforeMiB: number | null; rssAfterMiB: number | null; bytesPerConnection: number | null; servers: ServerFigures[] };
}

interface Inputs {
  options: BenchOptions;
  rate: number | "max";
  label?: string;
  setupMs: number;
  failed: number;
  results?: WorkerResult[];
  expected?: number;
  timeline?: TimelinePoint[];
  lost?: number;
  measureMs?: number;
  servers?: (ServerInfo & { cpu?: number; rss?: number })[];
  cpu?: { servers: number | null; postgres: number | null; generator: number };
  offline?: { replayed: number; ms: number };
  idle?: { before: { id: string; rss?: number }[]; after: (ServerInfo & { rss?: number })[] };
  commitPath?: StageSplit;
}

/** Percent of a core over `seconds`, as µs of CPU for each of `count` deliveries. */
const usPer = (percent: number | null | undefined, count: number, seconds: number) =>
  percent === null || percent === undefined || count === 0 ? null : Math.round(((percent / 100) * seconds * 1e6 * 10) / count) / 10;
const mib = (bytes: number | undefined) => (bytes === undefined ? null : Math.round((bytes / 1048576) * 10) / 10);

export function buildReport(x: Inputs): Report {
  const o = x.options;
  const results = x.results ?? [];
  const sum = (f: (r: WorkerResult) => number) => results.reduce((n, r) => n + f(r), 0);
  const ack = newHistogram();
  const delivery = newHistogram();
  const lag = newHistogram();
  for (const r of results) {
    addEncoded(ack, r.ackHist);
    addEncoded(delivery, r.deliveryHist);
    addEncoded(lag, r.lagHist);
  }
  const errors: Record<string, number> = {};
  for (const r of results) for (const [code, n] of Object.entries(r.errors)) errors[code] = (errors[code] ?? 0) + n;
  const seconds = (x.measureMs ?? 1000) / 1000;
  const perS = (n: number) => Math.round(n / seconds);
  const ms = (us: number) => Math.round(us) / 1000;
  const remote = !!o.balancer;
  const report: Report = {
    label: x.label,
    config: {
      pattern: o.pattern,
      servers: remote ? null : o.servers,
      clients: o.clients,
      workers: o.workers,
      rate: x.rate,
      window: x.rate === "max" ? o.window : null,
      durationS: o.durationS,
      warmupS: o.warmupS,
      size: o.size,
      e2e: o.e2e,
      mls: o.mls,
      groupSize: o.pattern === "group" || o.pattern === "mixed" ? o.groupSize : null,
      partners: o.pattern === "dm" || o.pattern === "mixed" ? o.partners : undefined,
      target: o.ceiling && x.label === "ceiling" ? "ceiling relay" : remote ? `balancer ${o.balancer}` : "own system",
      transport: process.env.CHATTERBOX_INSECURE_PLAINTEXT === "1" || (o.ceiling && x.label === "ceiling") ? "plaintext" : "tls",
    },
    machine: { cpu: cpus()[0]?.model ?? "unknown", cores: cpus().length, memoryGiB: Math.round(totalmem() / 2 ** 30), bun: Bun.version },
    setup: { seconds: Math.round(x.setupMs / 100) / 10, failedClients: x.failed },
    sent: sum((r) => r.sent),
    acknowledged: sum((r) => r.acked),
    delivered: sum((r) => r.delivered),
    totals: { sent: sum((r) => r.sentAll), acknowledged: sum((r) => r.ackedAll), deliveries: sum((r) => r.deliveredAll), expectedDeliveries: x.expected ?? 0 },
    lost: x.lost ?? 0,
    duplicates: sum((r) => r.duplicates),
    errors,
    throughput: { sentPerS: perS(sum((r) => r.sent)), acknowledgedPerS: perS(sum((r) => r.acked)), deliveredPerS: perS(sum((r) => r.delivered)) },
    latencyMs: { ack: percentiles(ack), delivery: percentiles(delivery), ...(x.rate === "max" ? {} : { sendLag: percentiles(lag) }) },
    servers: (x.servers ?? []).map((s) => ({ id: s.id, addr: s.addr, connections: s.load, cpuPercent: s.cpu ?? null, rssMiB: mib(s.rss) })),
    cpuPercent: { servers: x.cpu?.servers ?? null, postgres: x.cpu?.postgres ?? null, loadGenerator: x.cpu?.generator ?? null },
    cpuUsPerDelivery: {
      servers: usPer(x.cpu?.servers, sum((r) => r.delivered), seconds),
      postgres: usPer(x.cpu?.postgres, sum((r) => r.delivered), seconds),
      loadGenerator: usPer(x.cpu?.generator, sum((r) => r.delivered), seconds),
    },
    ...(x.commitPath ? { commitPath: x.commitPath } : {}),
    timeline: (x.timeline ?? []).map((p) => {
      const span = 0.5;
      const at = (h: typeof p.ack, q: number) => (h.totalCount ? ms(h.getValueAtPercentile(q)) : null);
      return {
        t: p.t,
        sentPerS: p.sent / span,
        acknowledgedPerS: p.acked / span,
        deliveredPerS: p.delivered / span,
        errors: p.errors,
        ackP50: at(p.ack, 50),
        ackP99: at(p.ack, 99),
        deliveryP50: at(p.delivery, 50),
        deliveryP99: at(p.delivery, 99),
        deliveryP999: at(p.delivery, 99.9),
      };
    }),
  };
  if (x.offline) report.offline = { replayed: x.offline.replayed, seconds: Math.round(x.offline.ms) / 1000, messagesPerS: Math.round(report.totals.deliveries / (x.offline.ms / 1000)) };
  if (x.idle) {
    const before = x.idle.before.reduce((n, s) => n + (s.rss ?? 0), 0);
    const after = x.idle.after.reduce((n, s) => n + (s.rss ?? 0), 0);
    const connections = x.idle.after.reduce((n, s) => n + s.load, 0);
    const known = x.idle.after.some((s) => s.rss !== undefined);
    report.idle = {
      connections,
      rssBeforeMiB: known ? mib(before) : null,
      rssAfterMiB: known ? mib(after) : null,
      bytesPerConnection: known && connections > 0 ? Math.round((after - before) / connections) : null,
      servers: x.idle.after.map((s) => ({ id: s.id, addr: s.addr, connections: s.load, cpuPercent: null, rssMiB: mib(s.rss) })),
    };
  }
  return report;
}

export function formatReport(r: Report): string {
  const c = r.config;
  const n = (v: number) => v.toLocaleString("en-US");
  const lines: string[] = [];
  const title = r.label ? ` (${r.label})` : "";
  lines.push(`ChatterBox bench${title}: ${c.pattern}${c.groupSize ? ` (groups of ${c.groupSize})` : ""}${c.partners === "random" ? " to random partners" : ""}, ${n(c.clients)} clients over ${c.servers ?? "?"} server(s) [${c.target}], ${c.workers} worker process(es)`);
  lines.push(`  load        ${c.rate === "max" ? `max (closed loop, window ${c.window} per client)` : `${n(c.rate)} msg/s open loop`}, ${c.durationS} s after ${c.warmupS} s warm-up, ${c.mls ? "real MLS ciphertexts (each member decrypts)" : c.e2e ? "real e2e envelopes" : `${c.size}-byte bodies`}`);
  lines.push(`  transport   ${c.transport === "tls" ? "TLS on every hop" : "PLAINTEXT (--insecure-plaintext)"}`);
  lines.push(`  machine     ${r.machine.cpu}, ${r.machine.cores} cores, ${r.machine.memoryGiB} GiB, Bun ${r.machine.bun}`);
  lines.push(`  setup       ${r.setup.seconds} s to connect and log in${r.setup.failedClients ? `, ${r.setup.failedClients} clients failed` : ""}`);
  if (r.idle) {
    const i = r.idle;
    lines.push(`  idle        ${n(i.connections)} logged-in connections; server RSS ${i.rssBeforeMiB ?? "n/a"} → ${i.rssAfterMiB ?? "n/a"} MiB` + (i.bytesPerConnection !== null ? ` = ${(i.bytesPerConnection / 1024).toFixed(1)} KiB a connection` : ""));
    for (const s of i.servers) lines.push(`    ${s.addr.padEnd(22)} ${n(s.connections).padStart(7)} connections  RSS ${s.rssMiB ?? "n/a"} MiB`);
    return lines.join("\n");
  }
  lines.push(`  sent        ${n(r.sent)}  acknowledged ${n(r.acknowledged)}  delivered ${n(r.delivered)}  (whole run: ${n(r.totals.acknowledged)} stored, ${n(r.totals.deliveries)}/${n(r.totals.expectedDeliveries)} deliveries)`);
  lines.push(`  lost        ${n(r.lost)}   duplicates ${n(r.duplicates)}${Object.keys(r.errors).length ? `   errors ${JSON.stringify(r.errors)}` : ""}`);
  lines.push(`  throughput  ${n(r.throughput.acknowledgedPerS)} msg/s stored, ${n(r.throughput.deliveredPerS)} deliveries/s`);
  const row = (name: string, p: Report["latencyMs"]["ack"]) =>
    p ? `  ${name.padEnd(11)} p50 ${p.p50} ms  p90 ${p.p90} ms  p99 ${p.p99} ms  p99.9 ${p.p999} ms  max ${p.max} ms` : `  ${name.padEnd(11)} -`;
  lines.push(row("ack", r.latencyMs.ack));
  lines.push(row("delivery", r.latencyMs.delivery));
  if (r.latencyMs.sendLag) lines.push(row("send lag", r.latencyMs.sendLag) + " (due → handed to its connection)");
  if (r.offline) lines.push(`  offline     inboxes replayed at login: ${n(r.totals.deliveries)} messages in ${r.offline.seconds} s = ${n(r.offline.messagesPerS)} msg/s`);
  const cpu = (v: number | null) => (v === null ? "n/a" : `${v}%`);
  lines.push(`  cpu         servers ${cpu(r.cpuPercent.servers)}, PostgreSQL ${cpu(r.cpuPercent.postgres)}, load generator ${cpu(r.cpuPercent.loadGenerator)} (100% = one core; ${r.machine.cores} cores in all)`);
  const us = r.cpuUsPerDelivery;
  if (us && us.loadGenerator !== null) lines.push(`  cpu/msg     servers ${us.servers ?? "n/a"} µs, PostgreSQL ${us.postgres ?? "n/a"} µs, load generator ${us.loadGenerator} µs a delivered message`);
  if (r.commitPath) lines.push(...formatSplit(r.commitPath));
  for (const s of r.servers) {
    lines.push(`    ${s.addr.padEnd(22)} ${n(s.connections).padStart(6)} connections  CPU ${cpu(s.cpuPercent)}  RSS ${s.rssMiB === null ? "n/a" : `${s.rssMiB} MiB`}`);
  }
  return lines.join("\n");
}
