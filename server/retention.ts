/**
 * Message retention (`serve --retention-days N`, off by default): messages
 * older than N days are deleted a batch at a time, each batch its own short
 * statement that walks the primary key from the oldest id, so no lock on
 * `messages` outlives a few milliseconds and the hot path keeps committing.
 * Ids grow with time, so the oldest rows are always at the start of the key:
 * a batch that deletes less than it read has reached the cut-off, and the
 * sweep stops without scanning the rest of the table. Every server sweeps;
 * SKIP LOCKED keeps two sweeps from waiting on each other.
 *
 * Clients cope with the holes: a conversation's missing numbers that the
 * server no longer has are moved past (client/sequencer.ts, filled()).
 */
import type { Sql } from "../db/connect";
import type { Log } from "../roles/logger";

export interface RetentionOptions {
  sql: Sql;
  days: number;
  log: Log;
  /** Rows read per statement. */
  batch?: number;
  /** Time between sweeps. */
  everyMs?: number;
}

export interface Retention {
  /** One sweep now; resolves with how many messages it deleted. */
  sweep(): Promise<number>;
  stop(): Promise<void>;
}

/** A pause between batches, so that a large first sweep leaves room for the group commit. */
const BETWEEN_BATCHES_MS = 5;

export function startRetention(options: RetentionOptions): Retention {
  const batch = options.batch ?? 1000;
  let stopped = false;
  let running: Promise<number> | undefined;

  const sweepOnce = async (): Promise<number> => {
    let deleted = 0;
    while (!stopped) {
      const rows = await options.sql`
        with oldest as (
          select id, created_at from messages order by id limit ${batch} for update skip locked
        )
        delete from messages m using oldest
        where m.id = oldest.id and oldest.created_at < now() - ${options.days} * interval '1 day'
        returning m.id`;
      deleted += rows.length;
      if (rows.length < batch) break;
      await Bun.sleep(BETWEEN_BATCHES_MS);
    }
    if (deleted > 0) options.log(`retention: deleted ${deleted} messages older than ${options.days} days`, { deleted });
    return deleted;
  };
  const sweep = () => (running ??= sweepOnce().finally(() => (running = undefined)));
  const tick = () => void sweep().catch((error) => options.log(`retention sweep failed: ${error}`, { level: "error", code: "E_UNAVAILABLE" }));

  tick();
  const timer = setInterval(tick, options.everyMs ?? 3600_000);
  return {
    sweep,
    async stop() {
      stopped = true;
      clearInterval(timer);
      await running?.catch(() => {});
    },
  };
}
