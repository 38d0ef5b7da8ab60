import { xchacha20poly1305 } from "@noble/ciphers/chacha.js";
import { ed25519, x25519 } from "@noble/curves/ed25519.js";
import { hkdf } from "@noble/hashes/hkdf.js";
import { sha256 } from "@noble/hashes/sha2.js";
import { bytesToHex, hexToBytes } from "@noble/hashes/utils.js";
import { expect, test } from "bun:test";
import { identityFromPrivate, open, seal } from "../crypto/index.ts";
import vector from "./vectors/envelope-v1.json";

const utf8 = (s: string) => new TextEncoder().encode(s);
const people = new Map(vector.people.map((p) => [p.name, identityFromPrivate(hexToBytes(p.dhPrivate), hexToBytes(p.signPrivate))]));
const alice = people.get(vector.sender)!;
const envelope = hexToBytes(vector.envelope);

test("sealing the vector's inputs with its rng reproduces the checked-in envelope byte for byte", () => {
  const outputs = vector.rng.map(hexToBytes);
  const sealed = seal({
    header: { ...vector.header, v: 1 },
    plaintext: utf8(vector.plaintext),
    sender: alice,
    recipients: vector.recipients.map((name) => ({ name, dh: people.get(name)!.dhPublic })),
    rng: (n) => {
      const next = outputs.shift()!;
      if (next.length !== n) throw new Error(`rng asked for ${n} bytes, vector has ${next.length}`);
      return next;
    },
  });
  expect(bytesToHex(sealed)).toBe(vector.envelope);
});

test("the checked-in envelope opens for the sender and every recipient", () => {
  const texts = [vector.sender, ...vector.recipients].map((name) => {
    const { plaintext } = open({ envelope, me: { name, keys: people.get(name)! }, senderSign: alice.signPublic, expect: { from: "alice", conv: vector.header.conv } });
    return new TextDecoder().decode(plaintext);
  });
  expect(texts).toEqual([vector.plaintext, vector.plaintext, vector.plaintext]);
});

// Decodes the vector with the primitives alone, following PROTOCOL.md, so the document and the code cannot drift apart.
test("the checked-in envelope decodes by hand exactly as PROTOCOL.md describes", () => {
  let at = 0;
  const take = (n: number) => envelope.subarray(at, (at += n));
  const str8 = () => new TextDecoder().decode(take(take(1)[0]!));
  const version = take(1)[0];
  const [from, conv, cmid] = [str8(), str8(), str8()];
  const sentAt = Number(new DataView(take(8).slice().buffer).getBigUint64(0));
  const kind = str8();
  const headerBytes = envelope.subarray(0, at);
  const ephPub = take(32);
  const count = (take(1)[0]! << 8) | take(1)[0]!;
  const entries = Array.from({ length: count }, () => ({ name: str8(), sealed: take(48) }));
  const nonce = take(24);
  const ciphertext = take(envelope.length - 64 - at);
  const signature = take(64);

  const bob = people.get("bob")!;
  const bobIndex = entries.findIndex((e) => e.name === "bob");
  const shared = x25519.getSharedSecret(bob.dhPrivate, ephPub);
  const wk = hkdf(sha256, shared, new Uint8Array([...ephPub, ...bob.dhPublic]), utf8("chatterbox/v1/seal"), 32);
  const entryNonce = new Uint8Array(24);
  entryNonce[23] = bobIndex;
  const contentKey = xchacha20poly1305(wk, entryNonce, utf8("bob")).decrypt(entries[bobIndex]!.sealed);
  const plaintext = xchacha20poly1305(contentKey, nonce, headerBytes).decrypt(ciphertext);
  const signedOver = new Uint8Array([...utf8("chatterbox/v1/envelope"), ...envelope.subarray(0, envelope.length - 64)]);

  expect({
    header: { v: version, from, conv, cmid, sentAt, kind },
    ephPub: bytesToHex(ephPub),
    names: entries.map((e) => e.name),
    nonce: bytesToHex(nonce),
    contentKey: bytesToHex(contentKey),
    plaintext: new TextDecoder().decode(plaintext),
    signatureValid: ed25519.verify(signature, signedOver, alice.signPublic),
  }).toEqual({
    header: vector.header,
    ephPub: bytesToHex(x25519.getPublicKey(hexToBytes(vector.rng[2]!))),
    names: [vector.sender, ...vector.recipients],
    nonce: vector.rng[1]!,
    contentKey: vector.rng[0]!,
    plaintext: vector.plaintext,
    signatureValid: true,
  });
});
