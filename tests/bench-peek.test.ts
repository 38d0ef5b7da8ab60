/**
 * The load generator's peek at deliveries (bench/peek.ts) reads the same
 * conversation, sequence number and client message id as the protocol's full
 * decode, from the frames the server really writes, and anything that is not
 * a whole `msg` event is left to the full decode.
 */
import { expect, test } from "bun:test";
import { decodeForBench, peekMessageEvent } from "../bench/peek";
import { decode, encode } from "../protocol/codec";
import { encodeMessageEvent } from "../protocol/message-frame";
import type { WireMessage } from "../protocol/messages";

const payload = (framed: Uint8Array) => framed.subarray(4);

const message = (over: Partial<WireMessage> = {}): WireMessage => ({
  id: 123456789,
  conv: 42,
  seq: 7,
  from: "bench-u1",
  to: "bench-u2",
  kind: "chat",
  at: 1_764_000_000_000,
  cmid: "a1b2c3d4.d1.17.1234567890123.1",
  body: new Uint8Array(407).fill(9),
  ...over,
});

const cases: [string, Partial<WireMessage>][] = [
  ["a direct message", {}],
  ["small numbers (fixints)", { conv: 1, seq: 0 }],
  ["numbers of every width", { conv: 70_000, seq: 300 }],
  ["numbers past 32 bits", { conv: 2 ** 40 + 3, seq: 2 ** 33 }],
  ["an empty body", { body: new Uint8Array() }],
  ["a body past 64 KiB (bin32)", { body: new Uint8Array(70_000) }],
  ["a group message", { group: "team", to: "team" }],
  ["a non-ASCII client message id", { cmid: "réunion-ü-1" }],
  ["a long client message id", { cmid: "x".repeat(200) }],
  ["no client message id", { cmid: undefined }],
];

for (const [what, over] of cases) {
  test(`the peek reads what the full decode reads, from the server's own msg frame and msgpackr's: ${what}`, () => {
    const m = message(over);
    for (const framed of [encodeMessageEvent(m), encode({ t: "ev", ev: "msg", m })]) {
      const full = decode(payload(framed)).m as WireMessage;
      const peeked = peekMessageEvent(payload(framed));
      expect(peeked).toEqual({ conv: full.conv, seq: full.seq, ...(full.cmid !== undefined ? { cmid: full.cmid } : {}) });
      expect(decodeForBench(payload(framed))).toEqual({ t: "ev", ev: "msg", m: peeked });
    }
  });
}

test("replies and other events are not peeked, and decode whole", () => {
  const frames = [
    { t: "res", id: 5, ok: true, msg: 1, conv: 2, seq: 3, at: 4 },
    { t: "ev", ev: "receipts", r: [[1, 2, 3]] },
    { t: "ev", ev: "msg" },
    { t: "ev", ev: "msg", m: "not a map" },
    { t: "bye", code: "E_SHUTDOWN" },
  ];
  for (const f of frames) {
    const bytes = payload(encode(f));
    expect(peekMessageEvent(bytes)).toBeUndefined();
    expect(decodeForBench(bytes)).toEqual(decode(bytes));
  }
});

test("a cut-off or padded msg frame is not peeked (the full decode then refuses it as it would)", () => {
  const bytes = payload(encodeMessageEvent(message()));
  for (const cut of [1, 5, 20, bytes.length - 400, bytes.length - 1]) expect(peekMessageEvent(bytes.subarray(0, cut))).toBeUndefined();
  const padded = new Uint8Array(bytes.length + 1);
  padded.set(bytes);
  expect(peekMessageEvent(padded)).toBeUndefined();
});
