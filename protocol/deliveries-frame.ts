/**
 * The peer link's `deliveries` event, framed (PROTOCOL.md, "Server ↔ server"):
 * `{t:"ev", ev:"deliveries", d:[[to, frame, conv, seq, hops], ...]}` written
 * into one array of the exact size (protocol/pack-exact.ts). msgpackr copied
 * every forwarded frame into its buffer and frame() copied the whole batch
 * again to put its length in front; here each frame is copied once.
 */
import { ExactWriter, sizeOf } from "./pack-exact";

/** One item: the users it is for, the client frame (header included), its place (nil for an event), its hops. */
export type WireForward = [number[], Uint8Array, number | null, number | null, number];

export function encodeDeliveries(d: WireForward[]): Uint8Array {
  let size = sizeOf.event("deliveries", "d") + sizeOf.array(d.length);
  for (const [to, frame, conv, seq, hops] of d) {
    size += 1 + sizeOf.array(to.length) + sizeOf.bin(frame.length) + sizeOf.int(hops);
    for (const user of to) size += sizeOf.int(user);
    size += conv === null ? 1 : sizeOf.int(conv);
    size += seq === null ? 1 : sizeOf.int(seq);
  }
  const w = new ExactWriter(size);
  w.event("deliveries", "d");
  w.array(d.length);
  for (const [to, frame, conv, seq, hops] of d) {
    w.array(5);
    w.array(to.length);
    for (const user of to) w.int(user);
    w.bin(frame);
    if (conv === null) w.nil();
    else w.int(conv);
    if (seq === null) w.nil();
    else w.int(seq);
    w.int(hops);
  }
  return w.out;
}
