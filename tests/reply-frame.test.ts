/**
 * protocol/reply-frame.ts: a result reply written by hand reads exactly as
 * encode(ok(id, fields)) does (protocol/codec.ts), for a send's reply and for
 * every kind of flat field; anything it does not write (nested, undefined, too
 * many fields) is msgpackr's own encoding, byte for byte.
 */
import { expect, test } from "bun:test";
import { unpackMultiple } from "msgpackr";
import { decode, encode } from "../protocol/codec";
import { FrameReader } from "../protocol/frame";
import { ok } from "../protocol/messages";
import { encodeOk } from "../protocol/reply-frame";

const read = (bytes: Uint8Array) => {
  const frames = new FrameReader(64 * 1024 * 1024).push(bytes);
  expect(frames.length).toBe(1);
  return decode(frames[0]!);
};

const send = { msg: 123_456, conv: 789, seq: 42, at: 1_764_650_000_123.456, duplicate: false };

const cases: [string, number, Record<string, unknown>][] = [
  ["a send's reply", 17, send],
  ["a duplicate send's reply", 0x10000, { ...send, duplicate: true }],
  ["an empty reply", 1, {}],
  ...[0, 0x7f, 0x80, 0xffff, 0x10000, 2 ** 32, Number.MAX_SAFE_INTEGER].map((n): [string, number, Record<string, unknown>] => [`an id of ${n}`, n, { n, neg: -n, half: n + 0.5 }]),
  ["strings, nil and bytes", 3, { user: "zoë", token: "x".repeat(300), none: null, body: new Uint8Array(70_000).fill(5) }],
  ["fields named as ok()'s own", 9, { t: "mine", id: 1, ok: false, count: 2 }],
];

for (const [name, id, fields] of cases) {
  test(`${name}: the frame reads as the generic encoding's`, () => {
    const mine = encodeOk(id, fields);
    expect(read(mine)).toEqual(read(encode(ok(id, fields))));
    expect(unpackMultiple(mine.subarray(4)).length).toBe(1);
  });
}

const generic: [string, Record<string, unknown>][] = [
  ["a nested result", { keys: { ann: new Uint8Array(3) } }],
  ["a list", { groups: [{ name: "g" }] }],
  ["an undefined field", { backup: undefined, user: "ann" }],
  ["more fields than a fixmap holds", Object.fromEntries(Array.from({ length: 13 }, (_, i) => [`f${i}`, i]))],
];

for (const [name, fields] of generic) {
  test(`${name}: left to msgpackr, byte for byte`, () => {
    expect(Buffer.from(encodeOk(5, fields)).equals(Buffer.from(encode(ok(5, fields))))).toBe(true);
  });
}
