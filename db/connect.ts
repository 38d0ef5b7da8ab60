/**
 * Opens ChatDB and brings its schema up to date. drizzle-orm over postgres.js:
 * drizzle for the schema and migrations, the same postgres.js client for the few
 * hot queries that want hand-written SQL.
 */
import { createHash } from "node:crypto";
import { drizzle, type PostgresJsDatabase } from "drizzle-orm/postgres-js";
import postgres from "postgres";
import { migrationFiles, migrationJournal } from "./migrations";
import { HealingPool, type Sql } from "./pool";
import * as schema from "./schema";

export type { Sql };
export type Db = PostgresJsDatabase<typeof schema>;

export interface Database {
  url: string;
  sql: Sql;
  db: Db;
  /** The pool behind `sql`: replaced after a connection error or a missed deadline. */
  pool: HealingPool;
  close(): Promise<void>;
}

/** A query (or transaction) on a request path: longer than this, and the pool is presumed stuck. */
export const QUERY_DEADLINE_MS = 15_000;

/**
 * postgres.js waits 3^n/100 s (up to 20 s) before reconnecting after the n-th
 * failed attempt, counted across the whole pool: a crash restart of
 * PostgreSQL, which refuses connections for a few seconds, left the pool
 * waiting about 14 s after PostgreSQL was back. Capped at half a second here.
 */
const backoff = (attempt: number) => Math.min(0.5, 0.02 * 2 ** attempt) * (0.5 + Math.random() / 2);

export function openDatabase(
  url: string,
  options: { max?: number; settings?: Record<string, string>; deadlineMs?: number; onReplace?(reason: string): void; onRecovered?(): void } = {},
): Database {
  const make = () =>
    postgres(url, {
      max: options.max ?? 10,
      onnotice: () => {},
      connection: { application_name: "chatterbox", ...options.settings },
      // An address that swallows packets must not hold a query for the default 30 s.
      connect_timeout: 5,
      backoff,
      // Sequence numbers and message ids are bigint columns that stay far below 2^53.
      types: { int8: { to: 20, from: [20], serialize: (n: number) => String(n), parse: (s: string) => Number(s) } },
    });
  const pool = new HealingPool(make, { deadlineMs: options.deadlineMs ?? QUERY_DEADLINE_MS, onReplace: options.onReplace, onRecovered: options.onRecovered });
  const db = drizzle(pool.sql, { schema });
  return { url, sql: pool.sql, db, pool, close: () => pool.end(5) };
}

/** Any constant will do: every process that migrates takes the same advisory lock. */
const MIGRATION_LOCK = 0x63686174;

/**
 * Applies the embedded migrations, recorded in drizzle's own table so that
 * drizzle-kit sees the same history. Servers starting together take turns.
 */
export async function migrate(database: Database): Promise<void> {
  const migrations = migrationJournal.entries.map((entry) => {
    const query = migrationFiles[entry.tag];
    if (query === undefined) throw new Error(`Migration ${entry.tag} is not embedded (db/migrations.ts)`);
    return {
      sql: query.split("--> statement-breakpoint"),
      bps: entry.breakpoints,
      folderMillis: entry.when,
      hash: createHash("sha256").update(query).digest("hex"),
    };
  });
  // A session-level advisory lock on a connection of its own, held while it
  // migrates: a second process waits here, then finds nothing left to do.
  const lock = postgres(database.url, { max: 1, onnotice: () => {} });
  try {
    await lock`select pg_advisory_lock(${MIGRATION_LOCK})`;
    // On the lock's own connection, outside the pool's query deadline: a migration may take long.
    const db = drizzle(lock, { schema });
    await (db as any).dialect.migrate(migrations, (db as any).session, { migrationsFolder: "" });
  } finally {
    await lock.end({ timeout: 5 });
  }
}
