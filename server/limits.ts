/**
 * The server's bounds on what one party can make it do: a semaphore on password
 * hashing (argon2id takes 64 MiB and a core each), hashing per source address,
 * messages per user and per source address, and the server-wide admission of
 * sends (server/admission.ts). Counters live in this process: a cluster of N servers
 * lets an address or a user N times as much, which still bounds each server
 * (SECURITY.md says why that was chosen over counters in ChatDB).
 */
import { ChatError } from "../protocol/errors";
import type { ServerConfig } from "./context";
import { LoopLag } from "./loop-lag";
import { Admission, type Pressure } from "./admission";

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

  /** Whether every place is taken (the next comer would wait). */
  get full(): boolean {
    return this.held >= this.size;
  }
}

/**
 * Token buckets by key: each holds up to `burst` tokens and gains `perSecond`
 * a second. A key first seen starts with `first` tokens (the whole burst
 * unless told otherwise) and earns the rest at the rate: a new account, or one
 * new to this server, has not earned a burst yet. The map holds the keys seen
 * lately (bounded by `maxKeys`: past it, the oldest are dropped, and come back
 * with `first`, never more).
 */
export class Buckets<K> {
  private readonly buckets = new Map<K, { tokens: number; at: number }>();
  private readonly first: number;

  constructor(
    readonly burst: number,
    readonly perSecond: number,
    private readonly maxKeys = 100_000,
    private readonly now: () => number = Date.now,
    first = burst,
  ) {
    this.first = Math.min(burst, first);
  }

  /** Tokens the key has now (`first` for a key not seen lately). */
  level(key: K): number {
    const b = this.buckets.get(key);
    if (!b) return this.first;
    return Math.min(this.burst, b.tokens + ((this.now() - b.at) / 1000) * this.perSecond);
  }

  /** Starts the key's bucket now if it has none: what it earns counts from here (a session's start). */
  start(key: K): void {
    if (this.perSecond <= 0 || this.buckets.has(key)) return;
    this.buckets.set(key, { tokens: this.first, at: this.now() });
    this.trim();
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
    const b = this.buckets.get(key) ?? { tokens: this.first, at: now };
    b.tokens = Math.min(this.burst, b.tokens + ((now - b.at) / 1000) * this.perSecond);
    b.at = now;
    if (b.tokens < 1) {
      this.buckets.set(key, b);
      return Math.ceil(((1 - b.tokens) / this.perSecond) * 1000);
    }
    b.tokens -= 1;
    this.buckets.delete(key);
    this.buckets.set(key, b);
    this.trim();
    return 0;
  }

  private trim(): void {
    // Oldest first in a Map: those are the fullest by now.
    while (this.buckets.size > this.maxKeys) this.buckets.delete(this.buckets.keys().next().value as K);
  }
}

/** E_RATE_LIMITED with the wait in milliseconds, which the client reads and honours. */
export function rateLimited(retryAfterMs: number, what: string): ChatError {
  return new ChatError("E_RATE_LIMITED", `${what}: try again in ${Math.max(1, Math.ceil(retryAfterMs / 1000))} s`, retryAfterMs);
}

/** A connection that can be told to start no request for a while (net/listener.ts). */
export interface Holdable {
  hold(retryAfterMs: number): void;
}

/** The server-wide admission of sends and large reads, as Limits uses it: 0 to admit, or the milliseconds to wait. */
export interface Admitter {
  admit(userId: number): number;
  admitRead(userId: number): number;
  /** How long a send waited from the committer to its commit: a signal of its own (server/admission.ts). */
  committed(waitMs: number): void;
}

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
  private readonly sendsByAddress: Buckets<string>;
  private readonly limitLoopback: boolean;
  /** Whether reads go through the admission (--admission-reads); never without a per-user send limit either. */
  private readonly admitReads: boolean;
  /** Whether the server is past what it can carry, and who is taking most (server/admission.ts). */
  private readonly admission: Admitter;

  /**
   * `pressure`: how the server is doing, by default the loop's lag measured
   * here and nothing queued; or the admission itself.
   */
  constructor(config: ServerConfig, pressure: Partial<Pressure> & { admission?: Admitter } = {}) {
    let lagMs = pressure.lagMs;
    if (!lagMs && !pressure.admission) {
      const lag = new LoopLag();
      lagMs = () => lag.lagMs;
    }
    this.admission =
      pressure.admission ?? new Admission(config, { lagMs: lagMs!, queued: pressure.queued ?? (() => 0), readsWaiting: () => (this.reads.full ? 1 + this.reads.waiting : 0) });
    this.sendsByAddress = new Buckets(config.sendBurstPerAddress, config.sendsPerSecondPerAddress);
    this.limitLoopback = config.sendLimitLoopback;
    this.admitReads = config.admissionReads && config.sendsPerSecond > 0;
    this.hashes = new Semaphore(config.maxConcurrentHashes);
    this.reads = new Semaphore(config.maxConcurrentReads);
    this.hashesByAddress = new Buckets(config.hashBurstPerAddress, config.hashesPerSecondPerAddress);
    // A user's burst is earned: a session new to this server starts with sendFirstBurst and earns the rest at the rate.
    this.sends = new Buckets(config.sendBurst, config.sendsPerSecond, 100_000, Date.now, config.sendFirstBurst);
  }

  /** A send waited this long from the committer to its commit (what the admission reads as pressure). */
  committed(waitMs: number): void {
    this.admission.committed(waitMs);
  }

  /** A user's session starts on this server: their send allowance counts what it earns from now. */
  session(userId: number): void {
    this.sends.start(userId);
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
  read<T>(conn: Drainable, work: () => Promise<T>, userId?: number): Promise<T> {
    let mine = this.readsOf.get(conn);
    if (!mine) this.readsOf.set(conn, (mine = new Semaphore(READS_PER_CONNECTION)));
    return mine.run(async () => {
      await conn.whenDrained();
      // Under pressure a user reading more than a person does waits (server/admission.ts; the listener
      // holds the connection to it). Asked only once the socket took the replies before: a client
      // that does not read is held by the drain already, and refusing it would only free its slots
      // for more requests to refuse (with 1,000 non-readers: the neighbours' p99 ~100 ms instead of
      // ~30 ms, and 200-300 MiB more RSS, bench/hostile.ts --only nonreader).
      const wait = userId !== undefined && this.admitReads ? this.admission.admitRead(userId) : 0;
      if (wait > 0) throw rateLimited(wait, "The server is busy and you are reading more than others");
      return this.reads.run(work);
    });
  }

  /**
   * Takes one message from the user's allowance and from their address's, and
   * has it admitted server-wide; or throws E_RATE_LIMITED with the wait, and
   * holds the connection that long. What a refused message took from an
   * allowance is given back: it was not sent.
   */
  send(userId: number, address?: string, conn?: Holdable): void {
    try {
      this.take(userId, address);
    } catch (error) {
      // Held at once, not when the refusal is answered: what the connection pipelined behind it waits.
      conn?.hold((error as ChatError).retryAfterMs ?? 0);
      throw error;
    }
  }

  private take(userId: number, address?: string): void {
    const wait = this.sends.take(userId);
    if (wait > 0) throw rateLimited(wait, "Sending too fast");
    const byAddress = address !== undefined && (this.limitLoopback || !isLoopback(address));
    if (byAddress) {
      const waitAddress = this.sendsByAddress.take(address);
      if (waitAddress > 0) {
        this.sends.give(userId);
        throw rateLimited(waitAddress, "Too many messages from this address");
      }
    }
    // No per-user limit (--send-rate 0: a server for bots, or the load bench) means no admission either.
    const waitBusy = this.sends.perSecond > 0 ? this.admission.admit(userId) : 0;
    if (waitBusy > 0) {
      this.sends.give(userId);
      if (byAddress) this.sendsByAddress.give(address);
      throw rateLimited(waitBusy, "The server is busy and you are sending more than others");
    }
  }
}

/**
 * Loopback carries no information about who is sending: every local process
 * (the tests, the bench, a TLS terminator or proxy on the same host) shares it.
 */
export function isLoopback(address: string): boolean {
  return address.startsWith("127.") || address === "::1" || address.startsWith("::ffff:127.");
}
