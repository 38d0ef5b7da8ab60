/**
 * One peer link's forwarded frames of an event-loop turn, sent as one
 * `deliveries` event at the turn's end instead of one `deliver` each: with two
 * servers half the messages cross, and a frame each was one more MessagePack
 * encoding and decoding, and one more frame header, a message on both sides.
 * Items keep the order they were added in, so a conversation's messages arrive
 * in order; a peer that did not say it takes batches gets `deliver` frames.
 */
import { atTurnEnd } from "../net/outbox";
import { encodeDeliveries, type WireForward } from "../protocol/deliveries-frame";

/**
 * One forwarded frame: the users it is for, the client frame as bytes (header
 * included), where a stored message sits (nil for an event such as a receipt),
 * and how often it was forwarded already.
 */
export interface Forward {
  to: number[];
  frame: Uint8Array;
  conv?: number;
  seq?: number;
  hops: number;
}

/** A batch stays well under a peer's largest frame (1 MiB by default); past this it goes at once and a new one starts. */
export const MAX_BATCH_BYTES = 256 * 1024;
export const MAX_BATCH_ITEMS = 1024;

/** The link a batch goes out on. */
export interface Notifier {
  notify(ev: string, fields: Record<string, unknown>): void;
  notifyEncoded(frame: Uint8Array): void;
}

export function wireForward(item: Forward): WireForward {
  return [item.to, item.frame, item.conv ?? null, item.seq ?? null, item.hops];
}

/** The single-frame form, for a peer that takes no batches. */
export function deliverFields(item: Forward): Record<string, unknown> {
  return { to: item.to, ...(item.conv !== undefined ? { conv: item.conv, seq: item.seq } : {}), frame: item.frame, hops: item.hops };
}

export class PeerBatch {
  private items: WireForward[] = [];
  private bytes = 0;
  private scheduled = false;
  /** Batches and frames sent, for the metrics and the bench's frames a message. */
  sent = { frames: 0, items: 0 };

  constructor(
    private readonly link: Notifier,
    /** The peer said in its hello reply that it takes `deliveries` (PROTOCOL.md). */
    private readonly batches: boolean,
  ) {}

  add(item: Forward): void {
    if (!this.batches) {
      this.sent.frames++;
      this.sent.items++;
      this.link.notify("deliver", deliverFields(item));
      return;
    }
    if (this.items.length > 0 && (this.bytes + item.frame.length > MAX_BATCH_BYTES || this.items.length >= MAX_BATCH_ITEMS)) this.flush();
    this.items.push(wireForward(item));
    this.bytes += item.frame.length;
    if (!this.scheduled) {
      this.scheduled = true;
      atTurnEnd(() => {
        this.scheduled = false;
        this.flush();
      });
    }
  }

  /** Sends what is gathered now: at the turn's end, when full, and before any other event on the link (which keeps the link's order). */
  flush(): void {
    if (this.items.length === 0) return;
    const d = this.items;
    this.items = [];
    this.bytes = 0;
    this.sent.frames++;
    this.sent.items += d.length;
    this.link.notifyEncoded(encodeDeliveries(d));
  }
}
