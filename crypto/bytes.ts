// Byte helpers shared by the crypto modules: titled argument checks for the public boundary,
// and a tiny writer/reader for the hand-written, length-prefixed binary layouts.
import { CryptoError } from "./errors.ts";

const encoder = new TextEncoder();
// fatal: a decoded string must re-encode to the same bytes, or signatures would bind ambiguous text
const decoder = new TextDecoder("utf-8", { fatal: true });

export const utf8 = (s: string): Uint8Array => encoder.encode(s);

export function concat(...parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

export function equalBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

export function abytes(value: unknown, title: string, length?: number): Uint8Array {
  if (!(value instanceof Uint8Array)) throw new TypeError(`${title}: expected Uint8Array`);
  if (length !== undefined && value.length !== length)
    throw new TypeError(`${title}: expected ${length} bytes, got ${value.length}`);
  return value;
}

/** A non-empty, well-formed string whose UTF-8 form fits a one-byte length prefix. */
export function astring(value: unknown, title: string): string {
  if (typeof value !== "string" || value.length === 0) throw new TypeError(`${title}: expected a non-empty string`);
  if (!value.isWellFormed()) throw new TypeError(`${title}: contains a lone surrogate`);
  if (utf8(value).length > 255) throw new TypeError(`${title}: longer than 255 UTF-8 bytes`);
  return value;
}

export class Writer {
  private parts: Uint8Array[] = [];
  bytes(b: Uint8Array): this {
    this.parts.push(b);
    return this;
  }
  u8(n: number): this {
    return this.bytes(Uint8Array.of(n));
  }
  u16(n: number): this {
    return this.bytes(Uint8Array.of(n >>> 8, n & 0xff));
  }
  u64(n: number): this {
    const b = new Uint8Array(8);
    new DataView(b.buffer).setBigUint64(0, BigInt(n));
    return this.bytes(b);
  }
  str8(s: string): this {
    const b = utf8(s);
    return this.u8(b.length).bytes(b);
  }
  finish(): Uint8Array {
    return concat(...this.parts);
  }
}

/** Reads untrusted bytes; any overrun or bad text is the sender's fault, so it is E_FORMAT. */
export class Reader {
  pos = 0;
  constructor(readonly buf: Uint8Array) {}
  get left(): number {
    return this.buf.length - this.pos;
  }
  bytes(n: number): Uint8Array {
    if (n > this.left) throw new CryptoError("E_FORMAT", "The encrypted data is truncated");
    const out = this.buf.subarray(this.pos, this.pos + n);
    this.pos += n;
    return out;
  }
  u8(): number {
    return this.bytes(1)[0]!;
  }
  u16(): number {
    const b = this.bytes(2);
    return (b[0]! << 8) | b[1]!;
  }
  u64(): number {
    const b = this.bytes(8);
    const n = new DataView(b.buffer, b.byteOffset, 8).getBigUint64(0);
    if (n > BigInt(Number.MAX_SAFE_INTEGER)) throw new CryptoError("E_FORMAT", "A number is out of range");
    return Number(n);
  }
  str8(): string {
    const b = this.bytes(this.u8());
    if (b.length === 0) throw new CryptoError("E_FORMAT", "An empty name or label");
    try {
      return decoder.decode(b);
    } catch {
      throw new CryptoError("E_FORMAT", "A name or label is not valid UTF-8");
    }
  }
}
