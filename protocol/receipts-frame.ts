/**
 * The `receipts` event, framed (PROTOCOL.md, "Receipts"):
 * `{t:"ev", ev:"receipts", r:[[conv, user, delivered|nil, read|nil], ...]}`
 * written into one array of the exact size (protocol/pack-exact.ts). One goes
 * to each person with receipts every flush (server/receipts.ts), about one per
 * message delivered under load: msgpackr's generic walk of the nested arrays
 * and frame()'s copy of the result were most of the flush's cost.
 */
import { ExactWriter, sizeOf, utf8Size } from "./pack-exact";

/** One position: the conversation, who moved (a name), how far they received and read (nil: not shared). */
export type WireReceipt = [number, string, number | null, number | null];

export function encodeReceipts(r: WireReceipt[]): Uint8Array {
  let size = sizeOf.event("receipts", "r") + sizeOf.array(r.length);
  for (const [conv, user, delivered, read] of r) {
    size += 1 + sizeOf.int(conv) + sizeOf.str(utf8Size(user));
    size += delivered === null ? 1 : sizeOf.int(delivered);
    size += read === null ? 1 : sizeOf.int(read);
  }
  const w = new ExactWriter(size);
  w.event("receipts", "r");
  w.array(r.length);
  for (const [conv, user, delivered, read] of r) {
    w.array(4);
    w.int(conv);
    w.str(user);
    if (delivered === null) w.nil();
    else w.int(delivered);
    if (read === null) w.nil();
    else w.int(read);
  }
  return w.out;
}
