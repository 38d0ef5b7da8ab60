/**
 * The `msg` event, framed: `{t:"ev", ev:"msg", m}` as MessagePack with its
 * 4-byte length in front, written straight into one array of the exact size.
 * Every stored message a server delivers is one of these (and, with two
 * servers, half of them again in a peer batch), so this is its hottest
 * encoding: msgpackr walks the object generically, writes into its shared
 * buffer, and the frame header then meant a second copy of the whole frame,
 * body included (8% of a server's profile samples). The output decodes to the
 * same object as encode()'s; a field of a kind this does not write (none
 * today) falls back to encode().
 */
import { encode } from "./codec";
import { HEADER_BYTES } from "./frame";
import type { WireMessage } from "./messages";

const TWO_32 = 2 ** 32;

function strSize(s: string): number {
  let n = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x80) n += 1;
    else return Buffer.byteLength(s, "utf8");
  }
  return n;
}

function strHeader(n: number): number {
  return n < 32 ? 1 : n < 0x100 ? 2 : n < 0x10000 ? 3 : 5;
}

function numSize(v: number): number {
  if (!Number.isSafeInteger(v)) return 9;
  if (v >= 0) return v < 0x80 ? 1 : v < 0x100 ? 2 : v < 0x10000 ? 3 : v < TWO_32 ? 5 : 9;
  return v >= -32 ? 1 : v >= -0x80 ? 2 : v >= -0x8000 ? 3 : v >= -0x80000000 ? 5 : 9;
}

function binSize(n: number): number {
  return (n < 0x100 ? 2 : n < 0x10000 ? 3 : 5) + n;
}

/** The frame for a `msg` event carrying `m`. */
export function encodeMessageEvent(m: WireMessage): Uint8Array {
  const fields = m as unknown as Record<string, unknown>;
  const keys = Object.keys(fields).filter((k) => fields[k] !== undefined);
  if (keys.length > 15) return encode({ t: "ev", ev: "msg", m });
  // Sizes first: the map headers, "t" "ev" "ev" "msg" "m", then each key and value.
  let size = 1 + 2 + 3 + 3 + 4 + 2 + 1;
  const strLengths: number[] = [];
  for (const key of keys) {
    // Keys are the short ASCII names of WireMessage (a fixstr each).
    if (key.length > 31) return encode({ t: "ev", ev: "msg", m });
    size += 1 + key.length;
    const v = fields[key];
    if (typeof v === "number") size += numSize(v);
    else if (typeof v === "string") {
      const n = strSize(v);
      strLengths.push(n);
      size += strHeader(n) + n;
    } else if (v instanceof Uint8Array) size += binSize(v.length);
    else return encode({ t: "ev", ev: "msg", m });
  }
  const out = new Uint8Array(HEADER_BYTES + size);
  // Byte by byte, not a DataView, but for the rare float or negative 64-bit number (see protocol/frame.ts).
  const u16 = (n: number) => {
    out[p++] = n >>> 8;
    out[p++] = n & 0xff;
  };
  const u32 = (n: number) => {
    out[p++] = n >>> 24;
    out[p++] = (n >>> 16) & 0xff;
    out[p++] = (n >>> 8) & 0xff;
    out[p++] = n & 0xff;
  };
  let p = 0;
  u32(size);
  const ascii = (s: string) => {
    for (let i = 0; i < s.length; i++) out[p++] = s.charCodeAt(i);
  };
  out[p++] = 0x83;
  out[p++] = 0xa1;
  ascii("t");
  out[p++] = 0xa2;
  ascii("ev");
  out[p++] = 0xa2;
  ascii("ev");
  out[p++] = 0xa3;
  ascii("msg");
  out[p++] = 0xa1;
  ascii("m");
  out[p++] = 0x80 | keys.length;
  let s = 0;
  for (const key of keys) {
    out[p++] = 0xa0 | key.length;
    ascii(key);
    const v = fields[key];
    if (typeof v === "number") {
      if (!Number.isSafeInteger(v)) {
        out[p++] = 0xcb;
        new DataView(out.buffer).setFloat64(p, v);
        p += 8;
      } else if (v >= 0) {
        if (v < 0x80) out[p++] = v;
        else if (v < 0x100) (out[p++] = 0xcc), (out[p++] = v);
        else if (v < 0x10000) (out[p++] = 0xcd), u16(v);
        else if (v < TWO_32) (out[p++] = 0xce), u32(v);
        else (out[p++] = 0xcf), u32(Math.floor(v / TWO_32)), u32(v >>> 0);
      } else if (v >= -32) out[p++] = v & 0xff;
      else if (v >= -0x80) (out[p++] = 0xd0), (out[p++] = v & 0xff);
      else if (v >= -0x8000) (out[p++] = 0xd1), u16(v & 0xffff);
      else if (v >= -0x80000000) (out[p++] = 0xd2), u32(v >>> 0);
      else (out[p++] = 0xd3), new DataView(out.buffer).setBigInt64(p, BigInt(v)), (p += 8);
    } else if (typeof v === "string") {
      const n = strLengths[s++]!;
      if (n < 32) out[p++] = 0xa0 | n;
      else if (n < 0x100) (out[p++] = 0xd9), (out[p++] = n);
      else if (n < 0x10000) (out[p++] = 0xda), u16(n);
      else (out[p++] = 0xdb), u32(n);
      if (n === v.length) ascii(v);
      else p += new TextEncoder().encodeInto(v, out.subarray(p)).written;
    } else {
      const b = v as Uint8Array;
      const n = b.length;
      if (n < 0x100) (out[p++] = 0xc4), (out[p++] = n);
      else if (n < 0x10000) (out[p++] = 0xc5), u16(n);
      else (out[p++] = 0xc6), u32(n);
      out.set(b, p);
      p += n;
    }
  }
  return out;
}
