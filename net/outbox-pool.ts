/**
 * The bytes queued for all of a listener's connections together (issue 14).
 * Each outbox is bounded on its own (net/outbox.ts), but thousands of clients
 * that never read, each under its own bound, would still hold the server's
 * memory. Past the pool's limit, the outboxes holding the most are cut off as
 * too slow, until the total is back under a lower mark: those are the clients
 * furthest behind, and everyone who reads keeps their connection.
 */

/** What the pool can do to an outbox: know how much it holds, and cut it off. */
export interface PooledOutbox {
  readonly queued: number;
  /** Whether it is already being closed (a cut outbox is not cut twice). */
  readonly closing: boolean;
  cutOff(): void;
}

/** Past the limit, cut until the total is at most this share of it, so that one cut is not followed by another at the next frame. */
const LOW_MARK = 0.75;

export class OutboxPool {
  private totalBytes = 0;
  private readonly members = new Set<PooledOutbox>();
  private shedding = false;
  /** Outboxes cut off by the pool so far. */
  cut = 0;

  constructor(readonly limit: number) {}

  get total(): number {
    return this.totalBytes;
  }

  join(outbox: PooledOutbox): void {
    this.members.add(outbox);
  }

  leave(outbox: PooledOutbox): void {
    this.members.delete(outbox);
  }

  /** An outbox's queue changed by `delta` bytes; past the limit, the largest are cut. */
  changed(delta: number): void {
    this.totalBytes += delta;
    if (this.totalBytes > this.limit && !this.shedding) this.shed();
  }

  private shed(): void {
    // A cut changes the total too (its outbox empties): this pass is the only one.
    this.shedding = true;
    try {
      const largest = [...this.members].filter((o) => !o.closing && o.queued > 0).sort((a, b) => b.queued - a.queued);
      for (const outbox of largest) {
        if (this.totalBytes <= this.limit * LOW_MARK) break;
        this.cut++;
        outbox.cutOff();
      }
    } finally {
      this.shedding = false;
    }
  }
}
