/**
 * Acknowledgements: "this device has everything up to N in conversation C"
 * (its delivery cursor) and "the person has read up to N" (the read marker).
 *
 * Read markers are written at once: gathered for a few milliseconds, written
 * in one statement, answered after the commit. What a device only received
 * is held here and written every few seconds (RECEIVED_HOLD_MS), and at once
 * when the device disconnects, when its client asks (`ack {flush: true}`, at
 * login and when it leaves) and at shutdown: each (device, conversation) an
 * acknowledgement moves is a cursor row, and with a thousand clients the
 * client's own one-second wait still left about one row a delivered message
 * (PERFORMANCE.md, issue 15 round 5). The trade: a server killed with marks
 * held loses them, and the device is replayed those messages again at its
 * next login (dropped by id). Nothing accepted is lost, and nothing is
 * marked read: read markers are never held. Delivery receipts still go out
 * live, from the marks as they arrive.
 */
import { ChatError } from "../protocol/errors";
import type { CursorStore, Moved } from "./cursor-store";

/** How long what a device received waits here before it is written (see the header). */
export const RECEIVED_HOLD_MS = 5_000;
/**
 * Held rows written by one statement at most. Statements go one at a time,
 * and a read marker waiting behind held rows waits for at most one chunk.
 */
const HELD_CHUNK = 2_000;

type Received = Moved & { deviceId: number };

interface Ack {
  userId: number;
  deviceId: number;
  read: [number, number][];
  done(error?: unknown): void;
}

export type OnMoved = (delivered: Moved[], read: Moved[]) => void;

export interface AcksOptions {
  /** How long received marks are held (default RECEIVED_HOLD_MS). */
  holdMs?: number;
  /** How long read markers gather before their statement (default 5 ms). */
  delayMs?: number;
  log?(line: string): void;
}

export class Acks {
  /** Waiting for the next statement, answered after it commits. */
  private live: Ack[] = [];
  /** Held marks let go (a disconnect, a flush): written with the next live statement. */
  private released: Received[] = [];
  /** deviceId -> its user and conv -> the highest position received and not yet written. */
  private held = new Map<number, { userId: number; convs: Map<number, number> }>();
  /** Held marks whose time came, written a chunk a statement after anything live. */
  private draining: Received[] = [];
  private liveTimer?: Timer;
  private holdTimer?: Timer;
  /**
   * The statements in flight. One at a time: overlapping statements of one
   * server update the same rows (a cursor, acknowledged again), so they
   * waited on each other's row locks, and the waits grew with the load.
   */
  private pumping?: Promise<void>;
  private readonly holdMs: number;
  private readonly delayMs: number;
  private readonly log: (line: string) => void;
  /** Shut down: nothing more is held or written (no timer is left behind the database's close). */
  private closed = false;

  constructor(
    private readonly store: Pick<CursorStore, "acknowledge">,
    private readonly onMoved: OnMoved = () => {},
    options: AcksOptions = {},
  ) {
    this.holdMs = options.holdMs ?? RECEIVED_HOLD_MS;
    this.delayMs = options.delayMs ?? 5;
    this.log = options.log ?? (() => {});
  }

  /**
   * One device's acknowledgement. Resolves at once when it holds only received
   * marks; with read markers, or with `flush` (this device's held marks are
   * written now), once they are committed.
   */
  ack(userId: number, deviceId: number, received: [number, number][], read: [number, number][], flush = false): Promise<void> {
    if (this.closed) return Promise.reject(new ChatError("E_SHUTDOWN", "The server is shutting down; acknowledge again after the next login"));
    const moved = this.hold(userId, deviceId, received);
    if (moved.length > 0) this.onMoved(moved, []);
    if (flush) this.release(deviceId);
    if (read.length === 0 && !flush) return Promise.resolve();
    return new Promise((resolve, reject) => {
      this.live.push({ userId, deviceId, read, done: (e) => (e ? reject(e) : resolve()) });
      this.liveTimer ??= setTimeout(() => void this.pump(), this.delayMs);
    });
  }

  /** The device is gone from this server (its connection closed): what it received is written now. */
  release(deviceId: number): void {
    if (this.closed) return;
    const mine = this.held.get(deviceId);
    if (!mine) return;
    this.held.delete(deviceId);
    for (const [convId, seq] of mine.convs) this.released.push({ userId: mine.userId, deviceId, convId, seq });
    this.liveTimer ??= setTimeout(() => void this.pump(), this.delayMs);
  }

  /** Writes everything, held marks too; resolves when the statements are done. */
  async flush(): Promise<void> {
    this.drain();
    await this.pump();
  }

  /** Shutdown: everything is written, and nothing is taken after (the next login acknowledges it again). */
  async close(): Promise<void> {
    await this.flush();
    this.closed = true;
  }

  /** Marks held, highest per (device, conversation); returns those that moved past what was held. */
  private hold(userId: number, deviceId: number, received: [number, number][]): Moved[] {
    if (received.length === 0) return [];
    let mine = this.held.get(deviceId);
    if (!mine) this.held.set(deviceId, (mine = { userId, convs: new Map() }));
    const moved: Moved[] = [];
    for (const [convId, seq] of received) {
      if ((mine.convs.get(convId) ?? -1) >= seq) continue;
      mine.convs.set(convId, seq);
      moved.push({ userId, convId, seq });
    }
    this.holdTimer ??= setTimeout(() => {
      this.drain();
      void this.pump();
    }, this.holdMs);
    return moved;
  }

  /** Every held mark becomes due. */
  private drain(): void {
    clearTimeout(this.holdTimer);
    this.holdTimer = undefined;
    for (const [deviceId, { userId, convs }] of this.held) {
      for (const [convId, seq] of convs) this.draining.push({ userId, deviceId, convId, seq });
    }
    this.held.clear();
  }

  /** Runs statements, one at a time, until nothing is waiting: what is live first. */
  private pump(): Promise<void> {
    clearTimeout(this.liveTimer);
    this.liveTimer = undefined;
    if (this.pumping) return this.pumping;
    if (!this.waiting) return Promise.resolve();
    // Assigned before its first await can end it: the loop's finally always runs after this.
    this.pumping = (async () => {
      try {
        await Promise.resolve();
        while (this.waiting) {
          if (this.live.length > 0 || this.released.length > 0) await this.writeLive();
          else await this.writeHeld(this.draining.splice(0, HELD_CHUNK));
        }
      } finally {
        this.pumping = undefined;
      }
    })();
    return this.pumping;
  }

  private get waiting(): boolean {
    return this.live.length > 0 || this.released.length > 0 || this.draining.length > 0;
  }

  private async writeLive(): Promise<void> {
    const batch = this.live;
    const released = this.released;
    this.live = [];
    this.released = [];
    const read = highest(batch.flatMap((a) => a.read.map(([convId, seq]) => ({ key: a.userId, userId: a.userId, deviceId: a.deviceId, convId, seq }))));
    try {
      // Delivery receipts went out as the marks came (hold): only the read markers that moved are handed on.
      const { read: marked } = await this.store.acknowledge(released, read);
      batch.forEach((a) => a.done());
      if (marked.length > 0) this.onMoved([], marked);
    } catch (error) {
      this.unwritten(released);
      batch.forEach((a) => a.done(error));
    }
  }

  private async writeHeld(rows: Received[]): Promise<void> {
    try {
      await this.store.acknowledge(rows, []);
    } catch (error) {
      this.log(`held acknowledgements: ${error}`);
      this.unwritten(rows);
    }
  }

  /** Marks a failed statement did not write are held again, for the next time (they only move forward). */
  private unwritten(rows: Received[]): void {
    if (this.closed) return;
    for (const row of rows) this.hold(row.userId, row.deviceId, [[row.convId, row.seq]]);
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
