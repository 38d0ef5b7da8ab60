/**
 * The `msg` event, framed: `{t:"ev", ev:"msg", m}` as MessagePack with its
 * 4-byte length in front, written straight into one array of the exact size
 * (protocol/pack-exact.ts). Every stored message a server delivers is one of
 * these, so this is its hottest encoding: msgpackr walks the object
 * generically into its shared buffer, and putting the frame's length in front
 * then copied the whole frame once more, body included (8% of a server's
 * profile samples). The output decodes to the same object as encode()'s; a
 * field of a kind this does not write (none today) falls back to encode().
 */
import { encode } from "./codec";
import type { WireMessage } from "./messages";
import { ExactWriter, sizeOf, utf8Size } from "./pack-exact";

/** The frame for a `msg` event carrying `m`. */
export function encodeMessageEvent(m: WireMessage): Uint8Array {
  const fields = m as unknown as Record<string, unknown>;
  // Sizes first: the event's head, then the message's map (at most 15 fields: one byte), keys and values.
  // Two walks over the fields rather than a list of keys and of string sizes: no arrays made per frame.
  let size = sizeOf.event("msg", "m") + 1;
  let count = 0;
  for (const key in fields) {
    const v = fields[key];
    if (v === undefined) continue;
    // Keys are the short ASCII names of WireMessage (a fixstr each).
    if (++count > 15 || key.length > 31) return encode({ t: "ev", ev: "msg", m });
    size += 1 + key.length;
    if (typeof v === "number") size += sizeOf.int(v);
    else if (typeof v === "string") size += sizeOf.str(utf8Size(v));
    else if (v instanceof Uint8Array) size += sizeOf.bin(v.length);
    else return encode({ t: "ev", ev: "msg", m });
  }
  const w = new ExactWriter(size);
  w.event("msg", "m");
  w.map(count);
  for (const key in fields) {
    const v = fields[key];
    if (v === undefined) continue;
    w.str(key, key.length);
    if (typeof v === "number") w.int(v);
    else if (typeof v === "string") w.str(v);
    else w.bin(v as Uint8Array);
  }
  return w.out;
}
