/**
 * What the coordinator and its worker processes say to each other: one JSON
 * object a line, the coordinator on the worker's stdin, the worker on its stdout.
 */
import type { Pattern, Partners } from "./options";

export interface WorkerSetup {
  type: "setup";
  worker: number;
  /** The balancer to ask "where?", or, for the ceiling, the relays (user i on relay i mod n). */
  balancer?: string;
  relays?: string[];
  prefix: string;
  password: string;
  /** Global indexes of this worker's clients. */
  users: number[];
  clients: number;
  tokens: Record<string, string>;
  pattern: Pattern;
  groupSize: number;
  contacts: number;
  partners: Partners;
  size: number;
  e2e: boolean;
  /** Real MLS groups (bench/mls.ts). */
  mls: boolean;
  /** This worker's share of the rate (messages a second), or null for closed loop. */
  rate: number | null;
  window: number;
  /** Tags this run's client message ids; deliveries of other runs are ignored. */
  run: string;
  /** Send nothing: only hold the connections. */
  idle: boolean;
}

export interface WorkerStart {
  type: "start";
  /** On the shared monotonic clock (bench/clock.ts), milliseconds. */
  at: number;
  warmupMs: number;
  durationMs: number;
  tickMs: number;
  /** Server address of every client, for dm-cross. */
  placement: Record<number, string>;
}

export type ToWorker = WorkerSetup | WorkerStart | { type: "offline-login" } | { type: "finish" };

export interface Tick {
  type: "tick";
  worker: number;
  /** Interval number since the start. */
  k: number;
  sent: number;
  acked: number;
  delivered: number;
  errors: number;
  /** Deliveries of this run's messages so far, whenever sent: for the drain. */
  deliveredTotal: number;
  ackHist: string;
  deliveryHist: string;
}

export interface Ready {
  type: "ready";
  worker: number;
  tokens: Record<string, string>;
  placement: Record<number, string>;
  failed: number;
  setupMs: number;
}

export interface SendingDone {
  type: "sent";
  worker: number;
  /** Deliveries the acknowledged messages should make. */
  expected: number;
}

export interface OfflineDone {
  type: "offline-done";
  worker: number;
  replayed: number;
  ms: number;
}

export interface WorkerResult {
  type: "result";
  worker: number;
  /** Counted over the measured window (due after the warm-up). */
  sent: number;
  acked: number;
  delivered: number;
  /** Counted over the whole run. */
  sentAll: number;
  ackedAll: number;
  deliveredAll: number;
  duplicates: number;
  errors: Record<string, number>;
  ackHist: string;
  deliveryHist: string;
  /** How late each measured send was handed to its connection, after it was due. */
  lagHist: string;
  ackedDm: Record<string, string>;
  ackedGroup: Record<string, string>;
  recvDm: Record<string, string>;
  /** Keyed "receiver:sender". */
  recvGroup: Record<string, string>;
}

export type FromWorker = Ready | Tick | SendingDone | OfflineDone | WorkerResult | { type: "log"; worker: number; line: string };
