/**
 * Length-prefixed framing: a 4-byte big-endian length, then that many bytes.
 * The reader is an accumulator (append the chunk, read the length, loop over the
 * complete frames, keep the rest) that refuses an oversized frame from its header,
 * before buffering any of its body.
 */
import { ChatError } from "./errors";

export const HEADER_BYTES = 4;
/** Default largest payload: room for a 256 KiB file chunk and its envelope. */
export const DEFAULT_MAX_FRAME = 1024 * 1024;

export function frame(payload: Uint8Array): Uint8Array {
  const out = new Uint8Array(HEADER_BYTES + payload.length);
  // Byte by byte rather than a DataView: reading `.buffer` of a fresh small array costs more than the copy (Bun/JSC).
  const n = payload.length;
  out[0] = n >>> 24;
  out[1] = (n >>> 16) & 0xff;
  out[2] = (n >>> 8) & 0xff;
  out[3] = n & 0xff;
  out.set(payload, HEADER_BYTES);
  return out;
}

const EMPTY = new Uint8Array(0);

export class FrameReader {
  private buf: Uint8Array = EMPTY;
  private start = 0;
  private end = 0;
  /** buf is the caller's chunk, read in place during one push. */
  private borrowed = false;

  /** Settable: a connection's limit rises once it has proved who it is (net/listener.ts). */
  constructor(public maxFrame: number = DEFAULT_MAX_FRAME) {}

  /** Bytes held for a frame not yet complete. */
  get buffered(): number {
    return this.end - this.start;
  }

  /**
   * Feeds one chunk and returns the payloads it completes. Throws
   * E_FRAME_TOO_LARGE as soon as a header announces more than maxFrame.
   * The returned payloads are copies: they stay valid after the next push.
   */
  push(chunk: Uint8Array): Uint8Array[] {
    this.append(chunk);
    const frames: Uint8Array[] = [];
    this.take(frames);
    if (this.start === this.end) {
      // An idle connection keeps no buffer: 10,000 of them would otherwise hold 40 MiB of empty ones.
      this.start = this.end = 0;
      this.buf = EMPTY;
    } else if (this.borrowed) {
      // The caller may reuse its chunk: keep our own copy of the partial frame.
      this.buf = this.buf.slice(this.start, this.end);
      this.end -= this.start;
      this.start = 0;
    }
    this.borrowed = false;
    return frames;
  }

  private take(frames: Uint8Array[]): void {
    while (this.end - this.start >= HEADER_BYTES) {
      const b = this.buf;
      const s = this.start;
      const length = ((b[s]! << 24) | (b[s + 1]! << 16) | (b[s + 2]! << 8) | b[s + 3]!) >>> 0;
      if (length > this.maxFrame) {
        throw new ChatError(
          "E_FRAME_TOO_LARGE",
          `Frame of ${length} bytes is over the limit of ${this.maxFrame}`,
        );
      }
      if (this.end - s - HEADER_BYTES < length) break;
      frames.push(b.slice(s + HEADER_BYTES, s + HEADER_BYTES + length));
      this.start = s + HEADER_BYTES + length;
    }
  }

  private append(chunk: Uint8Array): void {
    const held = this.end - this.start;
    if (held === 0) {
      // Nothing held: read the chunk where it is (frames are copied out; a partial one is kept below).
      this.buf = chunk;
      this.start = 0;
      this.end = chunk.length;
      this.borrowed = true;
      return;
    }
    if (this.buf.length - this.end < chunk.length) {
      if (held + chunk.length <= this.buf.length && this.start > 0) {
        this.buf.copyWithin(0, this.start, this.end);
      } else {
        const grown = new Uint8Array(Math.max(held + chunk.length, this.buf.length * 2, 4096));
        grown.set(this.buf.subarray(this.start, this.end));
        this.buf = grown;
      }
      this.start = 0;
      this.end = held;
    }
    this.buf.set(chunk, this.end);
    this.end += chunk.length;
  }
}
