/**
 * Latency histograms (HdrHistogram: 3 significant digits at any magnitude, so a
 * p99.9 is as exact as a p50) in microseconds, and how they travel between
 * processes: compressed base64, merged by the coordinator.
 */
import * as hdr from "hdr-histogram-js";

export type Histogram = hdr.Histogram;

export function newHistogram(): Histogram {
  // Pure JavaScript (no WebAssembly): it also runs inside the compiled binary.
  // Plain 32-bit counts, not packed: recording is on the load generator's hot path.
  return hdr.build({ bitBucketSize: 32, lowestDiscernibleValue: 1, highestTrackableValue: 3_600_000_000, numberOfSignificantValueDigits: 3 });
}

export function encodeHistogram(h: Histogram): string {
  return h.totalCount === 0 ? "" : hdr.encodeIntoCompressedBase64(h);
}

export function addEncoded(into: Histogram, encoded: string | undefined): void {
  if (!encoded) return;
  const decoded = hdr.decodeFromCompressedBase64(encoded, "packed");
  into.add(decoded);
  decoded.destroy();
}

export interface Percentiles {
  count: number;
  p50: number;
  p90: number;
  p99: number;
  p999: number;
  max: number;
  mean: number;
}

/** In milliseconds, rounded to microseconds; null when nothing was recorded. */
export function percentiles(h: Histogram): Percentiles | null {
  if (h.totalCount === 0) return null;
  const ms = (us: number) => Math.round(us) / 1000;
  return {
    count: h.totalCount,
    p50: ms(h.getValueAtPercentile(50)),
    p90: ms(h.getValueAtPercentile(90)),
    p99: ms(h.getValueAtPercentile(99)),
    p999: ms(h.getValueAtPercentile(99.9)),
    max: ms(h.maxValue),
    mean: ms(h.mean),
  };
}
