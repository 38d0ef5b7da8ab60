/**
 * The load generator's decoder for flat frames: a map whose values are all
 * numbers, booleans, nil or ASCII strings, as the reply to every send is
 * (`{t: "res", id, ok, msg, conv, seq, at}`). It builds the same object, keys
 * in the same order, as the protocol's decode (msgpackr), without its generic
 * walk; a frame holding anything else (bytes, arrays, maps, extensions,
 * non-ASCII text) is left to that decode. Each send's reply went through
 * msgpackr: about a twentieth of a worker's JavaScript time at 10,000 msg/s.
 */

/** Keys and values the bench's hot replies use, made once: such a string is compared as bytes, not built. */
const KNOWN = ["t", "res", "id", "ok", "msg", "conv", "seq", "at", "ev", "code", "message", "retryAfterMs"];
const KNOWN_BYTES = KNOWN.map((k) => new TextEncoder().encode(k));
const TWO_32 = 0x100000000;
/** Big-endian float64 bytes land here, reversed, to be read as the host's (little-endian) float. */
const scratch = new Uint8Array(8);
const scratchFloat = new Float64Array(scratch.buffer);
const littleEndian = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

/** The frame as an object, when it is a flat map this reads; otherwise undefined. */
export function peekFlatFrame(b: Uint8Array): Record<string, unknown> | undefined {
  const end = b.length;
  let at: number;
  let fields: number;
  // msgpackr writes every map with a 16-bit length; a fixmap is read too.
  if (b[0]! >= 0x80 && b[0]! <= 0x8f) (fields = b[0]! & 0x0f), (at = 1);
  else if (b[0] === 0xde && end >= 3) (fields = (b[1]! << 8) | b[2]!), (at = 3);
  else return undefined;
  const out: Record<string, unknown> = {};
  for (let f = 0; f < fields; f++) {
    // The key: a fixstr.
    if (at >= end) return undefined;
    const kh = b[at++]!;
    if (kh < 0xa0 || kh > 0xbf) return undefined;
    const kn = kh & 0x1f;
    if (at + kn > end) return undefined;
    const key = ascii(b, at, kn);
    // msgpackr renames a __proto__ key: left to it.
    if (key === undefined || key === "__proto__") return undefined;
    at += kn;
    // The value.
    if (at >= end) return undefined;
    const c = b[at++]!;
    let v: unknown;
    if (c <= 0x7f) v = c;
    else if (c >= 0xe0) v = c - 0x100;
    else if (c >= 0xa0 && c <= 0xbf) {
      const n = c & 0x1f;
      if (at + n > end || (v = ascii(b, at, n)) === undefined) return undefined;
      at += n;
    } else {
      let n = 0;
      switch (c) {
        case 0xc0:
          v = null;
          break;
        case 0xc2:
          v = false;
          break;
        case 0xc3:
          v = true;
          break;
        case 0xcc:
          n = 1;
          break;
        case 0xcd:
          n = 2;
          break;
        case 0xce:
          n = 4;
          break;
        case 0xd0:
          n = 1;
          break;
        case 0xd1:
          n = 2;
          break;
        case 0xd2:
          n = 4;
          break;
        case 0xcf:
        case 0xd3:
        case 0xcb:
          n = 8;
          break;
        case 0xd9:
          if (at >= end) return undefined;
          n = b[at++]!;
          if (at + n > end || (v = ascii(b, at, n)) === undefined) return undefined;
          at += n;
          n = 0;
          break;
        default:
          // float32, long strings, bytes, arrays, maps, extensions: the full decode's.
          return undefined;
      }
      if (n > 0) {
        if (at + n > end) return undefined;
        if (c === 0xcb) {
          for (let i = 0; i < 8; i++) scratch[littleEndian ? 7 - i : i] = b[at + i]!;
          v = scratchFloat[0];
        } else if (n === 8) {
          // As msgpackr's int64AsType "number": the high word times 2^32 plus the low word.
          const hi = ((b[at]! << 24) | (b[at + 1]! << 16) | (b[at + 2]! << 8) | b[at + 3]!) >>> 0;
          const lo = ((b[at + 4]! << 24) | (b[at + 5]! << 16) | (b[at + 6]! << 8) | b[at + 7]!) >>> 0;
          v = (c === 0xd3 ? hi | 0 : hi) * TWO_32 + lo;
        } else {
          let u = 0;
          for (let i = 0; i < n; i++) u = u * 256 + b[at + i]!;
          // 0xd0..0xd2: two's complement of 8, 16 or 32 bits.
          v = c >= 0xd0 && u >= 2 ** (8 * n - 1) ? u - 2 ** (8 * n) : u;
        }
        at += n;
      }
    }
    out[key] = v;
  }
  return at === end ? out : undefined;
}

/** The ASCII string of b[at, at + n) (one of KNOWN if it is one), or undefined when a byte is not ASCII. */
function ascii(b: Uint8Array, at: number, n: number): string | undefined {
  for (let k = 0; k < KNOWN_BYTES.length; k++) {
    const name = KNOWN_BYTES[k]!;
    if (name.length !== n) continue;
    let same = true;
    for (let i = 0; i < n && same; i++) same = b[at + i] === name[i];
    if (same) return KNOWN[k];
  }
  let s = "";
  for (let i = at; i < at + n; i++) {
    const c = b[i]!;
    if (c >= 0x80) return undefined;
    s += String.fromCharCode(c);
  }
  return s;
}
