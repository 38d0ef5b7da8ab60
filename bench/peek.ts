/**
 * The load generator's decoder for what a server sends it: a `msg` event is
 * read only as far as the bench needs it (the conversation, the sequence
 * number and the client message id, which carries the sender, the number and
 * the time it was due), and its body, sender and recipient names are stepped
 * over, not decoded, copied or allocated. A flat reply is read by hand too
 * (bench/peek-reply.ts); everything else (other replies, other events, a
 * frame this does not expect) goes through the protocol's own decode. A
 * real client decodes every field to show the message; the bench shows
 * nothing, and decoding the whole frame was about a tenth of a worker's
 * CPU at 5,000 msg/s, CPU the servers and PostgreSQL then lacked.
 */
import { decode } from "../protocol/codec";
import { peekFlatFrame } from "./peek-reply";

/** What a peeked `msg` event holds: only the fields the bench reads. */
export interface PeekedMessage {
  conv: number;
  seq: number;
  cmid?: string;
}

const utf8 = new TextDecoder();
/** The names the peek tells apart, as bytes; a key() is an index into these. */
const NAMES = ["t", "ev", "msg", "m", "conv", "seq", "cmid"].map((s) => new TextEncoder().encode(s));
const [T, EV, MSG, M, CONV, SEQ, CMID] = [0, 1, 2, 3, 4, 5, 6];
const OTHER = -1;

/**
 * The frame as the bench needs it: a peeked `{t: "ev", ev: "msg", m}` when it
 * is one, a flat frame (a send's reply) read by hand (bench/peek-reply.ts),
 * otherwise decoded whole.
 */
export function decodeForBench(payload: Uint8Array): Record<string, unknown> {
  const m = peekMessageEvent(payload);
  return m ? { t: "ev", ev: "msg", m } : (peekFlatFrame(payload) ?? decode(payload));
}

/** The `m` of a `msg` event, or undefined when the frame is anything else or holds what this does not read. */
export function peekMessageEvent(bytes: Uint8Array): PeekedMessage | undefined {
  const r = new Reader(bytes);
  const fields = r.mapHeader();
  if (fields === undefined) return undefined;
  let isMsg = 0;
  let m: PeekedMessage | undefined;
  for (let i = 0; i < fields; i++) {
    const key = r.key();
    if (key === T) {
      if (r.key() !== EV) return undefined;
      isMsg |= 1;
    } else if (key === EV) {
      if (r.key() !== MSG) return undefined;
      isMsg |= 2;
    } else if (key === M) {
      m = r.message();
      if (!m) return undefined;
    } else if (!r.skip()) return undefined;
    if (r.failed) return undefined;
  }
  return isMsg === 3 && m && r.at === bytes.length ? m : undefined;
}

class Reader {
  at = 0;
  failed = false;
  constructor(private readonly b: Uint8Array) {}

  private byte(): number {
    if (this.at >= this.b.length) {
      this.failed = true;
      return 0xc1;
    }
    return this.b[this.at++]!;
  }

  private uint(n: number): number {
    let v = 0;
    for (let i = 0; i < n; i++) v = v * 256 + this.byte();
    return v;
  }

  mapHeader(): number | undefined {
    const c = this.byte();
    if (c >= 0x80 && c <= 0x8f) return c & 0x0f;
    if (c === 0xde) return this.uint(2);
    if (c === 0xdf) return this.uint(4);
    return undefined;
  }

  private strLength(): number | undefined {
    const c = this.byte();
    if (c >= 0xa0 && c <= 0xbf) return c & 0x1f;
    if (c === 0xd9) return this.uint(1);
    if (c === 0xda) return this.uint(2);
    if (c === 0xdb) return this.uint(4);
    return undefined;
  }

  string(): string | undefined {
    const n = this.strLength();
    if (n === undefined || this.at + n > this.b.length) return (this.failed = true), undefined;
    const start = this.at;
    this.at += n;
    return utf8.decode(this.b.subarray(start, start + n));
  }

  /** Which of the names the peek looks for comes next (OTHER for any other string), without making a string. */
  key(): number {
    const n = this.strLength();
    if (n === undefined || this.at + n > this.b.length) return (this.failed = true), OTHER;
    const b = this.b;
    const at = this.at;
    this.at += n;
    for (let k = 0; k < NAMES.length; k++) {
      const name = NAMES[k]!;
      if (name.length !== n) continue;
      let same = true;
      for (let i = 0; i < n && same; i++) same = b[at + i] === name[i];
      if (same) return k;
    }
    return OTHER;
  }

  /** Steps over a nil or an undefined (msgpackr writes that as the extension d4 00 00), if that is what comes next. */
  nil(): boolean {
    const b = this.b;
    if (b[this.at] === 0xc0) return ++this.at > 0;
    if (b[this.at] === 0xd4 && b[this.at + 1] === 0 && b[this.at + 2] === 0) return (this.at += 3) > 0;
    return false;
  }

  int(): number | undefined {
    const c = this.byte();
    if (c <= 0x7f) return c;
    if (c >= 0xe0) return c - 0x100;
    switch (c) {
      case 0xcc:
        return this.uint(1);
      case 0xcd:
        return this.uint(2);
      case 0xce:
        return this.uint(4);
      case 0xcf:
        return this.uint(8);
      case 0xcb: {
        if (this.at + 8 > this.b.length) return (this.failed = true), undefined;
        const v = new DataView(this.b.buffer, this.b.byteOffset + this.at, 8).getFloat64(0);
        this.at += 8;
        return v;
      }
    }
    // Negative numbers past -32 are no conversation or sequence number.
    return undefined;
  }

  message(): PeekedMessage | undefined {
    const fields = this.mapHeader();
    if (fields === undefined) return undefined;
    let conv: number | undefined;
    let seq: number | undefined;
    let cmid: string | undefined;
    for (let i = 0; i < fields; i++) {
      const key = this.key();
      if (key === CONV) conv = this.int();
      else if (key === SEQ) seq = this.int();
      else if (key === CMID) cmid = this.nil() ? undefined : this.string();
      else if (!this.skip()) return undefined;
      if (this.failed) return undefined;
    }
    return conv === undefined || seq === undefined ? undefined : { conv, seq, ...(cmid !== undefined ? { cmid } : {}) };
  }

  /** Steps over one value of any kind; false for what MessagePack does not allow. */
  skip(): boolean {
    const c = this.byte();
    if (c <= 0x7f || c >= 0xe0 || c === 0xc0 || c === 0xc2 || c === 0xc3) return true;
    if (c >= 0xa0 && c <= 0xbf) return this.over(c & 0x1f);
    if (c >= 0x80 && c <= 0x8f) return this.many((c & 0x0f) * 2);
    if (c >= 0x90 && c <= 0x9f) return this.many(c & 0x0f);
    switch (c) {
      case 0xcc:
      case 0xd0:
        return this.over(1);
      case 0xcd:
      case 0xd1:
        return this.over(2);
      case 0xce:
      case 0xd2:
      case 0xca:
        return this.over(4);
      case 0xcf:
      case 0xd3:
      case 0xcb:
        return this.over(8);
      case 0xc4:
      case 0xd9:
        return this.over(this.uint(1));
      case 0xc5:
      case 0xda:
        return this.over(this.uint(2));
      case 0xc6:
      case 0xdb:
        return this.over(this.uint(4));
      case 0xdc:
        return this.many(this.uint(2));
      case 0xdd:
        return this.many(this.uint(4));
      case 0xde:
        return this.many(this.uint(2) * 2);
      case 0xdf:
        return this.many(this.uint(4) * 2);
      // Extensions (msgpackr's undefined, timestamps): a type byte and the data.
      case 0xd4:
        return this.over(2);
      case 0xd5:
        return this.over(3);
      case 0xd6:
        return this.over(5);
      case 0xd7:
        return this.over(9);
      case 0xd8:
        return this.over(17);
      case 0xc7:
        return this.over(this.uint(1) + 1);
      case 0xc8:
        return this.over(this.uint(2) + 1);
      case 0xc9:
        return this.over(this.uint(4) + 1);
    }
    return false;
  }

  private over(n: number): boolean {
    if (this.failed || this.at + n > this.b.length) return !(this.failed = true);
    this.at += n;
    return true;
  }

  private many(n: number): boolean {
    for (let i = 0; i < n; i++) if (!this.skip() || this.failed) return false;
    return true;
  }
}
