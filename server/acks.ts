/**
 * Cursor updates from "I have everything up to N in conversation C", gathered
 * for a few milliseconds and written in one statement.
 */
import type { Store } from "./store";

interface Ack {
  userId: number;
  /** [conversation, sequence number] pairs. */
  cursors: [number, number][];
  done(error?: unknown): void;
}

export class Acks {
  private batch: Ack[] = [];
  private timer?: Timer;
  /**
   * The statement in flight. One at a time: overlapping statements of one
   * server update the same rows (a user's cursor, acknowledged again), so
   * they waited on each other's row locks, and the waits grew with the load.
   */
  private writing?: Promise<void>;

  constructor(
    private readonly store: Store,
    private readonly delayMs = 5,
  ) {}

  /** One user's cursors, each "everything up to seq in conv is shown". */
  ack(userId: number, cursors: [number, number][]): Promise<void> {
    return new Promise((resolve, reject) => {
      this.batch.push({ userId, cursors, done: (e) => (e ? reject(e) : resolve()) });
      this.schedule();
    });
  }

  /** Writes what is gathered, after the statement in flight. */
  async flush(): Promise<void> {
    clearTimeout(this.timer);
    this.timer = undefined;
    while (this.writing) await this.writing;
    const batch = this.batch;
    this.batch = [];
    if (batch.length === 0) return;
    // One row per (user, conversation): the highest acknowledgement wins.
    const highest = new Map<number, Map<number, { userId: number; convId: number; seq: number }>>();
    const rows: { userId: number; convId: number; seq: number }[] = [];
    for (const a of batch) {
      let mine = highest.get(a.userId);
      if (!mine) highest.set(a.userId, (mine = new Map()));
      for (const [convId, seq] of a.cursors) {
        const seen = mine.get(convId);
        if (!seen) {
          const row = { userId: a.userId, convId, seq };
          mine.set(convId, row);
          rows.push(row);
        } else if (seen.seq < seq) seen.seq = seq;
      }
    }
    this.writing = this.store.ackBatch(rows).then(
      () => batch.forEach((a) => a.done()),
      (error) => batch.forEach((a) => a.done(error)),
    );
    try {
      await this.writing;
    } finally {
      this.writing = undefined;
      if (this.batch.length > 0) this.schedule();
    }
  }

  private schedule(): void {
    if (!this.writing) this.timer ??= setTimeout(() => void this.flush(), this.delayMs);
  }
}
