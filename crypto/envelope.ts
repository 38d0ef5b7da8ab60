// One message, encrypted once under a fresh content key; that key is sealed to every recipient
// and to the sender, and the sender signs the whole envelope.
import { xchacha20poly1305 } from "@noble/ciphers/chacha.js";
import { randomBytes } from "@noble/ciphers/utils.js";
import { ed25519, x25519 } from "@noble/curves/ed25519.js";
import { hkdf } from "@noble/hashes/hkdf.js";
import { sha256 } from "@noble/hashes/sha2.js";
import { abytes, astring, concat, equalBytes, utf8, Writer } from "./bytes.ts";
import { encodeHeader, parseEnvelope, parseHeader, SIGNATURE_BYTES, type EnvelopeHeader } from "./envelope-format.ts";
import { CryptoError } from "./errors.ts";
import type { IdentityKeys } from "./keys.ts";

export type { EnvelopeHeader } from "./envelope-format.ts";

export interface Recipient {
  name: string;
  /** X25519 public key, as pinned by the sender. */
  dh: Uint8Array;
}

const SEAL_INFO = utf8("chatterbox/v1/seal");
// Domain separation: an identity signature over an envelope can never pass for any other statement.
const SIGN_CONTEXT = utf8("chatterbox/v1/envelope");
const MAX_ENTRIES = 0xffff;

/** Each wrapping key is used once, but the index keeps nonces distinct even if two names share a key. */
function entryNonce(index: number): Uint8Array {
  const nonce = new Uint8Array(24);
  nonce[22] = index >>> 8;
  nonce[23] = index & 0xff;
  return nonce;
}

function wrappingKey(shared: Uint8Array, ephPub: Uint8Array, recipientPub: Uint8Array): Uint8Array {
  return hkdf(sha256, shared, concat(ephPub, recipientPub), SEAL_INFO, 32);
}

/** The sender first, then each recipient once; the sender may be listed among recipients or not. */
function keyHolders(from: string, sender: IdentityKeys, recipients: Recipient[]): Recipient[] {
  if (!Array.isArray(recipients)) throw new TypeError("recipients: expected an array");
  const out: Recipient[] = [{ name: from, dh: sender.dhPublic }];
  const names = new Set([from]);
  for (const [i, r] of recipients.entries()) {
    astring(r?.name, `recipients[${i}].name`);
    abytes(r.dh, `recipients[${i}].dh`, 32);
    if (r.name === from) {
      if (!equalBytes(r.dh, sender.dhPublic)) throw new TypeError(`recipients[${i}]: the sender listed with another key`);
      continue;
    }
    if (names.has(r.name)) throw new TypeError(`recipients[${i}]: ${r.name} is listed twice`);
    names.add(r.name);
    out.push(r);
  }
  if (out.length > MAX_ENTRIES) throw new TypeError(`recipients: at most ${MAX_ENTRIES - 1}`);
  return out;
}

function take(rng: (n: number) => Uint8Array, n: number, title: string): Uint8Array {
  return abytes(rng(n), `rng output for ${title}`, n);
}

export function seal(input: {
  header: EnvelopeHeader;
  plaintext: Uint8Array;
  sender: IdentityKeys;
  recipients: Recipient[];
  /** Only for test vectors: called for the content key (32), content nonce (24), ephemeral secret (32). */
  rng?: (n: number) => Uint8Array;
}): Uint8Array {
  const { header, plaintext, sender, recipients, rng = randomBytes } = input ?? ({} as never);
  const headerBytes = encodeHeader(header);
  abytes(plaintext, "plaintext");
  abytes(sender?.dhPublic, "sender.dhPublic", 32);
  abytes(sender.signPrivate, "sender.signPrivate", 32);
  const holders = keyHolders(header.from, sender, recipients);

  const contentKey = take(rng, 32, "content key");
  const nonce = take(rng, 24, "content nonce");
  const ephPriv = take(rng, 32, "ephemeral key");
  const ephPub = x25519.getPublicKey(ephPriv);

  const w = new Writer().bytes(headerBytes).bytes(ephPub).u16(holders.length);
  for (const [i, { name, dh }] of holders.entries()) {
    let shared: Uint8Array;
    try {
      shared = x25519.getSharedSecret(ephPriv, dh);
    } catch {
      throw new TypeError(`recipient ${name}: not a usable X25519 public key`);
    }
    const wk = wrappingKey(shared, ephPub, dh);
    w.str8(name).bytes(xchacha20poly1305(wk, entryNonce(i), utf8(name)).encrypt(contentKey));
  }
  w.bytes(nonce).bytes(xchacha20poly1305(contentKey, nonce, headerBytes).encrypt(plaintext));
  const body = w.finish();
  return concat(body, ed25519.sign(concat(SIGN_CONTEXT, body), sender.signPrivate));
}

/** Unverified: only to learn whose signing key to look up before calling open(). */
export function peekHeader(envelope: Uint8Array): EnvelopeHeader {
  return parseHeader(abytes(envelope, "envelope"));
}

export function open(input: {
  envelope: Uint8Array;
  me: { name: string; keys: IdentityKeys };
  /** The pinned Ed25519 public key of the sender the caller expects. */
  senderSign: Uint8Array;
  expect?: { from?: string; conv?: string };
}): { header: EnvelopeHeader; plaintext: Uint8Array; recipients: string[] } {
  const { envelope, me, senderSign, expect = {} } = input ?? ({} as never);
  abytes(envelope, "envelope");
  astring(me?.name, "me.name");
  abytes(me.keys?.dhPrivate, "me.keys.dhPrivate", 32);
  abytes(me.keys.dhPublic, "me.keys.dhPublic", 32);
  abytes(senderSign, "senderSign", 32);

  // The signature is the last 64 bytes, so it is checked before a single byte is parsed or trusted.
  if (envelope.length < SIGNATURE_BYTES) throw new CryptoError("E_FORMAT", "The envelope is truncated");
  const body = envelope.subarray(0, envelope.length - SIGNATURE_BYTES);
  let valid = false;
  try {
    valid = ed25519.verify(envelope.subarray(body.length), concat(SIGN_CONTEXT, body), senderSign, { zip215: false });
  } catch {
    // a malformed key or signature encoding is simply not a valid signature
  }
  if (!valid) throw new CryptoError("E_SIGNATURE");
  const env = parseEnvelope(envelope);
  const { header, entries } = env;
  if (expect.from !== undefined && header.from !== expect.from)
    throw new CryptoError("E_SIGNATURE", `The message claims to be from ${header.from}, not ${expect.from}`);
  if (expect.conv !== undefined && header.conv !== expect.conv)
    throw new CryptoError("E_WRONG_RECIPIENT", "The message belongs to another conversation");
  const index = entries.findIndex((e) => e.name === me.name);
  if (index < 0) throw new CryptoError("E_WRONG_RECIPIENT");

  try {
    const shared = x25519.getSharedSecret(me.keys.dhPrivate, env.ephPub);
    const wk = wrappingKey(shared, env.ephPub, me.keys.dhPublic);
    const contentKey = xchacha20poly1305(wk, entryNonce(index), utf8(me.name)).decrypt(entries[index]!.sealed);
    const plaintext = xchacha20poly1305(contentKey, env.nonce, env.headerBytes).decrypt(env.ciphertext);
    return { header, plaintext, recipients: entries.map((e) => e.name) };
  } catch {
    throw new CryptoError("E_DECRYPT");
  }
}
