/**
 * Acknowledgements, gathered for a few milliseconds and written together in
 * one statement: "this device has everything up to N in conversation C"
 * (its delivery cursor) and "the person has read up to N" (the read marker).
 * What moved is handed on, for receipts and for the user's other devices.
 */
import type { CursorStore, Moved } from "./cursor-store";

interface Ack {
  userId: number;
  deviceId: number;
  received: [number, number][];
  read: [number, number][];
  done(error?: unknown): void;
}

export type OnMoved = (delivered: Moved[], read: Moved[]) => void;

export class Acks {
  private batch: Ack[] = [];
  private timer?: Timer;
  /**
   * The statements in flight. One batch at a time: overlapping statements of
   * one server update the same rows (a cursor, acknowledged again), so they
   * waited on each other's row locks, and the waits grew with the load.
   */
  private writing?: Promise<void>;

  constructor(
    private readonly store: Pick<CursorStore, "acknowledge">,
    private readonly onMoved: OnMoved = () => {},
    private readonly delayMs = 5,
  ) {}

  ack(userId: number, deviceId: number, received: [number, number][], read: [number, number][]): Promise<void> {
    return new Promise((resolve, reject) => {
      this.batch.push({ userId, deviceId, received, read, done: (e) => (e ? reject(e) : resolve()) });
      this.schedule();
    });
  }

  /** Writes what is gathered, after the statements in flight. */
  async flush(): Promise<void> {
    clearTimeout(this.timer);
    this.timer = undefined;
    while (this.writing) await this.writing;
    const batch = this.batch;
    this.batch = [];
    if (batch.length === 0) return;
    const received = highest(batch.flatMap((a) => a.received.map(([convId, seq]) => ({ key: a.deviceId, userId: a.userId, deviceId: a.deviceId, convId, seq }))));
    const read = highest(batch.flatMap((a) => a.read.map(([convId, seq]) => ({ key: a.userId, userId: a.userId, deviceId: a.deviceId, convId, seq }))));
    this.writing = this.store.acknowledge(received, read).then(
      ({ delivered, read: marked }) => {
        batch.forEach((a) => a.done());
        if (delivered.length > 0 || marked.length > 0) this.onMoved(delivered, marked);
      },
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

/** One row per (key, conversation): the highest position wins. Keyed by numbers, not a string made per row (the ack path is hot). */
function highest<T extends { key: number; convId: number; seq: number }>(rows: T[]): T[] {
  const best = new Map<number, Map<number, T>>();
  const out: T[] = [];
  for (const row of rows) {
    let mine = best.get(row.key);
    if (!mine) best.set(row.key, (mine = new Map()));
    const seen = mine.get(row.convId);
    if (!seen) {
      mine.set(row.convId, row);
      out.push(row);
    } else if (seen.seq < row.seq) {
      // The rows are made for this flush alone: raising the first in place is safe.
      seen.seq = row.seq;
    }
  }
  return out;
}
