import { expect, test } from "bun:test";
import { generateIdentity, safetyNumber } from "../crypto/index.ts";

const alice = { name: "alice", ...pub(generateIdentity()) };
const bob = { name: "bob", ...pub(generateIdentity()) };

function pub(k: { dhPublic: Uint8Array; signPublic: Uint8Array }) {
  return { dh: k.dhPublic, sign: k.signPublic };
}

test("a safety number is 60 digits in 12 groups of five", () => {
  expect(safetyNumber(alice, bob)).toMatch(/^\d{5}( \d{5}){11}$/);
});

test("both parties compute the same safety number", () => {
  expect(safetyNumber(bob, alice)).toBe(safetyNumber(alice, bob));
});

test("the safety number changes when a signing key is substituted", () => {
  const fake = { ...bob, sign: generateIdentity().signPublic };
  expect(safetyNumber(alice, fake)).not.toBe(safetyNumber(alice, bob));
});

test("the safety number changes when an encryption key is substituted", () => {
  const fake = { ...bob, dh: generateIdentity().dhPublic };
  expect(safetyNumber(alice, fake)).not.toBe(safetyNumber(alice, bob));
});

test("the safety number keeps half its digits when only the other party's key changes", () => {
  const fake = { ...bob, sign: generateIdentity().signPublic };
  const mine = (n: string) => n.replaceAll(" ", "");
  const halves = (n: string) => [mine(n).slice(0, 30), mine(n).slice(30)];
  const shared = halves(safetyNumber(alice, fake)).filter((h) => halves(safetyNumber(alice, bob)).includes(h));
  expect(shared.length).toBe(1);
});
