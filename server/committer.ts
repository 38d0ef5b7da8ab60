/**
 * Group commit: sends from every connection join one queue, and one transaction
 * stores a whole batch. A batch starts as soon as the previous one commits, so a
 * quiet server commits each message at once and a busy one commits many per
 * round trip. One batch at a time keeps each sender's messages in order.
 *
 * No batch waits for ever: each has a deadline, after which its senders are
 * told E_UNAVAILABLE (they send again, with the same client message id, so a
 * batch that did commit late is not stored twice) and the committer's
 * connection is replaced. A database that is away fails each batch at once
 * with E_UNAVAILABLE; the next batch tries again, so commits resume by
 * themselves when it is back.
 */
import { ChatError } from "../protocol/errors";
import { FairQueue, PER_USER_PER_BATCH } from "./fair-queue";
import type { AppendItem, AppendResult } from "./store";

interface Waiting {
  item: AppendItem;
  resolve(result: AppendResult): void;
}

/** What the committer needs of the store. */
export interface BatchStore {
  appendBatch(items: AppendItem[]): Promise<AppendResult[]>;
}

export interface CommitterOptions {
  maxBatch?: number;
  /** A batch not committed within this long is answered E_UNAVAILABLE. */
  deadlineMs?: number;
  onError?(error: unknown): void;
  /** Called after a failed or timed-out batch: replace the connection it ran on. */
  recover?(): void;
}

const UNAVAILABLE: AppendResult = { ok: false, code: "E_UNAVAILABLE", message: "The message could not be stored now; send it again" };
const SHUTDOWN: AppendResult = { ok: false, code: "E_SHUTDOWN", message: "The server is shutting down" };

export class Committer {
  // Fair by sender: one user's backlog never sits in front of another user's message.
  private readonly queue = new FairQueue<Waiting, number>((w) => w.item.senderId, PER_USER_PER_BATCH);
  private running = false;
  private stopped = false;
  private readonly maxBatch: number;
  private readonly deadlineMs: number;

  constructor(
    private readonly store: BatchStore,
    private readonly options: CommitterOptions = {},
  ) {
    this.maxBatch = options.maxBatch ?? 2000;
    this.deadlineMs = options.deadlineMs ?? 10_000;
  }

  get depth(): number {
    return this.queue.size;
  }

  append(item: AppendItem): Promise<AppendResult> {
    if (this.stopped) return Promise.resolve(SHUTDOWN);
    return new Promise((resolve) => {
      this.queue.push({ item, resolve });
      if (!this.running) queueMicrotask(() => this.run());
    });
  }

  /**
   * Refuses new work; what is queued still commits, for up to boundMs. Then
   * whatever is left is answered E_SHUTDOWN (the senders retry elsewhere), so
   * that shutdown never waits on a database that does not answer.
   */
  async stop(boundMs = 15_000): Promise<void> {
    this.stopped = true;
    const deadline = Date.now() + boundMs;
    while ((this.running || this.queue.size > 0) && Date.now() < deadline) {
      if (!this.running) await this.run();
      else await Bun.sleep(5);
    }
    for (const w of this.queue.drain()) w.resolve(SHUTDOWN);
  }

  private async run(): Promise<void> {
    if (this.running) return;
    this.running = true;
    try {
      while (this.queue.size > 0) {
        const batch = this.queue.take(this.maxBatch);
        let results: AppendResult[];
        try {
          results = await this.withDeadline(this.store.appendBatch(batch.map((w) => w.item)));
        } catch (error) {
          this.options.onError?.(error);
          this.options.recover?.();
          const refusal = error instanceof ChatError ? { ok: false as const, code: error.code, message: error.message } : UNAVAILABLE;
          results = batch.map(() => refusal);
        }
        batch.forEach((w, i) => w.resolve(results[i]!));
      }
    } finally {
      this.running = false;
    }
  }

  private withDeadline<T>(work: Promise<T>): Promise<T> {
    let timer: Timer | undefined;
    const deadline = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new ChatError("E_UNAVAILABLE", `The database did not commit within ${this.deadlineMs} ms; send it again`)), this.deadlineMs);
    });
    // A batch that fails after its deadline has no one left to tell.
    work.catch(() => {});
    return Promise.race([work, deadline]).finally(() => clearTimeout(timer));
  }
}
