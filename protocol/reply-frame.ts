/**
 * A result reply, framed: `{...fields, t:"res", id, ok:true}` as ok() builds
 * it (protocol/messages.ts), written into one array of the exact size
 * (protocol/pack-exact.ts). Every request gets one, and every send's (msg,
 * conv, seq, at, duplicate) was a msgpackr encoding of a fresh object and a
 * copy to put the length in front. Flat results only (numbers, strings,
 * booleans, nil, bytes): anything else, nested or undefined, goes through
 * encode() as before, so the frame always reads as encode(ok(id, fields)).
 */
import { encode } from "./codec";
import { ok } from "./messages";
import { ExactWriter, sizeOf, utf8Size } from "./pack-exact";

/** ok()'s own keys, written after the fields (a field of the same name is overwritten by them, as the spread in ok() does). */
const OWN = new Set(["t", "id", "ok"]);

export function encodeOk(id: number, fields: Record<string, unknown>): Uint8Array {
  // "t" "res" "id" <id> "ok" true, then the fields' keys and values.
  let size = 2 + 4 + 3 + sizeOf.int(id) + 3 + 1;
  let count = 3;
  for (const key in fields) {
    if (OWN.has(key)) continue;
    const v = fields[key];
    const n = utf8Size(key);
    if (++count > 15 || n > 31) return encode(ok(id, fields));
    size += 1 + n;
    if (typeof v === "number") size += sizeOf.int(v);
    else if (typeof v === "string") size += sizeOf.str(utf8Size(v));
    else if (typeof v === "boolean" || v === null) size += 1;
    else if (v instanceof Uint8Array) size += sizeOf.bin(v.length);
    else return encode(ok(id, fields));
  }
  const w = new ExactWriter(1 + size);
  w.map(count);
  for (const key in fields) {
    if (OWN.has(key)) continue;
    const v = fields[key];
    w.str(key);
    if (typeof v === "number") w.int(v);
    else if (typeof v === "string") w.str(v);
    else if (typeof v === "boolean") w.bool(v);
    else if (v === null) w.nil();
    else w.bin(v as Uint8Array);
  }
  w.str("t", 1);
  w.str("res", 3);
  w.str("id", 2);
  w.int(id);
  w.str("ok", 2);
  w.bool(true);
  return w.out;
}
