// A number two people read to each other to confirm that neither the server nor anyone else
// substituted their keys. Signal's construction: iterated SHA-512 per party, 30 digits each.
import { sha512 } from "@noble/hashes/sha2.js";
import { abytes, astring, concat, utf8 } from "./bytes.ts";

const VERSION = Uint8Array.of(0, 1);
// Makes a brute-force search for a colliding key ~5200x more expensive, as in Signal.
const ITERATIONS = 5200;

/**
 * Both keys count: a substituted X25519 key alone would let the server read everything sent to
 * that party, so comparing only the signing key would not catch it.
 */
export interface SafetyParty {
  name: string;
  sign: Uint8Array;
  dh: Uint8Array;
}

function digitsOf(party: SafetyParty, title: string): string {
  astring(party?.name, `${title}.name`);
  abytes(party.sign, `${title}.sign`, 32);
  abytes(party.dh, `${title}.dh`, 32);
  const key = concat(party.sign, party.dh);
  let hash = sha512(concat(VERSION, key, utf8(party.name)));
  for (let i = 0; i < ITERATIONS; i++) hash = sha512(concat(hash, key));
  let digits = "";
  for (let at = 0; at < 30; at += 5) {
    // 40-bit big-endian chunk; Number holds it exactly
    const chunk = hash.subarray(at, at + 5).reduce((n, b) => n * 256 + b, 0);
    digits += String(chunk % 100000).padStart(5, "0");
  }
  return digits;
}

/** 60 digits in 12 groups of five; the same whichever party computes it. */
export function safetyNumber(a: SafetyParty, b: SafetyParty): string {
  const both = [digitsOf(a, "a"), digitsOf(b, "b")].sort().join("");
  return both.match(/\d{5}/g)!.join(" ");
}
