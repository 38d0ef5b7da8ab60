/**
 * protocol/receipts-frame.ts: the hand-written `receipts` event reads exactly
 * as msgpackr's (protocol/codec.ts) for every size class of number and name,
 * positions left out (nil) on either side, and lists of every header size.
 */
import { expect, test } from "bun:test";
import { unpackMultiple } from "msgpackr";
import { decode, encode } from "../protocol/codec";
import { FrameReader } from "../protocol/frame";
import { encodeReceipts, type WireReceipt } from "../protocol/receipts-frame";

const read = (bytes: Uint8Array) => {
  const frames = new FrameReader(64 * 1024 * 1024).push(bytes);
  expect(frames.length).toBe(1);
  return decode(frames[0]!);
};

const cases: [string, WireReceipt[]][] = [
  ["no positions", []],
  ["one delivered position", [[2, "ann", 3, null]]],
  ["one read position", [[2, "ann", null, 3]]],
  ["both", [[2, "ann", 5, 3]]],
  ...[0x7f, 0x80, 0xff, 0x100, 0xffff, 0x10000, 2 ** 32 - 1, 2 ** 32, Number.MAX_SAFE_INTEGER].map((n): [string, WireReceipt[]] => [`numbers of ${n}`, [[n, "ann", n, n]]]),
  ...[0, 31, 32, 255, 256, 65535, 65536].map((n): [string, WireReceipt[]] => [`a name of ${n} bytes`, [[1, "x".repeat(n), 1, null]]]),
  ["names outside ASCII", [[1, "zoë", 1, 1], [2, "Ωmega-😀", null, 4]]],
  ...[15, 16, 65535, 65536].map((n): [string, WireReceipt[]] => [`${n} positions`, Array.from({ length: n }, (_, i): WireReceipt => [i + 1, `u${i}`, i, i % 3 === 0 ? null : i])]),
];

for (const [name, r] of cases) {
  test(`${name}: the frame reads as the generic encoding's`, () => {
    const mine = encodeReceipts(r);
    const theirs = encode({ t: "ev", ev: "receipts", r });
    expect(read(mine)).toEqual(read(theirs));
    // One MessagePack value and nothing after it: no byte of the size worked out was left unwritten.
    expect(unpackMultiple(mine.subarray(4)).length).toBe(1);
    expect(read(mine)).toEqual({ t: "ev", ev: "receipts", r });
  });
}
