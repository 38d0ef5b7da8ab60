// Micro-benchmark of the client's crypto hot paths: how long one send and one receive cost.
//   ./node_modules/.bin/bun bench/crypto.ts
import os from "node:os";
import { DEFAULT_KDF, deriveKeys, generateIdentity, open, randomSalt, safetyNumber, seal, type EnvelopeHeader } from "../crypto/index.ts";

/** Repeats fn until ~minMs have passed (after a warm-up), and reports µs per call. */
function bench(label: string, fn: () => unknown, minMs = 1000): void {
  for (let i = 0; i < 20; i++) fn();
  let n = 0;
  const start = performance.now();
  while (performance.now() - start < minMs) {
    fn();
    n++;
  }
  const us = ((performance.now() - start) * 1000) / n;
  console.log(`${label.padEnd(44)} ${us.toFixed(1).padStart(10)} µs/op   (${n} iterations)`);
}

const cpus = os.cpus();
console.log(`machine: ${cpus[0]?.model ?? "unknown CPU"}, ${cpus.length} cores, ${os.platform()} ${os.arch()}, Bun ${Bun.version}`);

const alice = generateIdentity();
const members = Array.from({ length: 100 }, (_, i) => ({ name: `user${i}`, keys: generateIdentity() }));
const text = new TextEncoder().encode("x".repeat(100));
const header: EnvelopeHeader = { v: 1, from: "alice", conv: "group:friends", cmid: "01J9ZK3Q7C8M2W5X4Y6V0B1N3P", sentAt: Date.now(), kind: "text" };
const to = (n: number) => members.slice(0, n).map((m) => ({ name: m.name, dh: m.keys.dhPublic }));
const sealTo = (n: number) => seal({ header, plaintext: text, sender: alice, recipients: to(n) });
const one = sealTo(1);
const hundred = sealTo(100);
const last = members[99]!;
console.log(`envelope size, 100-char text: ${one.length} B to 1 recipient, ${hundred.length} B to 100 recipients`);

bench("seal + sign, 100 chars, 1 recipient", () => sealTo(1));
bench("seal + sign, 100 chars, 100 recipients", () => sealTo(100));
bench("verify + open, 1 recipient", () => open({ envelope: one, me: members[0]!, senderSign: alice.signPublic }));
bench("verify + open, 100 recipients (last entry)", () => open({ envelope: hundred, me: last, senderSign: alice.signPublic }));
const bobPub = { name: "bob", sign: members[0]!.keys.signPublic, dh: members[0]!.keys.dhPublic };
bench("safety number", () => safetyNumber({ name: "alice", sign: alice.signPublic, dh: alice.dhPublic }, bobPub), 500);
const { N, r, p } = DEFAULT_KDF;
bench(`deriveKeys, scrypt N=2^${Math.log2(N)} r=${r} p=${p}`, () => deriveKeys("correct horse battery", randomSalt(), DEFAULT_KDF), 3000);
