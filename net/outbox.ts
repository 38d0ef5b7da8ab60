/**
 * Outbound bytes for one socket. Writes made during one event-loop turn go out
 * as one socket.write; a short write keeps the rest until drain; and the queue
 * is bounded, so a peer that cannot keep up is cut off rather than growing memory.
 */
import type { Socket } from "bun";

export const DEFAULT_OUTBOX_LIMIT = 8 * 1024 * 1024;

export class Outbox {
  private chunks: Uint8Array[] = [];
  private queuedBytes = 0;
  private scheduled = false;
  private waitingForDrain = false;
  private closed = false;

  constructor(
    private readonly socket: Socket<any>,
    private readonly onOverflow: () => void,
    private readonly limit = DEFAULT_OUTBOX_LIMIT,
  ) {}

  get queued(): number {
    return this.queuedBytes;
  }

  /** Queues bytes; returns false (and calls onOverflow once) when over the limit. */
  push(bytes: Uint8Array): boolean {
    if (this.closed) return false;
    if (this.queuedBytes + bytes.length > this.limit) {
      this.closed = true;
      this.chunks = [];
      this.queuedBytes = 0;
      this.onOverflow();
      return false;
    }
    this.chunks.push(bytes);
    this.queuedBytes += bytes.length;
    if (!this.scheduled && !this.waitingForDrain) {
      this.scheduled = true;
      queueMicrotask(() => this.flush());
    }
    return true;
  }

  /** Writes what the socket takes now; call from the socket's drain handler too. */
  flush(): void {
    this.scheduled = false;
    this.waitingForDrain = false;
    if (this.closed || this.queuedBytes === 0) return;
    const data = this.chunks.length === 1 ? this.chunks[0]! : concat(this.chunks, this.queuedBytes);
    const written = Math.max(0, this.socket.write(data));
    if (written < data.length) {
      const rest = data.subarray(written);
      this.chunks = [rest];
      this.queuedBytes = rest.length;
      this.waitingForDrain = true;
    } else {
      this.chunks = [];
      this.queuedBytes = 0;
    }
  }

  /** Stops queuing; what is queued is dropped. */
  close(): void {
    this.closed = true;
    this.chunks = [];
    this.queuedBytes = 0;
  }
}

function concat(chunks: Uint8Array[], total: number): Uint8Array {
  const out = new Uint8Array(total);
  let offset = 0;
  for (const chunk of chunks) {
    out.set(chunk, offset);
    offset += chunk.length;
  }
  return out;
}
