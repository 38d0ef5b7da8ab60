/**
 * Group commit: sends from every connection join one queue, and one statement
 * stores a whole batch. Up to `inFlight` batches run at once, each on a
 * connection of its own, so the commit pipeline is not bound by one round
 * trip and one fsync at a time (issue 15: one batch in flight left a third of
 * the machine idle).
 *
 * Order: a conversation is in at most one batch in flight. A message for a
 * conversation that a running batch holds waits (parked, in arrival order)
 * until that batch is answered, and then goes before anything later for it.
 * So each conversation's messages are numbered in the order they reached the
 * committer, exactly as with one batch at a time, two batches of this server
 * never wait on each other's conversation locks, and a message is delivered
 * only after every earlier one of its conversation here has been answered.
 * Between servers the row locks of server/append.ts keep the numbering exact.
 *
 * No batch waits for ever: each has a deadline, after which its senders are
 * told E_UNAVAILABLE (they send again, with the same client message id, so a
 * batch that did commit late is not stored twice) and the committer's
 * connections are replaced. A database that is away fails each batch at once
 * with E_UNAVAILABLE; the next batch tries again, so commits resume by
 * themselves when it is back.
 */
import { ChatError } from "../protocol/errors";
import { FairQueue, PER_USER_PER_BATCH } from "./fair-queue";
import { NO_METRICS, type CommitStageRecorder } from "./metrics";
import type { AppendItem, AppendResult } from "./store";

export interface Waiting {
  item: AppendItem;
  resolve(result: AppendResult): void;
  /** When it reached the committer (performance.now()): its wait for a batch is timed from here. */
  at: number;
}

/**
 * Where sends wait for a batch. The committer's own is fair between users
 * (server/fair-queue.ts); a plain first-in, first-out one can stand in.
 */
export interface CommitQueue {
  push(entry: Waiting): void;
  /** Up to `max` entries, oldest first (in whatever order the queue is fair in). */
  take(max: number): Waiting[];
  readonly length: number;
}

export class FifoQueue implements CommitQueue {
  private entries: Waiting[] = [];
  push(entry: Waiting): void {
    this.entries.push(entry);
  }
  take(max: number): Waiting[] {
    if (this.entries.length <= max) {
      const all = this.entries;
      this.entries = [];
      return all;
    }
    return this.entries.splice(0, max);
  }
  get length(): number {
    return this.entries.length;
  }
}

/** What the committer needs of the store. */
export interface BatchStore {
  appendBatch(items: AppendItem[]): Promise<AppendResult[]>;
}

export interface CommitterOptions {
  maxBatch?: number;
  /** Batches running at once (each needs a connection of its own); 1 is the old one-at-a-time committer. */
  inFlight?: number;
  /**
   * A batch beyond the first starts only once this many sends wait. Each batch
   * costs PostgreSQL ~0.5 ms of CPU besides its messages' ~33 µs each
   * (bench/append.ts: batch 10 vs 100), so from ~200 messages that fixed cost
   * is under a tenth; smaller batches in parallel cost more CPU than they
   * save in waiting, and on a machine whose cores are all busy they were
   * slower than one batch at a time (PERFORMANCE.md).
   */
  minBatch?: number;
  /**
   * Batches start at least this far apart (unless minBatch sends wait): at
   * 2,000 msg/s the committer ran 1,196 commits a second of 1.7 messages
   * each, and each cost PostgreSQL ~0.4 ms of CPU whatever its size (and the
   * server a statement's write and parse), so the machine was busy with
   * commits rather than messages. After a quiet spell a send still goes at
   * once; only back-to-back commits wait, for at most this long. 0: no pacing.
   */
  gapMs?: number;
  /** A batch not committed within this long is answered E_UNAVAILABLE. */
  deadlineMs?: number;
  queue?: CommitQueue;
  onError?(error: unknown): void;
  /** Called after a failed or timed-out batch: replace the connections it ran on. */
  recover?(): void;
  /** Where each message's time in the commit path goes (queued, statement, replied), and the batches' sizes and overlap. */
  stages?: CommitStageRecorder;
  /**
   * Runs a task once this turn's work is done, just before the turn's replies
   * are written (net/outbox.ts's atTurnEnd): the "replied" stage ends there.
   * By default a setImmediate, which is as late or later.
   */
  atTurnEnd?(task: () => void): void;
}

/** See CommitterOptions.gapMs; PERFORMANCE.md "Issue 15, round 5" has the figures it was chosen by. */
export const DEFAULT_GAP_MS = 2;

const UNAVAILABLE: AppendResult = { ok: false, code: "E_UNAVAILABLE", message: "The message could not be stored now; send it again" };
const SHUTDOWN: AppendResult = { ok: false, code: "E_SHUTDOWN", message: "The server is shutting down" };

export class Committer {
  private readonly queue: CommitQueue;
  /** Conversations in a batch that is running. */
  private readonly busy = new Set<number>();
  /** Per conversation, what waits for a running batch that holds it, in arrival order. */
  private readonly parked = new Map<number, Waiting[]>();
  private parkedCount = 0;
  private running = 0;
  private scheduled = false;
  private stopped = false;
  private readonly maxBatch: number;
  private readonly inFlight: number;
  private readonly minBatch: number;
  private readonly gapMs: number;
  /** When the last batch started (performance.now()), and the timer that starts the next once the gap is over. */
  private lastStart = -Infinity;
  private gapTimer?: Timer;
  private readonly deadlineMs: number;
  private idle: (() => void)[] = [];
  private readonly stages: CommitStageRecorder;
  private readonly atTurnEnd: (task: () => void) => void;

  constructor(
    private readonly store: BatchStore,
    private readonly options: CommitterOptions = {},
  ) {
    this.maxBatch = options.maxBatch ?? 2000;
    this.inFlight = Math.max(1, options.inFlight ?? 1);
    this.minBatch = options.minBatch ?? 200;
    this.gapMs = options.gapMs ?? DEFAULT_GAP_MS;
    this.deadlineMs = options.deadlineMs ?? 10_000;
    // Fair by sender unless told otherwise: one user's backlog never sits in front of another user's message (issue 14).
    this.queue = options.queue ?? new FairQueue<Waiting, number>((w) => w.item.senderId, PER_USER_PER_BATCH);
    this.stages = options.stages ?? NO_METRICS;
    this.atTurnEnd = options.atTurnEnd ?? ((task) => void setImmediate(task));
  }

  get depth(): number {
    return this.queue.length + this.parkedCount;
  }

  append(item: AppendItem): Promise<AppendResult> {
    if (this.stopped) return Promise.resolve(SHUTDOWN);
    return new Promise((resolve) => {
      this.queue.push({ item, resolve, at: performance.now() });
      this.schedule();
    });
  }

  /**
   * Refuses new work; what is queued still commits, for up to boundMs. Then
   * whatever is left is answered E_SHUTDOWN (the senders retry elsewhere), so
   * that shutdown never waits on a database that does not answer.
   */
  async stop(boundMs = 15_000): Promise<void> {
    this.stopped = true;
    clearTimeout(this.gapTimer);
    this.gapTimer = undefined;
    const deadline = Date.now() + boundMs;
    while ((this.running > 0 || this.depth > 0) && Date.now() < deadline) {
      this.startBatches();
      let timer: Timer | undefined;
      // The timer is cleared: one per round left pending would outlive the server's stop.
      await Promise.race([new Promise<void>((resolve) => this.idle.push(resolve)), new Promise<void>((resolve) => (timer = setTimeout(resolve, Math.max(0, deadline - Date.now()))))]);
      clearTimeout(timer);
    }
    for (const w of this.queue.take(Number.MAX_SAFE_INTEGER)) w.resolve(SHUTDOWN);
    for (const list of this.parked.values()) for (const w of list) w.resolve(SHUTDOWN);
    this.parked.clear();
    this.parkedCount = 0;
  }

  /** Batches start in a microtask, so that the sends of one event-loop turn share one. */
  private schedule(): void {
    if (this.scheduled || this.running >= this.inFlight) return;
    this.scheduled = true;
    queueMicrotask(() => {
      this.scheduled = false;
      this.startBatches();
    });
  }

  private startBatches(): void {
    while (this.running < this.inFlight && (this.running === 0 || this.depth >= this.minBatch || this.stopped)) {
      if (this.depth === 0) return;
      const wait = this.lastStart + this.gapMs - performance.now();
      if (wait > 0 && this.depth < this.minBatch && !this.stopped) {
        // One timer at a time; what arrives meanwhile joins the batch it starts.
        this.gapTimer ??= setTimeout(() => {
          this.gapTimer = undefined;
          this.startBatches();
        }, wait);
        return;
      }
      const batch = this.nextBatch();
      if (batch.length === 0) return;
      this.lastStart = performance.now();
      void this.runBatch(batch);
    }
  }

  /** Parked messages whose conversation is free first, then the queue; what a running batch holds is parked. */
  private nextBatch(): Waiting[] {
    const batch: Waiting[] = [];
    const taken = new Set<number>();
    for (const [conv, list] of this.parked) {
      if (batch.length >= this.maxBatch) break;
      if (this.busy.has(conv)) continue;
      const moved = list.length <= this.maxBatch - batch.length ? list.splice(0) : list.splice(0, this.maxBatch - batch.length);
      for (const w of moved) batch.push(w);
      this.parkedCount -= moved.length;
      taken.add(conv);
      if (list.length === 0) this.parked.delete(conv);
    }
    // Parking is bounded too: past a batch's worth parked, the rest stays in the queue (and its order).
    while (batch.length < this.maxBatch && this.queue.length > 0 && this.parkedCount < this.maxBatch) {
      const want = this.maxBatch - batch.length;
      const got = this.queue.take(want);
      for (const w of got) {
        const conv = w.item.convId;
        const waiting = this.parked.get(conv);
        if (waiting) {
          waiting.push(w);
          this.parkedCount++;
        } else if (this.busy.has(conv)) {
          this.parked.set(conv, [w]);
          this.parkedCount++;
        } else {
          batch.push(w);
          taken.add(conv);
        }
      }
      // Fewer than asked with more waiting: the fair queue's share per user is
      // reached, and a heavy sender's rest waits for the next batch (short commits).
      if (got.length < want) break;
    }
    for (const conv of taken) this.busy.add(conv);
    return batch;
  }

  private async runBatch(batch: Waiting[]): Promise<void> {
    this.running++;
    const started = performance.now();
    this.stages.batchStarted(this.running);
    for (const w of batch) this.stages.stage("queued", (started - w.at) / 1000);
    let results: AppendResult[];
    try {
      results = await this.withDeadline(this.store.appendBatch(batch.map((w) => w.item)));
    } catch (error) {
      this.options.onError?.(error);
      this.options.recover?.();
      const refusal = error instanceof ChatError ? { ok: false as const, code: error.code, message: error.message } : UNAVAILABLE;
      results = batch.map(() => refusal);
    }
    const answered = performance.now();
    this.stages.stage("statement", (answered - started) / 1000, batch.length);
    // Answered before the conversations are let go: the next batch's messages in them are delivered after these.
    batch.forEach((w, i) => w.resolve(results[i]!));
    // The senders' replies (and the deliveries their handlers start) are queued by the end of this turn.
    this.atTurnEnd(() => {
      const replied = performance.now();
      this.stages.stage("replied", (replied - answered) / 1000, batch.length);
      for (const w of batch) this.stages.stage("total", (replied - w.at) / 1000);
    });
    for (const w of batch) this.busy.delete(w.item.convId);
    this.running--;
    this.startBatches();
    if (this.running === 0) for (const wake of this.idle.splice(0)) wake();
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
