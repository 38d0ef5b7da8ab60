/**
 * A queue that is fair between keys (users): deficit round-robin with a cost
 * of one per item, so each take hands out one item of every key that has any
 * before a second of any. One user's backlog of thousands never sits in front
 * of another user's single message: that one goes in the next take.
 *
 * Each key's items come out in the order they went in (a sender's messages
 * keep their order); items of different keys interleave. The committer takes
 * its batches from here (`push` / `take(max)` / `size`), so that a committer
 * with several batches in flight can use it the same way.
 */
/**
 * A user's share of one group commit while others wait: more than a client's
 * pipelined window (8), so a lone sender is never held back by it.
 */
export const PER_USER_PER_BATCH = 16;

export class FairQueue<T, K = unknown> {
  /** Each key's items, oldest first; a key is here only while it has items. */
  private readonly lanes = new Map<K, T[]>();
  /** Keys with items, in turn order: the next take starts at the front. */
  private ring: K[] = [];
  private count = 0;

  constructor(
    private readonly keyOf: (item: T) => K,
    /**
     * At most this many items of one key per take: under a backlog a batch holds
     * a little of everyone rather than a lot of one, so its commit (and the
     * replies that follow it at once on the event loop) stays short.
     */
    private readonly perKeyPerTake = Infinity,
  ) {}

  /** The same as size: what the committer's CommitQueue asks. */
  get length(): number {
    return this.size;
  }

  get size(): number {
    return this.count;
  }

  /** Items of this key waiting now. */
  sizeOf(key: K): number {
    return this.lanes.get(key)?.length ?? 0;
  }

  push(item: T): void {
    const key = this.keyOf(item);
    const lane = this.lanes.get(key);
    if (lane) lane.push(item);
    else {
      this.lanes.set(key, [item]);
      this.ring.push(key);
    }
    this.count++;
  }

  /** Up to `max` items: one of each key in turn, round after round, from where the last take stopped. */
  take(max: number): T[] {
    const out: T[] = [];
    const taken = new Map<K, number>();
    // Keys visited this take that still have items, in the order they go next time.
    const again: K[] = [];
    let ring = this.ring;
    while (out.length < max && ring.length > 0) {
      const next: K[] = [];
      for (let i = 0; i < ring.length; i++) {
        const key = ring[i]!;
        if (out.length >= max) {
          // Not reached this round: first in line next time, in their order.
          this.ring = [...ring.slice(i), ...next, ...again];
          return out;
        }
        const lane = this.lanes.get(key)!;
        out.push(lane.shift()!);
        this.count--;
        const n = (taken.get(key) ?? 0) + 1;
        taken.set(key, n);
        if (lane.length === 0) this.lanes.delete(key);
        else if (n >= this.perKeyPerTake) again.push(key);
        else next.push(key);
      }
      ring = next;
    }
    this.ring = [...ring, ...again];
    return out;
  }

  /** Removes and returns everything, each key's items in order (for shutdown). */
  drain(): T[] {
    const out: T[] = [];
    while (this.count > 0) out.push(...this.take(this.count));
    return out;
  }
}
