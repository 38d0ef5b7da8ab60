/**
 * Keeps one child process of `chatterbox up` running. A chat server that
 * exits unasked (a crash, `kill -9`, the out-of-memory killer) is started
 * again after a pause: 1 s, doubling on each exit that comes soon after a
 * start, up to 30 s, so a server that cannot start (its port taken, its
 * database gone) does not spin. Its clients reconnect through the balancer in
 * the meantime, and nothing it acknowledged is lost: that is in ChatDB.
 */
import type { Subprocess } from "bun";
import type { Log } from "./logger";

export const FIRST_PAUSE_MS = 1_000;
export const LONGEST_PAUSE_MS = 30_000;
/** A run this long counts as healthy: the next exit starts again from the first pause. */
export const HEALTHY_MS = 60_000;

/**
 * How long to wait before starting something again that exited: 1 s, doubling
 * on each exit that comes soon after a start, up to 30 s, back to 1 s after a
 * healthy run. Shared by the chat servers and the embedded PostgreSQL.
 */
export class RestartPacer {
  private startedAt = Date.now();
  private pauseMs = FIRST_PAUSE_MS;

  /** A start, now. */
  started(): void {
    this.startedAt = Date.now();
  }

  /** The pause before the next start, for an exit (or a failed start) now. */
  next(): number {
    if (Date.now() - this.startedAt >= HEALTHY_MS) this.pauseMs = FIRST_PAUSE_MS;
    const pause = this.pauseMs;
    this.pauseMs = Math.min(this.pauseMs * 2, LONGEST_PAUSE_MS);
    return pause;
  }
}

export class Supervised {
  private child: Subprocess;
  private readonly pacer = new RestartPacer();
  private watching = false;
  private stopping = false;
  private pending: Timer | undefined;
  /** Starts that followed an unasked exit. */
  restarts = 0;

  constructor(
    private readonly name: string,
    private readonly spawn: () => Subprocess,
    private readonly log: Log,
  ) {
    this.child = spawn();
  }

  /** The process running now (a new one after each restart). */
  get current(): Subprocess {
    return this.child;
  }

  /** From now on, an exit is answered with a new start (during start-up, up itself gives up instead). */
  watch(): void {
    if (this.watching) return;
    this.watching = true;
    this.follow(this.child);
  }

  private follow(child: Subprocess): void {
    void child.exited.then((code) => {
      if (this.stopping || child !== this.child) return;
      const pause = this.pacer.next();
      const how = child.signalCode ? `was killed by ${child.signalCode}` : `exited with ${code}`;
      this.log(`${this.name} ${how}; starting it again in ${pause / 1000} s`, { level: "warn", exit: code, signal: child.signalCode ?? undefined });
      this.pending = setTimeout(() => this.restart(), pause);
    });
  }

  private restart(): void {
    this.pending = undefined;
    if (this.stopping) return;
    this.child = this.spawn();
    this.pacer.started();
    this.restarts++;
    this.log(`${this.name} started again (pid ${this.child.pid})`);
    this.follow(this.child);
  }

  /** No more restarts; sends the signal to what runs now. */
  kill(signal: NodeJS.Signals): void {
    this.stopping = true;
    clearTimeout(this.pending);
    this.child.kill(signal);
  }
}
