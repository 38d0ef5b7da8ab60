/**
 * A MessagePack writer for frames whose size is worked out first: one array
 * of exactly the frame's size, its 4-byte length in front, each byte written
 * once (protocol/message-frame.ts, protocol/deliveries-frame.ts). For the
 * hottest frames only; everything else goes through msgpackr (protocol/codec.ts).
 */
const TWO_32 = 2 ** 32;

/**
 * Scratch for a float64 or an int64: written here and copied out byte by byte.
 * A DataView over the frame read `.buffer` of a fresh small array, which makes
 * JSC give it a buffer of its own: 3% of a server's profile, for the `at` of
 * every message (a float, milliseconds with a fraction).
 */
const scratch = new Float64Array(1);
const scratchBytes = new Uint8Array(scratch.buffer);
const scratchInt = new BigInt64Array(scratch.buffer);
/** Index of the most significant byte first: MessagePack is big-endian, the scratch is the machine's order. */
const BIG_ENDIAN_ORDER = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1 ? [7, 6, 5, 4, 3, 2, 1, 0] : [0, 1, 2, 3, 4, 5, 6, 7];

/** UTF-8 bytes of `s`: counted by hand while it is ASCII, as names nearly always are. */
export function utf8Size(s: string): number {
  for (let i = 0; i < s.length; i++) if (s.charCodeAt(i) >= 0x80) return Buffer.byteLength(s, "utf8");
  return s.length;
}

export const sizeOf = {
  int(v: number): number {
    if (!Number.isSafeInteger(v)) return 9;
    if (v >= 0) return v < 0x80 ? 1 : v < 0x100 ? 2 : v < 0x10000 ? 3 : v < TWO_32 ? 5 : 9;
    return v >= -32 ? 1 : v >= -0x80 ? 2 : v >= -0x8000 ? 3 : v >= -0x80000000 ? 5 : 9;
  },
  /** A string of `n` UTF-8 bytes. */
  str: (n: number) => (n < 32 ? 1 : n < 0x100 ? 2 : n < 0x10000 ? 3 : 5) + n,
  bin: (n: number) => (n < 0x100 ? 2 : n < 0x10000 ? 3 : 5) + n,
  array: (n: number) => (n < 16 ? 1 : n < 0x10000 ? 3 : 5),
  map: (n: number) => (n < 16 ? 1 : n < 0x10000 ? 3 : 5),
  /** The head of an event, ExactWriter.event's bytes (ASCII names). */
  event: (name: string, field: string) => 1 + 2 + 3 + 3 + 1 + name.length + 1 + field.length,
};

export class ExactWriter {
  readonly out: Uint8Array;
  private p = 0;

  /** `size`: the MessagePack bytes to come, as sizeOf adds them up. */
  constructor(size: number) {
    this.out = new Uint8Array(4 + size);
    this.u32(size);
  }

  /** Bytes written: equal to the array's length once the frame is complete. */
  get written(): number {
    return this.p;
  }

  private u16(n: number): void {
    this.out[this.p++] = n >>> 8;
    this.out[this.p++] = n & 0xff;
  }

  // Byte by byte, not a DataView: reading `.buffer` of a fresh small array costs more (protocol/frame.ts).
  private u32(n: number): void {
    const o = this.out;
    o[this.p++] = n >>> 24;
    o[this.p++] = (n >>> 16) & 0xff;
    o[this.p++] = (n >>> 8) & 0xff;
    o[this.p++] = n & 0xff;
  }

  private head(n: number, fix: number, fixLimit: number, b8: number, b16: number, b32: number): void {
    if (n < fixLimit) this.out[this.p++] = fix | n;
    else if (b8 !== 0 && n < 0x100) (this.out[this.p++] = b8), (this.out[this.p++] = n);
    else if (n < 0x10000) (this.out[this.p++] = b16), this.u16(n);
    else (this.out[this.p++] = b32), this.u32(n);
  }

  int(v: number): void {
    const o = this.out;
    if (!Number.isSafeInteger(v)) {
      o[this.p++] = 0xcb;
      scratch[0] = v;
      this.scratch8();
    } else if (v >= 0) {
      if (v < 0x80) o[this.p++] = v;
      else if (v < 0x100) (o[this.p++] = 0xcc), (o[this.p++] = v);
      else if (v < 0x10000) (o[this.p++] = 0xcd), this.u16(v);
      else if (v < TWO_32) (o[this.p++] = 0xce), this.u32(v);
      else (o[this.p++] = 0xcf), this.u32(Math.floor(v / TWO_32)), this.u32(v >>> 0);
    } else if (v >= -32) o[this.p++] = v & 0xff;
    else if (v >= -0x80) (o[this.p++] = 0xd0), (o[this.p++] = v & 0xff);
    else if (v >= -0x8000) (o[this.p++] = 0xd1), this.u16(v & 0xffff);
    else if (v >= -0x80000000) (o[this.p++] = 0xd2), this.u32(v >>> 0);
    else {
      o[this.p++] = 0xd3;
      scratchInt[0] = BigInt(v);
      this.scratch8();
    }
  }

  /** The scratch's 8 bytes, most significant first. */
  private scratch8(): void {
    const o = this.out;
    for (let i = 0; i < 8; i++) o[this.p++] = scratchBytes[BIG_ENDIAN_ORDER[i]!]!;
  }

  /** `n`: its UTF-8 size (utf8Size), counted once for the sizes already. */
  str(s: string, n = utf8Size(s)): void {
    this.head(n, 0xa0, 32, 0xd9, 0xda, 0xdb);
    if (n === s.length) for (let i = 0; i < s.length; i++) this.out[this.p++] = s.charCodeAt(i);
    else this.p += new TextEncoder().encodeInto(s, this.out.subarray(this.p)).written;
  }

  bin(b: Uint8Array): void {
    this.head(b.length, 0, 0, 0xc4, 0xc5, 0xc6);
    this.out.set(b, this.p);
    this.p += b.length;
  }

  /** The head of an event frame, `{t:"ev", ev: name, field: ...}`: the field's value is written next. Short ASCII names only. */
  event(name: string, field: string): void {
    this.map(3);
    this.str("t", 1);
    this.str("ev", 2);
    this.str("ev", 2);
    this.str(name, name.length);
    this.str(field, field.length);
  }

  bool(v: boolean): void {
    this.out[this.p++] = v ? 0xc3 : 0xc2;
  }

  nil(): void {
    this.out[this.p++] = 0xc0;
  }

  array(n: number): void {
    this.head(n, 0x90, 16, 0, 0xdc, 0xdd);
  }

  map(n: number): void {
    this.head(n, 0x80, 16, 0, 0xde, 0xdf);
  }
}
