import { ed25519 } from "@noble/curves/ed25519.js";
import { describe, expect, test } from "bun:test";
import { generateIdentity, open, peekHeader, seal, type EnvelopeHeader, type IdentityKeys } from "../crypto/index.ts";
import { reasonOf } from "./support/errors";

const alice = generateIdentity();
const bob = generateIdentity();
const carol = generateIdentity();
const mallory = generateIdentity();
const text = new TextEncoder().encode("x".repeat(100));

function header(over: Partial<EnvelopeHeader> = {}): EnvelopeHeader {
  return { v: 1, from: "alice", conv: "dm:alice:bob", cmid: "01J9ZK3Q7C8M2W5X4Y6V0B1N3P", sentAt: 1_700_000_000_000, kind: "text", ...over };
}

const toBob = seal({ header: header(), plaintext: text, sender: alice, recipients: [{ name: "bob", dh: bob.dhPublic }] });

function openAs(name: string, keys: IdentityKeys, envelope = toBob, senderSign = alice.signPublic, expectOpt = {}) {
  return open({ envelope, me: { name, keys }, senderSign, expect: expectOpt });
}

describe("delivery to the intended readers", () => {
  test("a message sealed to one recipient opens for that recipient and for the sender", () => {
    const forBob = openAs("bob", bob, toBob, alice.signPublic, { from: "alice", conv: "dm:alice:bob" });
    const forAlice = openAs("alice", alice);
    expect(forBob).toEqual({ header: header(), plaintext: text, recipients: ["alice", "bob"] });
    expect(forAlice.plaintext).toEqual(text);
  });

  test("a message sealed to 100 recipients opens for every one of them and for the sender", () => {
    const members = Array.from({ length: 100 }, (_, i) => ({ name: `user${i}`, keys: generateIdentity() }));
    const envelope = seal({
      header: header({ conv: "group:friends" }),
      plaintext: text,
      sender: alice,
      recipients: members.map((m) => ({ name: m.name, dh: m.keys.dhPublic })),
    });
    const opened = [{ name: "alice", keys: alice }, ...members].map(
      (m) => open({ envelope, me: m, senderSign: alice.signPublic, expect: { conv: "group:friends" } }).plaintext,
    );
    expect(opened).toEqual(Array(101).fill(text));
  });

  test("the sender listed among the recipients gets one key entry, not two", () => {
    const envelope = seal({
      header: header(),
      plaintext: text,
      sender: alice,
      recipients: [{ name: "alice", dh: alice.dhPublic }, { name: "bob", dh: bob.dhPublic }],
    });
    expect(openAs("bob", bob, envelope).recipients).toEqual(["alice", "bob"]);
  });

  test("an empty message round-trips", () => {
    const envelope = seal({ header: header(), plaintext: new Uint8Array(), sender: alice, recipients: [] });
    expect(openAs("alice", alice, envelope).plaintext).toEqual(new Uint8Array());
  });

  test("a 100-character text to one recipient is a few hundred bytes", () => {
    expect(toBob.length).toBeLessThan(450);
  });

  test("peekHeader names the claimed sender before anything is verified", () => {
    expect(peekHeader(toBob)).toEqual(header());
  });
});

describe("each failure names its own reason", () => {
  test("someone who is not a recipient gets E_WRONG_RECIPIENT", () => {
    expect(reasonOf(() => openAs("carol", carol))).toBe("E_WRONG_RECIPIENT");
  });

  test("a flipped ciphertext byte fails the signature check (E_SIGNATURE)", () => {
    const tampered = toBob.slice();
    tampered[tampered.length - 64 - 20]! ^= 1;
    expect(reasonOf(() => openAs("bob", bob, tampered))).toBe("E_SIGNATURE");
  });

  test("an envelope checked against another user's signing key fails with E_SIGNATURE", () => {
    expect(reasonOf(() => openAs("bob", bob, toBob, mallory.signPublic))).toBe("E_SIGNATURE");
  });

  test("an edited sender name fails with E_SIGNATURE", () => {
    const tampered = toBob.slice();
    tampered.set(new TextEncoder().encode("alicf"), 2); // header: version, length of from, "alice"
    expect(reasonOf(() => openAs("bob", bob, tampered))).toBe("E_SIGNATURE");
  });

  test("a validly signed message from someone else, delivered as alice's, fails with E_SIGNATURE", () => {
    const fromMallory = seal({ header: header({ from: "mallory" }), plaintext: text, sender: mallory, recipients: [{ name: "bob", dh: bob.dhPublic }] });
    expect(reasonOf(() => openAs("bob", bob, fromMallory, mallory.signPublic, { from: "alice" }))).toBe("E_SIGNATURE");
  });

  test("a content key sealed to a substituted public key cannot be opened by the real recipient (E_DECRYPT)", () => {
    const envelope = seal({ header: header(), plaintext: text, sender: alice, recipients: [{ name: "bob", dh: mallory.dhPublic }] });
    expect(reasonOf(() => openAs("bob", bob, envelope))).toBe("E_DECRYPT");
  });

  test("a message replayed into another conversation fails with E_WRONG_RECIPIENT", () => {
    expect(reasonOf(() => openAs("bob", bob, toBob, alice.signPublic, { conv: "group:friends" }))).toBe("E_WRONG_RECIPIENT");
  });

  test("a truncated envelope fails the signature check (E_SIGNATURE)", () => {
    expect(reasonOf(() => openAs("bob", bob, toBob.subarray(0, 300)))).toBe("E_SIGNATURE");
  });

  test("an envelope shorter than a signature fails with E_FORMAT", () => {
    expect(reasonOf(() => openAs("bob", bob, toBob.subarray(0, 63)))).toBe("E_FORMAT");
  });

  test("a correctly signed envelope with a broken layout fails with E_FORMAT", () => {
    const body = toBob.subarray(0, 120);
    const signed = new Uint8Array([...body, ...ed25519.sign(new Uint8Array([...new TextEncoder().encode("chatterbox/v1/envelope"), ...body]), alice.signPrivate)]);
    expect(reasonOf(() => openAs("bob", bob, signed))).toBe("E_FORMAT");
  });

  test("bytes that are not an envelope fail with E_FORMAT, even in peekHeader", () => {
    expect(reasonOf(() => peekHeader(new Uint8Array([2, 0, 0])))).toBe("E_FORMAT");
  });
});

describe("arguments are checked at the boundary", () => {
  test("a recipient listed twice is a caller bug (TypeError)", () => {
    const r = { name: "bob", dh: bob.dhPublic };
    expect(() => seal({ header: header(), plaintext: text, sender: alice, recipients: [r, r] })).toThrow(TypeError);
  });

  test("a low-order X25519 key is refused as a recipient key (TypeError)", () => {
    expect(() => seal({ header: header(), plaintext: text, sender: alice, recipients: [{ name: "bob", dh: new Uint8Array(32) }] })).toThrow(
      TypeError,
    );
  });

  test("a header field too long for its length prefix is refused (TypeError)", () => {
    expect(() => seal({ header: header({ conv: "g".repeat(256) }), plaintext: text, sender: alice, recipients: [] })).toThrow(TypeError);
  });
});
