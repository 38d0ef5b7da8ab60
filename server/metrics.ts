/**
 * A chat server's Prometheus metrics. The parts that count take only the
 * recorder they need (DeliveryRecorder, CommitRecorder, RefusalRecorder);
 * levels that already live somewhere (connections, outbox bytes, peer links,
 * the commit queue) are read when scraped instead of being kept twice.
 * No label ever carries a user, conversation or message id: only codes.
 */
import { Counter, Gauge, Histogram, Registry } from "prom-client";
import { WeightedHistogram } from "./stage-histogram";

export interface DeliveryRecorder {
  /** One message handed to one recipient's connection. */
  delivered(): void;
}

export interface CommitRecorder {
  /** One group-commit round trip: how many messages went in, how many were newly stored (not retries), how long it took. */
  committed(batch: number, stored: number, seconds: number): void;
}

/** A message's stages in the commit path (server/committer.ts), each ending where the next begins. */
export type CommitStage =
  /** reached the committer → its batch started (waiting for a batch, or behind a batch holding its conversation) */
  | "queued"
  /** batch started → the store answered: the statement and its commit (one round trip and its fsync) */
  | "statement"
  /** the store answered → the end of that turn, when the replies are written (the turn's other work first) */
  | "replied"
  /** reached the committer → replied */
  | "total";

export interface CommitStageRecorder {
  /** A batch started, with `inFlight` batches running (itself included); its size is chatterbox_commit_batch_messages. */
  batchStarted(inFlight: number): void;
  /** `count` messages spent `seconds` in this stage. */
  stage(stage: CommitStage, seconds: number, count?: number): void;
}

export interface RefusalRecorder {
  /** A request answered with an error. */
  refused(code: string, op?: string, requestId?: number): void;
}

/** What the scrape reads from the running server. */
export interface ServerLevels {
  connections(): number;
  sessions(): number;
  outboxBytes(): number;
  peerLinks(): number;
  commitQueue(): number;
}

/** Records nothing: for parts built without metrics. */
export const NO_METRICS: DeliveryRecorder & CommitRecorder & CommitStageRecorder & RefusalRecorder = {
  delivered() {},
  committed() {},
  batchStarted() {},
  stage() {},
  refused() {},
};

// Group commit takes up to 2,000 messages; round trips range from well under a millisecond to seconds under load.
const BATCH_BUCKETS = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000];
const LATENCY_BUCKETS = [0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5];
// Finer: the stages are read for a tail of a few milliseconds (the bench prints their percentiles from these).
const STAGE_BUCKETS = [0.0001, 0.00025, 0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1, 2.5, 5, 10];
const STAGES: CommitStage[] = ["queued", "statement", "replied", "total"];

export class ServerMetrics implements DeliveryRecorder, CommitRecorder, CommitStageRecorder, RefusalRecorder {
  readonly registry = new Registry();
  private readonly stored = new Counter({ name: "chatterbox_messages_stored_total", help: "Messages committed to the database", registers: [this.registry] });
  /**
   * Counted in a plain number and handed to the counter when it is read: an
   * inc() on every delivery was 1.6% of a server's profile under load.
   */
  private deliveredCount = 0;
  private deliveredReported = 0;
  private readonly deliveredTotal = new Counter({
    name: "chatterbox_messages_delivered_total",
    help: "Messages pushed live to a recipient's connection on this server",
    registers: [this.registry],
    collect: () => {
      this.deliveredTotal.inc(this.deliveredCount - this.deliveredReported);
      this.deliveredReported = this.deliveredCount;
    },
  });
  private readonly batchSize = new Histogram({
    name: "chatterbox_commit_batch_messages",
    help: "Messages per group-commit transaction",
    buckets: BATCH_BUCKETS,
    registers: [this.registry],
  });
  private readonly latency = new Histogram({
    name: "chatterbox_commit_duration_seconds",
    help: "Time of one group-commit transaction, from the statement to the commit",
    buckets: LATENCY_BUCKETS,
    registers: [this.registry],
  });
  private readonly stageHistogram = new WeightedHistogram<CommitStage>({
    name: "chatterbox_commit_stage_seconds",
    help: "Each message's time in one stage of the commit path: queued (for a batch), statement (the batch's round trip and commit), replied (to the end of that turn, when the replies are written), total",
    label: "stage",
    values: STAGES,
    buckets: STAGE_BUCKETS,
    registers: [this.registry],
  });
  private readonly inFlight = new Histogram({
    name: "chatterbox_commit_batches_in_flight",
    help: "Batches running when a group commit started, itself included",
    buckets: [1, 2, 3, 4, 6, 8, 16],
    registers: [this.registry],
  });
  private readonly reads = new Counter({
    name: "chatterbox_reads_total",
    help: "History, fetch and file-chunk reads, by the database that answered (primary or replica)",
    labelNames: ["source"],
    registers: [this.registry],
  });
  private readonly errors = new Counter({
    name: "chatterbox_errors_total",
    help: "Error replies and closing errors, by protocol error code",
    labelNames: ["code"],
    registers: [this.registry],
  });

  constructor(levels: ServerLevels) {
    const gauge = (name: string, help: string, read: () => number) =>
      new Gauge({ name, help, registers: [this.registry], collect() { this.set(read()); } });
    gauge("chatterbox_connections", "Open client and peer connections accepted by this server", levels.connections);
    gauge("chatterbox_sessions", "Users logged in on this server", levels.sessions);
    gauge("chatterbox_outbox_bytes", "Bytes queued for slow sockets, summed over this server's connections", levels.outboxBytes);
    gauge("chatterbox_peer_links", "Open links from this server to other servers", levels.peerLinks);
    gauge("chatterbox_commit_queue_messages", "Messages waiting for the next group commit", levels.commitQueue);
  }

  delivered(): void {
    this.deliveredCount++;
  }

  committed(batch: number, stored: number, seconds: number): void {
    this.batchSize.observe(batch);
    this.latency.observe(seconds);
    if (stored > 0) this.stored.inc(stored);
  }

  batchStarted(inFlight: number): void {
    this.inFlight.observe(inFlight);
  }

  stage(stage: CommitStage, seconds: number, count = 1): void {
    this.stageHistogram.observe(stage, seconds, count);
  }

  refused(code: string): void {
    this.errors.inc({ code });
  }

  read(source: "primary" | "replica"): void {
    this.reads.inc({ source });
  }
}
