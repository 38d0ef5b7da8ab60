/**
 * Exponential backoff with full jitter: wait a random time up to
 * min(cap, base * 2^attempt), so servers and clients that lost the balancer at
 * the same moment do not all come back at the same moment.
 */
import type { Rng } from "./strategy";

export function backoffDelay(attempt: number, baseMs = 100, capMs = 2000, rng: Rng = Math.random): number {
  return rng() * Math.min(capMs, baseMs * 2 ** Math.min(attempt, 30));
}

/** A sleep that wake() can cut short: a closed link or stop() should not wait out a timer. */
export class Sleeper {
  private timer: Timer | undefined;
  private resolve: (() => void) | undefined;

  sleep(ms: number): Promise<void> {
    this.wake();
    return new Promise((resolve) => {
      this.resolve = resolve;
      this.timer = setTimeout(() => this.wake(), ms);
    });
  }

  wake(): void {
    clearTimeout(this.timer);
    const resolve = this.resolve;
    this.resolve = this.timer = undefined;
    resolve?.();
  }
}
