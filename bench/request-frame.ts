/**
 * The load generator's encoder for the requests it writes: a flat map of
 * ASCII strings, numbers and bytes (every `send`, the hot one: `{to | group,
 * cmid, epoch?, body, t, id, op}`) is written straight into one array of the
 * frame's exact size (protocol/pack-exact.ts, as protocol/message-frame.ts does
 * for the server's deliveries); anything else goes through the protocol's own
 * encode. msgpackr walks the object generically into its shared buffer and
 * the framing then copies it, body included, once more. The output decodes to
 * the same object, keys in the same order, as encode()'s (msgpackr writes
 * every map with a 16-bit length, this the shortest header: the bytes differ,
 * what they say does not).
 */
import { encode } from "../protocol/codec";
import { ExactWriter, sizeOf } from "../protocol/pack-exact";

/** Fields a fixmap holds; a larger request is not one of the bench's hot ones. */
const FIXMAP_FIELDS = 15;

/** The frame (length in front) for `value`. */
export function encodeForBench(value: Record<string, unknown>): Uint8Array {
  let size = 0;
  let fields = 0;
  for (const key in value) {
    const v = value[key];
    // Keys are the protocol's short ASCII names (a fixstr each).
    if (key.length > 31 || !ascii(key)) return encode(value);
    size += 1 + key.length;
    if (typeof v === "string") {
      // Non-ASCII text is left to msgpackr, whose UTF-8 is the reference (lone surrogates and all).
      if (!ascii(v)) return encode(value);
      size += sizeOf.str(v.length);
    } else if (typeof v === "number") size += sizeOf.int(v);
    else if (v instanceof Uint8Array) size += sizeOf.bin(v.length);
    else return encode(value);
    fields++;
  }
  if (fields > FIXMAP_FIELDS) return encode(value);
  const w = new ExactWriter(1 + size);
  w.map(fields);
  for (const key in value) {
    const v = value[key];
    w.str(key, key.length);
    if (typeof v === "string") w.str(v, v.length);
    else if (typeof v === "number") w.int(v);
    else w.bin(v as Uint8Array);
  }
  return w.out;
}

function ascii(s: string): boolean {
  for (let i = 0; i < s.length; i++) if (s.charCodeAt(i) >= 0x80) return false;
  return true;
}
