/**
 * A postgres.js pool that heals itself. Callers hold one `sql` that forwards to
 * the pool of the moment; after a connection error, or a query that outlives
 * its deadline, that pool is retired (given a moment, then destroyed) and a
 * fresh one takes the next query.
 *
 * Why (postgres.js 3.4.9, src/connection.js): when a socket dies with an error
 * (ECONNRESET on a PostgreSQL restart), the 'error' handler rejects the queries
 * in flight, but the connection stays in the pool's busy queue until 'close'
 * arrives, and `errored()` leaves the dead query in `query`. A query issued in
 * between is pushed onto that connection's `sent` queue; then `closed(hadError
 * = true)` rejects nothing ("!hadError && … && error(…)"), so it is stranded.
 * At the next reconnect ReadyForQuery makes the stranded query the current one,
 * its bytes were never written, and the connection waits for it for ever: with
 * a pool of 1 (the committer) every later query waits behind it. (Upstream:
 * porsager/postgres#708 "queries stay pending after being terminated", #1142
 * "end() hangs forever after ECONNRESET".) Destroying the pool (`end` with a
 * timeout calls terminate(), which rejects `query` and `sent`) frees every
 * stranded query; the deadline catches any hang we have not understood.
 */
import postgres from "postgres";
import { ChatError } from "../protocol/errors";

export type Sql = postgres.Sql;

/** Codes of a connection that broke, or of a server that is not taking queries: not the query's fault. */
const CONNECTION_CODES = new Set([
  "ECONNRESET",
  "ECONNREFUSED",
  "EPIPE",
  "ETIMEDOUT",
  "EHOSTUNREACH",
  "CONNECTION_CLOSED",
  "CONNECTION_DESTROYED",
  "CONNECTION_ENDED",
  "CONNECT_TIMEOUT",
  "57P01", // admin_shutdown: terminated by a fast shutdown
  "57P02", // crash_shutdown
  "57P03", // cannot_connect_now: starting up, shutting down, in recovery
]);

export function isConnectionError(error: unknown): boolean {
  const code = (error as { code?: unknown })?.code;
  return typeof code === "string" && (CONNECTION_CODES.has(code) || code.startsWith("08"));
}

/** What a caller sees of a database that is away: a temporary refusal clients retry. */
function unavailable(cause: unknown): ChatError {
  const error = new ChatError("E_UNAVAILABLE", "The database is unavailable; try again");
  (error as { cause?: unknown }).cause = cause;
  return error;
}

export interface PoolOptions {
  /** A query (or a whole transaction) still unanswered after this long retires the pool. */
  deadlineMs: number;
  /** How long a retired pool's healthy queries get to finish before it is destroyed. */
  graceMs?: number;
  onReplace?(reason: string): void;
  /** The first query answered after a connection error or a missed deadline: the database is back. */
  onRecovered?(): void;
}

/** Replacing more often than this does not help: during an outage every query fails. */
const MIN_REPLACE_INTERVAL_MS = 500;

export class HealingPool {
  readonly sql: Sql;
  private current: Sql;
  private readonly retiring = new Set<Promise<void>>();
  private replacedAt = 0;
  private closed = false;
  /** Since a connection error or a missed deadline, until a query is answered again. */
  private troubled = false;
  replacements = 0;

  constructor(
    private readonly make: () => Sql,
    private readonly options: PoolOptions,
  ) {
    this.current = make();
    this.sql = this.forwarder();
  }

  /** Retires the pool of the moment and opens a fresh one; what is still running on the old gets graceMs. */
  replace(reason: string): void {
    if (this.closed || Date.now() - this.replacedAt < MIN_REPLACE_INTERVAL_MS) return;
    this.replacedAt = Date.now();
    this.replacements++;
    const old = this.current;
    this.current = this.make();
    // drizzle tunes the first client's type parsers in place: the new one needs the same.
    Object.assign(this.current.options.parsers, old.options.parsers);
    Object.assign(this.current.options.serializers, old.options.serializers);
    this.options.onReplace?.(reason);
    const ending = old
      .end({ timeout: (this.options.graceMs ?? 1_000) / 1000 })
      .catch(() => {})
      .finally(() => this.retiring.delete(ending));
    this.retiring.add(ending);
  }

  async end(timeoutS: number): Promise<void> {
    this.closed = true;
    await Promise.all([this.current.end({ timeout: timeoutS }), ...this.retiring]);
  }

  /** Watches one awaited query: a connection error or a missed deadline retires the pool. */
  private watch<T>(query: PromiseLike<T>): PromiseLike<T> {
    const then = query.then;
    const pool = this;
    // Only what is awaited is watched: a fragment (sql`…` inside another query) is never run by itself.
    (query as { then: unknown }).then = function (this: PromiseLike<T>, onFulfilled?: any, onRejected?: any) {
      let timer: Timer | undefined;
      const deadline = new Promise<never>((_, reject) => {
        timer = setTimeout(() => {
          pool.troubled = true;
          pool.replace(`a query took longer than ${pool.options.deadlineMs} ms`);
          reject(unavailable(new Error(`no answer within ${pool.options.deadlineMs} ms`)));
        }, pool.options.deadlineMs);
      });
      const settled = then.call(
        this,
        (value: T) => {
          clearTimeout(timer);
          if (pool.troubled) {
            pool.troubled = false;
            pool.options.onRecovered?.();
          }
          return value;
        },
        (error: unknown) => {
          clearTimeout(timer);
          if (!isConnectionError(error)) throw error;
          pool.troubled = true;
          pool.replace(`connection error: ${(error as Error).message}`);
          throw unavailable(error);
        },
      );
      return Promise.race([settled, deadline]).then(onFulfilled, onRejected);
    };
    return query;
  }

  private forwarder(): Sql {
    const pool = this;
    const target = function () {} as unknown as Sql;
    return new Proxy(target, {
      apply(_target, _this, args: unknown[]) {
        return pool.watch((pool.current as any)(...args));
      },
      get(_target, prop) {
        const current = pool.current as any;
        if (prop === "begin" || prop === "unsafe" || prop === "file") return (...args: unknown[]) => pool.watch(current[prop](...args));
        if (prop === "end") return (options?: { timeout?: number }) => pool.end(options?.timeout ?? 5);
        const value = current[prop];
        return typeof value === "function" ? value.bind(current) : value;
      },
    });
  }
}
