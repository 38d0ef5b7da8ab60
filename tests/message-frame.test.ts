/**
 * protocol/message-frame.ts: the hand-written `msg` frame is one a client
 * reads exactly as it read msgpackr's (protocol/codec.ts): the same length in
 * front, the same object out, for every size class of number, string and body;
 * and so is the peer link's `deliveries` batch (protocol/deliveries-frame.ts).
 */
import { expect, test } from "bun:test";
import { unpackMultiple } from "msgpackr";
import { decode, encode } from "../protocol/codec";
import { FrameReader } from "../protocol/frame";
import { encodeDeliveries, type WireForward } from "../protocol/deliveries-frame";
import { encodeMessageEvent } from "../protocol/message-frame";
import type { WireMessage } from "../protocol/messages";

const read = (bytes: Uint8Array) => {
  const frames = new FrameReader(64 * 1024 * 1024).push(bytes);
  expect(frames.length).toBe(1);
  return decode(frames[0]!);
};

/** The payload is one MessagePack value and nothing after it: no byte of the size worked out was left unwritten. */
const whole = (bytes: Uint8Array) => expect(unpackMultiple(bytes.subarray(4)).length).toBe(1);

const base: WireMessage = { id: 1, conv: 2, seq: 3, from: "ann", to: "ben", kind: "chat", at: 1_764_650_000_123, cmid: "c-1", body: new Uint8Array([1, 2, 3]) };

const cases: [string, WireMessage][] = [
  ["a small direct message", base],
  ["a group message", { ...base, group: "friends", to: "friends" }],
  ["a system message", { ...base, kind: "system" }],
  ...[0x7f, 0x80, 0xff, 0x100, 0xffff, 0x10000, 2 ** 32 - 1, 2 ** 32, Number.MAX_SAFE_INTEGER].map((n): [string, WireMessage] => [`ids and numbers of ${n}`, { ...base, id: n, conv: n, seq: n, at: n }]),
  ...[-1, -32, -33, -128, -129, -32768, -32769, -(2 ** 31), -(2 ** 31) - 1, -(2 ** 40), 1.5, 1_764_650_000_123.456, 2 ** 53 + 2, -(2 ** 53) - 2].map((n): [string, WireMessage] => [`a number of ${n}`, { ...base, at: n }]),
  ...[0, 31, 32, 255, 256, 65535, 65536].map((n): [string, WireMessage] => [`a name of ${n} bytes`, { ...base, from: "x".repeat(n), cmid: "y".repeat(n) }]),
  ["names outside ASCII", { ...base, from: "zoë", to: "Ωmega-😀", group: "ça va" }],
  ...[0, 255, 256, 65535, 65536, 300_000].map((n): [string, WireMessage] => [`a body of ${n} bytes`, { ...base, body: new Uint8Array(n).map((_, i) => i * 7) }]),
];

for (const [name, m] of cases) {
  test(`${name}: the frame reads as the generic encoding's`, () => {
    const mine = encodeMessageEvent(m);
    const theirs = encode({ t: "ev", ev: "msg", m });
    expect(read(mine)).toEqual(read(theirs));
    whole(mine);
    expect(read(mine)).toEqual({ t: "ev", ev: "msg", m } as unknown as Record<string, unknown>);
  });
}

test("a field left undefined is left out, as msgpackr leaves it", () => {
  const m = { ...base, group: undefined } as unknown as WireMessage;
  expect(read(encodeMessageEvent(m))).toEqual(read(encode({ t: "ev", ev: "msg", m: base })));
});

test("a deliveries batch of messages and events, several conversations and sizes, reads as the generic encoding's", () => {
  const d: WireForward[] = [
    [[1], encodeMessageEvent(base), 2, 3, 0],
    [[70_000, 2, 300], encode({ t: "ev", ev: "receipts", r: [[2, "ann", 3, null]] }), null, null, 0],
    [Array.from({ length: 20 }, (_, i) => i * 1000), new Uint8Array(70_000).fill(9), 2 ** 32 + 5, 65_536, 1],
    ...Array.from({ length: 20 }, (_, i): WireForward => [[i], new Uint8Array(i * 13), i, i + 1, 0]),
  ];
  const mine = encodeDeliveries(d);
  const theirs = encode({ t: "ev", ev: "deliveries", d });
  expect(read(mine)).toEqual(read(theirs));
  whole(mine);
});
