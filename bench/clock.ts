/**
 * One clock for every bench process on this machine: CLOCK_MONOTONIC (what
 * process.hrtime reads on Linux) in microseconds, so a latency measured from a
 * send in one worker to a delivery in another needs no clock agreement.
 */
const base = Number(process.hrtime.bigint() / 1000n) - performance.now() * 1000;

/** Microseconds on the machine's monotonic clock. */
export function nowUs(): number {
  return base + performance.now() * 1000;
}

export function nowMs(): number {
  return nowUs() / 1000;
}
