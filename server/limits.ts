/**
 * The server's bounds on what one party can make it do: a semaphore on password
 * hashing (argon2id takes 64 MiB and a core each), hashing per source address,
 * and messages per user. Counters live in this process: a cluster of N servers
 * lets an address or a user N times as much, which still bounds each server
 * (SECURITY.md says why that was chosen over counters in ChatDB).
 */
import { ChatError } from "../protocol/errors";
import type { ServerConfig } from "./context";
import { LoopLag } from "./loop-lag";

/** At most `size` holders at once; the rest wait in arrival order. */
export class Semaphore {
  private held = 0;
  private readonly queue: (() => void)[] = [];

  constructor(readonly size: number) {}

  async run<T>(work: () => Promise<T>): Promise<T> {
    if (this.held >= this.size) await new Promise<void>((resolve) => this.queue.push(resolve));
    else this.held++;
    try {
      return await work();
    } finally {
      const next = this.queue.shift();
      // The place passes straight to the next waiter; held stays the same.
      if (next) next();
      else this.held--;
    }
  }

  get waiting(): number {
    return this.queue.length;
  }
}

/**
 * Token buckets by key: each holds up to `burst` tokens and gains `perSecond`
 * a second. Full buckets are forgotten, so the map holds only keys that spent
 * recently (bounded by `maxKeys`: past it, the fullest are dropped first by age).
 */
export class Buckets<K> {
  private readonly buckets = new Map<K, { tokens: number; at: number }>();

  constructor(
    readonly burst: number,
    readonly perSecond: number,
    private readonly maxKeys = 100_000,
    private readonly now: () => number = Date.now,
  ) {}

  /** Tokens the key has now (a full bucket for a key not seen lately). */
  level(key: K): number {
    const b = this.buckets.get(key);
    if (!b) return this.burst;
    return Math.min(this.burst, b.tokens + ((this.now() - b.at) / 1000) * this.perSecond);
  }

  /** Gives back a token taken for something that was then refused. */
  give(key: K): void {
    const b = this.buckets.get(key);
    if (b) b.tokens = Math.min(this.burst, b.tokens + 1);
  }

  /** Takes a token, or returns how many milliseconds until one is there. */
  take(key: K): number {
    if (this.perSecond <= 0) return 0;
    const now = this.now();
    const b = this.buckets.get(key) ?? { tokens: this.burst, at: now };
    b.tokens = Math.min(this.burst, b.tokens + ((now - b.at) / 1000) * this.perSecond);
    b.at = now;
    if (b.tokens < 1) {
      this.buckets.set(key, b);
      return Math.ceil(((1 - b.tokens) / this.perSecond) * 1000);
    }
    b.tokens -= 1;
    this.buckets.delete(key);
    this.buckets.set(key, b);
    // Oldest first in a Map: those are the fullest by now.
    while (this.buckets.size > this.maxKeys) this.buckets.delete(this.buckets.keys().next().value as K);
    return 0;
  }
}

/** E_RATE_LIMITED with the wait in milliseconds, which the client reads and honours. */
export function rateLimited(retryAfterMs: number, what: string): ChatError {
  return new ChatError("E_RATE_LIMITED", `${what}: try again in ${Math.max(1, Math.ceil(retryAfterMs / 1000))} s`, retryAfterMs);
}

/**
 * While the server's loop runs late, a user who has spent more than half their
 * burst just now is told to wait this long (and, not read meanwhile, costs
 * nothing): 100 accounts each within their own allowance are more than one
 * server can store, and the neighbours' messages should not wait behind them.
 */
export const BUSY_RETRY_MS = 1000;

/** Reads whose replies can be large (history, fetch, file chunks): at most this many at once per connection. */
export const READS_PER_CONNECTION = 2;

/** What a read needs of the connection (net/listener.ts): to know when its socket has taken what was queued. */
export interface Drainable {
  whenDrained(): Promise<void>;
}

export class Limits {
  readonly hashes: Semaphore;
  /** Large reads at once, server-wide: what they hold (rows, encoded replies) is bounded, and so is the database's share. */
  readonly reads: Semaphore;
  private readonly readsOf = new WeakMap<object, Semaphore>();
  private readonly hashesByAddress: Buckets<string>;
  private readonly sends: Buckets<number>;

  /** Whether the server is behind (its event loop runs late): then heavy senders wait. */
  private readonly busy: () => boolean;

  constructor(config: ServerConfig, busy?: () => boolean) {
    if (busy) this.busy = busy;
    else {
      const lag = new LoopLag();
      this.busy = () => lag.busy;
    }
    this.hashes = new Semaphore(config.maxConcurrentHashes);
    this.reads = new Semaphore(config.maxConcurrentReads);
    this.hashesByAddress = new Buckets(config.hashBurstPerAddress, config.hashesPerSecondPerAddress);
    this.sends = new Buckets(config.sendBurst, config.sendsPerSecond);
  }

  /** Runs one password hash for this address, within its rate and the server's bound on hashes at once. */
  hash<T>(address: string, work: () => Promise<T>): Promise<T> {
    const wait = this.hashesByAddress.take(address);
    if (wait > 0) return Promise.reject(rateLimited(wait, "Too many password attempts from this address"));
    return this.hashes.run(work);
  }

  /**
   * Runs a read whose reply may be up to a frame: within the connection's and
   * the server's bounds on them, and only once the connection's socket has taken
   * the replies before (a client that stops reading gets no more built for it).
   */
  read<T>(conn: Drainable, work: () => Promise<T>): Promise<T> {
    let mine = this.readsOf.get(conn);
    if (!mine) this.readsOf.set(conn, (mine = new Semaphore(READS_PER_CONNECTION)));
    return mine.run(async () => {
      await conn.whenDrained();
      return this.reads.run(work);
    });
  }

  /**
   * Takes one message from the user's allowance, or throws E_RATE_LIMITED with
   * the wait. While the server is behind, a user with less than half their burst
   * left waits too: someone sending at a person's pace never gets there, so the
   * server's time goes to them first.
   */
  send(userId: number): void {
    const wait = this.sends.take(userId);
    if (wait > 0) throw rateLimited(wait, "Sending too fast");
    if (this.sends.perSecond > 0 && this.sends.level(userId) < this.sends.burst / 2 && this.busy()) {
      this.sends.give(userId);
      throw rateLimited(BUSY_RETRY_MS, "The server is busy and you have sent a lot just now");
    }
  }
}
