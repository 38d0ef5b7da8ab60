/**
 * The server's events about people rather than messages: a read marker moved
 * on another of the user's devices, other members' delivery and read
 * positions, someone typing. Each is checked for shape and handed to the view;
 * anything malformed is dropped.
 */
import type { AckState } from "./ack-state";

export interface ReceiptEvent {
  conv: number;
  user: string;
  delivered?: number;
  read?: number;
}

export interface TypingEvent {
  conv: number;
  from: string;
  group?: string;
}

/** Where the events go (the session's options, read at each event). */
export interface UserEventSink {
  /** The read marker moved (on this device or another of the user's). */
  onRead?(conv: number, seq: number): void;
  /** Another member's device received, or they read, up to a position. */
  onReceipt?(receipt: ReceiptEvent): void;
  /** Someone in a conversation is typing (refreshed every few seconds while they type). */
  onTyping?(typing: TypingEvent): void;
}

export interface UserEventParts {
  acks: Pick<AckState, "readElsewhere">;
  /** Whether the user shows read receipts (the setting as the server last said). */
  readReceipts(): boolean;
  sink: UserEventSink;
  /** The account had a password login somewhere: its device list may have grown. */
  devicesChanged?(): void;
}

export class UserEvents {
  constructor(private readonly parts: UserEventParts) {}

  handle(ev: string, frame: Record<string, unknown>): void {
    const { sink } = this.parts;
    if (ev === "read" && typeof frame.conv === "number" && typeof frame.seq === "number") {
      this.parts.acks.readElsewhere(frame.conv, frame.seq);
      sink.onRead?.(frame.conv, frame.seq);
    } else if (ev === "receipts" && Array.isArray(frame.r)) {
      const num = (v: unknown) => (typeof v === "number" ? v : undefined);
      for (const item of frame.r as unknown[]) {
        if (!Array.isArray(item) || typeof item[0] !== "number" || typeof item[1] !== "string") continue;
        // With read receipts off, none are shown (the server stops sending them; this covers the moment between).
        sink.onReceipt?.({ conv: item[0], user: item[1], delivered: num(item[2]), read: this.parts.readReceipts() ? num(item[3]) : undefined });
      }
    } else if (ev === "typing" && typeof frame.conv === "number" && typeof frame.from === "string") {
      sink.onTyping?.({ conv: frame.conv, from: frame.from, ...(typeof frame.group === "string" ? { group: frame.group } : {}) });
    } else if (ev === "devices") {
      this.parts.devicesChanged?.();
    }
  }
}
