/**
 * Outbound bytes for one socket. Writes made during one event-loop turn go out
 * as one socket.write (each write is a TLS record and a system call: 30% of a
 * server's profile samples under load); a short write keeps the rest until drain; and the queue
 * is bounded, so a peer that cannot keep up is cut off rather than growing
 * memory. Frames are kept whole: when the queue is cut, a frame already begun
 * is finished, so a last word (a bye) still arrives on a frame boundary.
 */
import type { Socket } from "bun";
import type { OutboxPool, PooledOutbox } from "./outbox-pool";

export const DEFAULT_OUTBOX_LIMIT = 8 * 1024 * 1024;
/** How long a connection being cut off gets to take its last frames. */
const FINISH_GRACE_MS = 5_000;

export class Outbox implements PooledOutbox {
  /** Whole frames, except that the first may be the unsent end of a frame begun. */
  private chunks: Uint8Array[] = [];
  private headStarted = false;
  private queuedBytes = 0;
  private scheduled = false;
  private waitingForDrain = false;
  private closed = false;
  private finishing = false;

  constructor(
    private readonly socket: Socket<any>,
    private readonly onOverflow: () => void,
    private readonly limit = DEFAULT_OUTBOX_LIMIT,
    /** The listener's bound on all outboxes together, and what to do when this one is cut by it. */
    private readonly pool?: { pool: OutboxPool; onCut(): void },
  ) {}

  get queued(): number {
    return this.queuedBytes;
  }

  get closing(): boolean {
    return this.closed;
  }

  cutOff(): void {
    this.pool?.onCut();
  }

  /** Every change of the queue goes through here, so the pool's total stays exact; only outboxes holding bytes are in it. */
  private setQueued(bytes: number): void {
    const before = this.queuedBytes;
    this.queuedBytes = bytes;
    if (!this.pool || bytes === before) return;
    const { pool } = this.pool;
    if (before === 0) pool.join(this);
    else if (bytes === 0) pool.leave(this);
    pool.changed(bytes - before);
  }

  /** Queues one frame; returns false (and calls onOverflow once) when over the limit. */
  push(bytes: Uint8Array): boolean {
    if (this.closed) return false;
    // Only bytes the socket refused count against the limit: try it first.
    if (this.queuedBytes + bytes.length > this.limit && !this.waitingForDrain) this.flush();
    if (this.queuedBytes + bytes.length > this.limit) {
      this.closed = true;
      this.onOverflow();
      return false;
    }
    this.chunks.push(bytes);
    this.setQueued(this.queuedBytes + bytes.length);
    // The pool may have cut this one (it held the most): then the frame was not queued after all.
    if (this.closed) return false;
    if (!this.scheduled && !this.waitingForDrain) {
      this.scheduled = true;
      flushLater(this);
    }
    return true;
  }

  /** The turn's flush: nothing to do when a drain or a limit already wrote it. */
  flushIfScheduled(): void {
    if (this.scheduled) this.flush();
  }

  /** Writes what the socket takes now; call from the socket's drain handler too. */
  flush(): void {
    this.scheduled = false;
    this.waitingForDrain = false;
    if (this.queuedBytes === 0) {
      if (this.finishing) this.socket.end();
      return;
    }
    const data = this.chunks.length === 1 ? this.chunks[0]! : concat(this.chunks, this.queuedBytes);
    scratchInUse++;
    let written: number;
    try {
      written = Math.max(0, this.socket.write(data));
    } finally {
      scratchInUse--;
    }
    this.setQueued(this.queuedBytes - written);
    while (written > 0 && this.chunks.length > 0) {
      const first = this.chunks[0]!;
      if (written >= first.length) {
        written -= first.length;
        this.chunks.shift();
        this.headStarted = false;
      } else {
        this.chunks[0] = first.subarray(written);
        this.headStarted = true;
        written = 0;
      }
    }
    if (this.queuedBytes > 0) this.waitingForDrain = true;
    else if (this.finishing) this.socket.end();
  }

  /**
   * Adds `last` after what is queued (or, with `cut`, after just the frame being
   * sent) and closes the socket once it is out, or after a grace period.
   */
  finish(last: Uint8Array, cut = false): void {
    if (this.finishing) return;
    this.closed = true;
    this.finishing = true;
    if (cut) this.chunks = this.headStarted && this.chunks.length > 0 ? [this.chunks[0]!] : [];
    this.chunks.push(last);
    this.setQueued(this.chunks.reduce((n, c) => n + c.length, 0));
    setTimeout(() => this.socket.terminate(), FINISH_GRACE_MS).unref();
    if (!this.waitingForDrain) this.flush();
  }

  /** Stops queuing; what is queued is dropped. */
  close(): void {
    this.closed = true;
    this.chunks = [];
    this.setQueued(0);
  }
}

/**
 * The outboxes written to during this turn, flushed together once it is over
 * (setImmediate: after the I/O callbacks and every promise continuation they
 * started). A microtask flushed too early: a commit's deliveries went out
 * before the replies its promise continuations made a few hops later, so one
 * connection got two writes where one would do. One timer for all of them, not
 * one a socket. setImmediate callbacks run in the order they were made, so a
 * look scheduled after a push (Connection.whenDrained) comes after its flush.
 */
let due: Outbox[] = [];
/** Work that queues frames once the turn's other work is done (atTurnEnd), run just before the flush. */
let tasks: (() => void)[] = [];
let turnScheduled = false;

function flushLater(outbox: Outbox): void {
  due.push(outbox);
  scheduleTurnEnd();
}

/**
 * Runs `task` at the end of this turn, before the outboxes are flushed, so
 * that the frames it queues go out in this turn's writes. For what gathers a
 * turn's items into one frame (server/peer-batch.ts): a setImmediate of its
 * own, made after the flush's, would put its frame a whole loop later.
 */
export function atTurnEnd(task: () => void): void {
  tasks.push(task);
  scheduleTurnEnd();
}

function scheduleTurnEnd(): void {
  if (turnScheduled) return;
  turnScheduled = true;
  setImmediate(flushDue);
}

function flushDue(): void {
  // Tasks run first and may queue more tasks or frames: those still go out in this flush.
  while (tasks.length > 0) {
    const run = tasks;
    tasks = [];
    for (const task of run) {
      try {
        task();
      } catch (error) {
        // One failing task must not keep every socket's bytes from going out.
        console.error("atTurnEnd task failed:", error);
      }
    }
  }
  turnScheduled = false;
  const now = due;
  due = [];
  for (const outbox of now) outbox.flushIfScheduled();
}

/**
 * The turn's write, gathered in one array kept for the next: socket.write has
 * taken or refused every byte of it when it returns (what it refused is still
 * in `chunks`), so nothing refers to it after, and a fresh array per write was
 * an allocation per connection per turn. Not zeroed: every byte is overwritten.
 * A write larger than this is made in an array of its own, so that a replay's
 * burst does not keep megabytes. A flush made from inside a write (a callback
 * of the socket's) gets an array of its own too.
 */
const SCRATCH_MAX = 256 * 1024;
let scratch = Buffer.allocUnsafeSlow(16 * 1024);
let scratchInUse = 0;

function concat(chunks: Uint8Array[], total: number): Uint8Array {
  let out: Uint8Array;
  if (total > SCRATCH_MAX || scratchInUse > 0) out = Buffer.allocUnsafe(total);
  else {
    if (scratch.length < total) scratch = Buffer.allocUnsafeSlow(Math.min(SCRATCH_MAX, Math.max(total, scratch.length * 2)));
    out = scratch.subarray(0, total);
  }
  let offset = 0;
  for (const chunk of chunks) {
    out.set(chunk, offset);
    offset += chunk.length;
  }
  return out;
}
