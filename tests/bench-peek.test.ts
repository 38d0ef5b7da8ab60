/**
 * The load generator's peek at deliveries (bench/peek.ts) reads the same
 * conversation, sequence number and client message id as the protocol's full
 * decode, from the frames the server really writes; a flat reply read by
 * hand is the object the full decode makes; anything else is left to the
 * full decode.
 */
import { expect, test } from "bun:test";
import { decodeForBench, peekMessageEvent } from "../bench/peek";
import { peekFlatFrame } from "../bench/peek-reply";
import { encodeForBench as encodeFixmap } from "../bench/request-frame";
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

const replies: [string, Record<string, unknown>][] = [
  ["a send's reply", { t: "res", id: 5, ok: true, msg: 123456789, conv: 42, seq: 7, at: 1_764_000_000_123 }],
  ["numbers of every width", { t: "res", id: 70_000, ok: true, a: 0, b: 127, c: 128, d: 255, e: 256, f: 65_535, g: 65_536, h: 2 ** 32 - 1, i: 2 ** 32, j: 2 ** 53 - 1 }],
  ["negative and fractional numbers", { t: "res", id: 1, ok: true, a: -1, b: -32, c: -33, d: -200, e: -70_000, f: -(2 ** 40), g: 1.5, h: -0.25 }],
  ["an error", { t: "res", id: 9, ok: false, code: "E_RATE_LIMITED", message: "Slow down: you sent too many messages", retryAfterMs: 250 }],
  ["nil, false and strings of every width", { t: "res", id: 2, ok: true, a: null, b: false, c: "", d: "x".repeat(31), e: "x".repeat(32), f: "x".repeat(255) }],
  ["a key the peek does not know", { t: "res", id: 3, ok: true, device: "d1" }],
];

for (const [what, frame] of replies) {
  test(`a flat reply read by hand is what the full decode gives, keys in order: ${what}`, () => {
    for (const framed of [encode(frame), encodeFixmap(frame)]) {
      const bytes = payload(framed);
      const full = decode(bytes);
      const peeked = peekFlatFrame(bytes);
      expect(peeked).toEqual(full);
      expect(Object.keys(peeked!)).toEqual(Object.keys(full));
      expect(decodeForBench(bytes)).toEqual(full);
    }
  });
}

test("a reply holding what the flat peek does not read is left to the full decode", () => {
  const frames = [
    { t: "res", id: 1, ok: true, token: "t", backup: new Uint8Array([1, 2]) },
    { t: "res", id: 2, ok: true, receipts: [[1, 2, 3]] },
    { t: "res", id: 3, ok: true, keys: { a: 1 } },
    { t: "res", id: 4, ok: true, name: "réunion" },
    { t: "res", id: 5, ok: true, long: "x".repeat(300) },
    { t: "res", id: 6, ok: true, gone: undefined },
    { t: "res", id: 7, ok: true, ["__proto__"]: 1 },
  ];
  for (const f of frames) {
    const bytes = payload(encode(f));
    expect(peekFlatFrame(bytes)).toBeUndefined();
    expect(decodeForBench(bytes)).toEqual(decode(bytes));
  }
  const bytes = payload(encode(replies[0]![1]));
  for (const cut of [1, 3, 10, bytes.length - 1]) expect(peekFlatFrame(bytes.subarray(0, cut))).toBeUndefined();
  const padded = new Uint8Array(bytes.length + 1);
  padded.set(bytes);
  expect(peekFlatFrame(padded)).toBeUndefined();
});
