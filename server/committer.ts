/**
 * Group commit: sends from every connection join one queue, and one transaction
 * stores a whole batch. A batch starts as soon as the previous one commits, so a
 * quiet server commits each message at once and a busy one commits many per
 * round trip. One batch at a time keeps each sender's messages in order.
 */
import { ChatError } from "../protocol/errors";
import type { AppendItem, AppendResult, Store } from "./store";

interface Waiting {
  item: AppendItem;
  resolve(result: AppendResult): void;
}

export class Committer {
  private queue: Waiting[] = [];
  private running = false;
  private stopped = false;

  constructor(
    private readonly store: Store,
    private readonly maxBatch = 2000,
    private readonly onError: (error: unknown) => void = () => {},
  ) {}

  get depth(): number {
    return this.queue.length;
  }

  append(item: AppendItem): Promise<AppendResult> {
    if (this.stopped) return Promise.resolve({ ok: false, code: "E_SHUTDOWN", message: "The server is shutting down" });
    return new Promise((resolve) => {
      this.queue.push({ item, resolve });
      if (!this.running) queueMicrotask(() => this.run());
    });
  }

  /** Refuses new work; what is queued still commits. */
  async stop(): Promise<void> {
    this.stopped = true;
    while (this.running || this.queue.length > 0) {
      if (!this.running) await this.run();
      else await Bun.sleep(5);
    }
  }

  private async run(): Promise<void> {
    if (this.running) return;
    this.running = true;
    try {
      while (this.queue.length > 0) {
        const batch = this.queue.splice(0, this.maxBatch);
        let results: AppendResult[];
        try {
          results = await this.store.appendBatch(batch.map((w) => w.item));
        } catch (error) {
          this.onError(error);
          const refusal = error instanceof ChatError ? error : new ChatError("E_UNAVAILABLE", "The message could not be stored; send it again");
          results = batch.map(() => ({ ok: false, code: refusal.code, message: refusal.message }));
        }
        batch.forEach((w, i) => w.resolve(results[i]!));
      }
    } finally {
      this.running = false;
    }
  }
}
