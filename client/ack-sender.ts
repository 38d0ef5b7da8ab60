/**
 * Sends the acknowledgement state (./ack-state.ts) to the server: shortly
 * after something new is kept or read, so that one request covers what
 * arrives meanwhile in every conversation; in frames of at most MAX_ACKS
 * pairs; again on a timer when a batch fails while connected (after a cut,
 * the next login sends it).
 */
import { MAX_ACKS } from "../protocol/messages";
import type { AckState } from "./ack-state";

/**
 * How long a read marker waits before it goes out, so that one ack covers
 * what else is read or arrives meanwhile. Read receipts and the user's other
 * devices see it this much later.
 */
export const ACK_DELAY_MS = 100;
/**
 * How long an acknowledgement of what was only received waits (no read
 * marker in it): long enough that one covers many messages of a busy
 * conversation. Each (device, conversation) an ack moves is a cursor row
 * PostgreSQL writes, and at 100 ms that was 0.5-0.9 rows a delivered message
 * (PERFORMANCE.md, issue 15 round 4). The cost: a "delivered" receipt up to
 * this much later, and what a crash in between shows again at the next
 * login (dropped by id, never shown twice).
 */
export const RECEIVED_ACK_DELAY_MS = 1_000;
/** A failed batch is tried again after this long, while connected. */
const RETRY_MS = 1_000;

/** The link acknowledgements go out on. */
export interface AckLink {
  request(op: string, args: Record<string, unknown>): Promise<Record<string, unknown>>;
}

/** What the sender needs around it. */
export interface AckSenderParts {
  acks: Pick<AckState, "take" | "confirmed" | "failed" | "waiting" | "readWaiting">;
  /** The link now up, or none. */
  link(): AckLink | undefined;
  /** The session is closing: a failed batch is not tried again on a timer. */
  closing(): boolean;
  /** Resolves when every message received so far has been handled (and its acknowledgement queued). */
  idle(): Promise<void>;
}

export class AckSender {
  private timer?: Timer;
  /** When the pending timer fires (performance.now()). */
  private due = 0;
  private stopped = false;
  private inFlight: Promise<unknown> = Promise.resolve();

  constructor(private readonly parts: AckSenderParts) {}

  /**
   * Something new waits to be acknowledged: it goes out shortly, with whatever
   * else comes meanwhile; a read marker sooner than what was only received,
   * and a read coming while a longer wait runs brings it forward.
   */
  soon(): void {
    if (this.stopped) return;
    const delay = this.parts.acks.readWaiting ? ACK_DELAY_MS : RECEIVED_ACK_DELAY_MS;
    const due = performance.now() + delay;
    if (this.timer !== undefined && this.due <= due) return;
    clearTimeout(this.timer);
    this.due = due;
    this.timer = setTimeout(() => this.now(), delay);
  }

  /**
   * Everything waiting goes out now (if connected); `settled` waits for it.
   * With `durable`, the server writes what this device received before it
   * answers, where it would otherwise hold it a few seconds (PROTOCOL.md):
   * at login, so that the replay starts past it, and when leaving.
   */
  now(durable = false): void {
    this.cancel();
    const link = this.parts.link();
    if (!link) return;
    const batch = this.parts.acks.take();
    if (!batch) return;
    const requests: Promise<unknown>[] = [];
    for (let i = 0; i < Math.max(batch.acks.length, batch.read.length); i += MAX_ACKS) {
      const a = batch.acks.slice(i, i + MAX_ACKS);
      const r = batch.read.slice(i, i + MAX_ACKS);
      requests.push(link.request("ack", { ...(a.length ? { acks: a } : {}), ...(r.length ? { read: r } : {}), ...(durable ? { flush: true } : {}) }));
    }
    this.inFlight = Promise.all([this.inFlight, ...requests]).then(
      () => this.parts.acks.confirmed(batch),
      () => {
        this.parts.acks.failed(batch);
        // Tried again on a timer while connected; after a cut, the next login sends it.
        if (this.parts.link() && !this.parts.closing() && this.timer === undefined) {
          this.due = performance.now() + RETRY_MS;
          this.timer = setTimeout(() => this.now(), RETRY_MS);
        }
      },
    );
  }

  /** Resolves when every batch sent so far has been answered (or failed). */
  settled(): Promise<unknown> {
    return this.inFlight;
  }

  /**
   * Waits until every shown message is acknowledged to the server: a message
   * shown while an ack was in flight starts another, which is waited for too.
   * Not connected, what is left waits for the next connection.
   */
  async flush(): Promise<void> {
    for (;;) {
      await this.parts.idle();
      if (!this.parts.link()) return;
      this.cancel();
      this.now(true);
      const inFlight = this.inFlight;
      await inFlight;
      if (!this.parts.acks.waiting && inFlight === this.inFlight) return;
    }
  }

  private cancel(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
  }

  /** Leaving: no timer is left pending, or set later (one would keep a one-shot command's process alive). */
  stop(): void {
    this.cancel();
    this.stopped = true;
  }
}
