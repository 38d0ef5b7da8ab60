/**
 * One clock for every bench process on this machine, so that a latency from a
 * send in one worker to a delivery in another needs no further agreement: the
 * wall clock as read at process start (performance.timeOrigin, sub-millisecond)
 * plus the monotonic time since. (Bun's process.hrtime counts from process
 * start, so it cannot be compared across processes.)
 */
const origin = performance.timeOrigin;

/** Microseconds since the epoch. */
export function nowUs(): number {
  return (origin + performance.now()) * 1000;
}

export function nowMs(): number {
  return origin + performance.now();
}
