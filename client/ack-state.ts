/**
 * The acknowledgement and read markers of one device: what it received (kept
 * in its store) and what its person read, what of that the server already
 * knows, and what still has to be told. Conversations whose messages wait for
 * the user (a contact's key changed) are frozen: nothing past the last message
 * shown there is acknowledged or marked read. No network and no timers here:
 * the connection takes a batch, sends it, and says how it went.
 */
import type { LocalStore } from "./store";

/** The positions this part keeps on the device. */
export type PositionStore = Pick<LocalStore, "positions" | "readOf" | "received" | "read">;

/** One round of markers for the server: [conversation, sequence number] pairs. */
export interface AckBatch {
  acks: [number, number][];
  read: [number, number][];
}

export class AckState {
  /** What this device received, and what the person read, not yet told to the server. */
  private readonly toAck = new Map<number, number>();
  private readonly toRead = new Map<number, number>();
  /** The server's positions as last known (from the login, then from each batch it took). */
  private readonly acked = new Map<number, number>();
  private readonly ackedRead = new Map<number, number>();
  /** Per frozen conversation, the last position that may be acknowledged or read. */
  private readonly frozen = new Map<number, number>();

  constructor(private readonly store: PositionStore) {}

  /** This device kept the message at `seq`: the server may stop replaying it. False when nothing new is to be told. */
  received(conv: number, seq: number): boolean {
    if (this.frozen.has(conv)) return false;
    this.store.received(conv, seq);
    raise(this.toAck, conv, seq);
    return true;
  }

  /**
   * A person was shown everything from others up to `seq`: the read marker,
   * shared by all of the user's devices, moves there (never past a freeze,
   * never back). False when it did not move.
   */
  read(conv: number, seq: number): boolean {
    const held = this.frozen.get(conv);
    if (held !== undefined) seq = Math.min(seq, held);
    if (seq <= this.store.readOf(conv)) return false;
    this.store.read(conv, seq);
    raise(this.toRead, conv, seq);
    return true;
  }

  /** Another device of the user moved the read marker: the server has it already. */
  readElsewhere(conv: number, seq: number): void {
    this.store.read(conv, seq);
  }

  /** Nothing in `conv` past `upTo` is acknowledged or read until thawed; a second freeze keeps the first position. */
  freeze(conv: number, upTo: number): void {
    if (!this.frozen.has(conv)) this.frozen.set(conv, upTo);
  }

  thaw(conv: number): void {
    this.frozen.delete(conv);
  }

  isFrozen(conv: number): boolean {
    return this.frozen.has(conv);
  }

  /** The login's word on the server's positions: it may know of reads made on another device. */
  serverSaid(cursors: Record<string, number>, read: Record<string, number>): void {
    this.acked.clear();
    this.ackedRead.clear();
    for (const [conv, seq] of Object.entries(cursors)) this.acked.set(Number(conv), seq);
    for (const [conv, seq] of Object.entries(read)) {
      this.store.read(Number(conv), seq);
      this.ackedRead.set(Number(conv), seq);
    }
  }

  /**
   * Queues every conversation where what this device kept, or what the person
   * read, is past what the server last said it has (after a login: what was
   * shown before a cut but never acknowledged).
   */
  queueUnacknowledged(): void {
    for (const [conv, local] of this.store.positions()) {
      if (this.frozen.has(conv)) continue;
      if (local.received > (this.acked.get(conv) ?? 0) && local.received > (this.toAck.get(conv) ?? 0)) this.toAck.set(conv, local.received);
      if (local.read > (this.ackedRead.get(conv) ?? 0) && local.read > (this.toRead.get(conv) ?? 0)) this.toRead.set(conv, local.read);
    }
  }

  /** Whether anything waits to be told. */
  get waiting(): boolean {
    return this.toAck.size > 0 || this.toRead.size > 0;
  }

  /** Whether a read marker waits: it goes out sooner than what was only received (client/ack-sender.ts). */
  get readWaiting(): boolean {
    return this.toRead.size > 0;
  }

  /** Everything waiting, as one batch to send; it is no longer waiting until failed() puts it back. */
  take(): AckBatch | undefined {
    if (!this.waiting) return undefined;
    const batch = { acks: [...this.toAck], read: [...this.toRead] };
    this.toAck.clear();
    this.toRead.clear();
    return batch;
  }

  /** The server took the batch. */
  confirmed(batch: AckBatch): void {
    for (const [conv, seq] of batch.acks) raise(this.acked, conv, seq);
    for (const [conv, seq] of batch.read) raise(this.ackedRead, conv, seq);
  }

  /** The batch did not reach the server: it waits again (merged with anything newer). */
  failed(batch: AckBatch): void {
    for (const [conv, seq] of batch.acks) raise(this.toAck, conv, seq);
    for (const [conv, seq] of batch.read) raise(this.toRead, conv, seq);
  }
}

function raise(map: Map<number, number>, conv: number, seq: number): void {
  if ((map.get(conv) ?? 0) < seq) map.set(conv, seq);
}
