/**
 * The load generator writes its requests by hand (bench/request-frame.ts):
 * what the server reads from them must be exactly what it reads from the
 * protocol's own encode, field by field and in the same order, and whatever
 * the hand encoder does not write must go out as the protocol's encode.
 */
import { expect, test } from "bun:test";
import { encodeForBench } from "../bench/request-frame";
import { decode, encode } from "../protocol/codec";

const read = (framed: Uint8Array) => {
  // The 4-byte length says exactly the bytes that follow.
  expect(((framed[0]! << 24) | (framed[1]! << 16) | (framed[2]! << 8) | framed[3]!) >>> 0).toBe(framed.length - 4);
  return decode(framed.subarray(4));
};

const body = new Uint8Array(407).map((_, i) => i);
const cmid = "a1b2c3d4e5f6.d17.1234.1764000000000123.1";

const sends: [string, Record<string, unknown>][] = [
  ["a direct send", { to: "bench-u2", cmid, body, t: "req", id: 1, op: "send" }],
  ["a group send", { group: "bench-ug10-3", cmid, epoch: 0, body, t: "req", id: 300, op: "send" }],
  ["request ids of every width", { to: "u", cmid, body, t: "req", id: 70_000, op: "send" }],
  ["a request id past 32 bits", { to: "u", cmid, body, t: "req", id: 2 ** 40 + 7, op: "send" }],
  ["negative and fractional numbers", { a: -1, b: -200, c: -70_000, d: -(2 ** 40), e: 1.5, t: "req", id: 2, op: "x" }],
  ["an empty body", { to: "u", cmid, body: new Uint8Array(), t: "req", id: 3, op: "send" }],
  ["a body past 64 KiB (bin32)", { to: "u", cmid, body: new Uint8Array(70_000).fill(7), t: "req", id: 4, op: "send" }],
  ["strings of every width", { a: "", b: "x".repeat(31), c: "x".repeat(32), d: "x".repeat(300), e: "x".repeat(70_000), t: "req", id: 5, op: "send" }],
  ["a resume", { user: "bench-u1", token: "t".repeat(43), t: "req", id: 6, op: "resume" }],
];

for (const [what, value] of sends) {
  test(`a hand-written request decodes to what the protocol's encode gives: ${what}`, () => {
    const mine = read(encodeForBench(value));
    const codec = read(encode(value));
    expect(mine).toEqual(codec);
    expect(Object.keys(mine)).toEqual(Object.keys(codec));
    expect(mine).toEqual(value);
  });
}

test("a request the hand encoder does not write goes out as the protocol's encode, byte for byte", () => {
  const others: Record<string, unknown>[] = [
    { acks: [[1, 2]], t: "req", id: 1, op: "ack" },
    { flush: true, t: "req", id: 2, op: "ack" },
    { to: "réunion", cmid, body, t: "req", id: 3, op: "send" },
    { to: "u", cmid: "\ud800", body, t: "req", id: 4, op: "send" },
    { to: "u", cmid: undefined, body, t: "req", id: 5, op: "send" },
    { "é": 1, t: "req", id: 6, op: "x" },
    { ["k".repeat(32)]: 1, t: "req", id: 7, op: "x" },
    Object.fromEntries(Array.from({ length: 16 }, (_, i) => [`k${i}`, i])),
  ];
  for (const value of others) expect(encodeForBench(value)).toEqual(encode(value));
});
