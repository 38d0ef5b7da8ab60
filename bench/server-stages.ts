/**
 * Where a message's time goes inside the servers' commit path, read from
 * their metrics endpoints (server/metrics.ts) at the start and the end of the
 * measured window: each stage's percentiles over that window only, summed over
 * the servers, the commits a second, their mean size and how many ran at once.
 * The bench's own ack and delivery latencies count from the client; these
 * split the part of them that is the servers' commit path.
 */
const STAGE = "chatterbox_commit_stage_seconds";
const BATCH = "chatterbox_commit_batch_messages";
const IN_FLIGHT = "chatterbox_commit_batches_in_flight";
export const STAGE_NAMES = ["queued", "statement", "replied", "total"] as const;
export type StageName = (typeof STAGE_NAMES)[number];

/** Cumulative counts of one histogram: bucket upper bound (seconds or count) → observations at or below it. */
interface Cumulative {
  buckets: Map<number, number>;
  sum: number;
  count: number;
}

export interface StageSnapshot {
  stages: Map<StageName, Cumulative>;
  batch: Cumulative;
  inFlight: Cumulative;
  /** performance.now() when it was read. */
  at: number;
}

export interface StagePercentiles {
  count: number;
  /** Milliseconds, read off the buckets (linear within one). */
  p50: number;
  p99: number;
  mean: number;
}

export interface StageSplit {
  stages: Partial<Record<StageName, StagePercentiles>>;
  commitsPerS: number;
  meanBatch: number;
  meanInFlight: number;
}

/** The servers' figures now; a server that does not answer adds nothing (its stages are then missing from the split). */
export async function readStages(metricsAddrs: string[]): Promise<StageSnapshot> {
  const at = performance.now();
  const texts = await Promise.all(
    metricsAddrs.map((addr) =>
      fetch(`http://${addr}/metrics`, { signal: AbortSignal.timeout(5000) })
        .then((r) => r.text())
        .catch(() => ""),
    ),
  );
  return parseStages(texts, at);
}

export function parseStages(texts: string[], at = 0): StageSnapshot {
  const empty = (): Cumulative => ({ buckets: new Map(), sum: 0, count: 0 });
  const snap: StageSnapshot = { stages: new Map(STAGE_NAMES.map((s) => [s, empty()])), batch: empty(), inFlight: empty(), at };
  const target = (metric: string, labels: Record<string, string>): Cumulative | undefined => {
    if (metric === STAGE) return snap.stages.get(labels.stage as StageName);
    if (metric === BATCH) return snap.batch;
    if (metric === IN_FLIGHT) return snap.inFlight;
    return undefined;
  };
  for (const text of texts) {
    for (const line of text.split("\n")) {
      const m = /^(\w+?)_(bucket|sum|count)(?:\{([^}]*)\})? (\S+)$/.exec(line);
      if (!m) continue;
      const labels = Object.fromEntries([...(m[3] ?? "").matchAll(/(\w+)="([^"]*)"/g)].map((l) => [l[1]!, l[2]!]));
      const into = target(m[1]!, labels);
      if (!into) continue;
      const value = Number(m[4]);
      if (m[2] === "sum") into.sum += value;
      else if (m[2] === "count") into.count += value;
      else {
        const le = labels.le === "+Inf" ? Infinity : Number(labels.le);
        into.buckets.set(le, (into.buckets.get(le) ?? 0) + value);
      }
    }
  }
  return snap;
}

/** What happened between two snapshots. */
export function stageSplit(before: StageSnapshot, after: StageSnapshot): StageSplit {
  const seconds = Math.max(1e-9, (after.at - before.at) / 1000);
  const stages: StageSplit["stages"] = {};
  for (const name of STAGE_NAMES) {
    const d = minus(after.stages.get(name)!, before.stages.get(name)!);
    if (d.count > 0) stages[name] = { count: d.count, p50: ms(quantile(d, 0.5)), p99: ms(quantile(d, 0.99)), mean: ms(d.sum / d.count) };
  }
  const batch = minus(after.batch, before.batch);
  const inFlight = minus(after.inFlight, before.inFlight);
  return {
    stages,
    commitsPerS: Math.round(batch.count / seconds),
    meanBatch: batch.count ? Math.round((batch.sum / batch.count) * 10) / 10 : 0,
    meanInFlight: inFlight.count ? Math.round((inFlight.sum / inFlight.count) * 100) / 100 : 0,
  };
}

function minus(a: Cumulative, b: Cumulative): Cumulative {
  const buckets = new Map<number, number>();
  for (const [le, n] of a.buckets) buckets.set(le, n - (b.buckets.get(le) ?? 0));
  return { buckets, sum: a.sum - b.sum, count: a.count - b.count };
}

/** The q-quantile, linear between the bounds of the bucket it falls in (the last finite bound past the top). */
export function quantile(h: Cumulative, q: number): number {
  const bounds = [...h.buckets.keys()].sort((x, y) => x - y);
  const rank = q * h.count;
  let lower = 0;
  let below = 0;
  for (const le of bounds) {
    const n = h.buckets.get(le)!;
    if (n >= rank) {
      if (le === Infinity) return lower;
      return n === below ? le : lower + ((le - lower) * (rank - below)) / (n - below);
    }
    lower = le;
    below = n;
  }
  return lower;
}

const ms = (seconds: number) => Math.round(seconds * 1e5) / 100;

export function formatSplit(s: StageSplit): string[] {
  const part = (name: StageName) => {
    const p = s.stages[name];
    return p ? `${name} ${p.p50}/${p.p99}` : `${name} -`;
  };
  return [
    `  commit path ${STAGE_NAMES.map(part).join(", ")} ms (p50/p99, in the servers)`,
    `  commits     ${s.commitsPerS.toLocaleString("en-US")}/s, ${s.meanBatch} messages each, ${s.meanInFlight} in flight as one started`,
  ];
}
