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

  constructor(
    private readonly store: Store,
    private readonly delayMs = 5,
  ) {}

  /** One user's cursors, each "everything up to seq in conv is shown". */
  ack(userId: number, cursors: [number, number][]): Promise<void> {
    return new Promise((resolve, reject) => {
      this.batch.push({ userId, cursors, done: (e) => (e ? reject(e) : resolve()) });
      this.timer ??= setTimeout(() => void this.flush(), this.delayMs);
    });
  }

  async flush(): Promise<void> {
    this.timer = undefined;
    const batch = this.batch;
    this.batch = [];
    if (batch.length === 0) return;
    // One row per (user, conversation): the highest acknowledgement wins.
    const highest = new Map<string, { userId: number; convId: number; seq: number }>();
    for (const a of batch) {
      for (const [convId, seq] of a.cursors) {
        const key = `${a.userId}:${convId}`;
        const seen = highest.get(key);
        if (!seen || seen.seq < seq) highest.set(key, { userId: a.userId, convId, seq });
      }
    }
    try {
      await this.store.ackBatch([...highest.values()]);
      for (const a of batch) a.done();
    } catch (error) {
      for (const a of batch) a.done(error);
    }
  }
}
