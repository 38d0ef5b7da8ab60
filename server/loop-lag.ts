/**
 * How late the server's event loop runs: a timer asks to fire every `everyMs`
 * and notes how much later than that it did. Past a limit, the server has more
 * to do than it can do on time, and the heaviest senders are asked to wait
 * (server/admission.ts compares `lagMs` with --admission-lag-ms).
 */
export class LoopLag {
  private readonly recent: number[] = [];
  private readonly timer: Timer;

  constructor(everyMs = 25, window = 4) {
    let last = performance.now();
    this.timer = setInterval(() => {
      const now = performance.now();
      this.recent.push(Math.max(0, now - last - everyMs));
      if (this.recent.length > window) this.recent.shift();
      last = now;
    }, everyMs);
    // Never what keeps a process alive.
    this.timer.unref();
  }

  /** The latest of the last few lags, in milliseconds. */
  get lagMs(): number {
    return this.recent.reduce((a, b) => Math.max(a, b), 0);
  }

  stop(): void {
    clearInterval(this.timer);
  }
}
