/**
 * The pinned contact keys a user's devices share, sealed so that only those
 * devices can read them: XChaCha20-Poly1305 under a key derived from the
 * wrapping key (which only the password gives), with the user's name bound in,
 * so the server can store and hand back the blob but neither read nor alter it.
 */
import { xchacha20poly1305 } from "@noble/ciphers/chacha.js";
import { randomBytes } from "@noble/ciphers/utils.js";
import { hkdf } from "@noble/hashes/hkdf.js";
import { sha256 } from "@noble/hashes/sha2.js";
import { pack, unpack } from "msgpackr";
import { abytes, concat, utf8 } from "./bytes.ts";
import { CryptoError } from "./errors.ts";

const VERSION = 1;

export interface SealedPin {
  dh: Uint8Array;
  sign: Uint8Array;
  since: string;
}

/** The key the pins are sealed under: from the wrapping key, never the same bytes. */
export function pinsKey(wrapKey: Uint8Array): Uint8Array {
  abytes(wrapKey, "wrapKey", 32);
  return hkdf(sha256, wrapKey, undefined, utf8("chatterbox/v1/pins"), 32);
}

const aad = (user: string) => concat(Uint8Array.of(VERSION), utf8(`chatterbox/v1/pins\0${user}`));

export function sealPins(key: Uint8Array, user: string, pins: Record<string, SealedPin>): Uint8Array {
  const nonce = randomBytes(24);
  return concat(Uint8Array.of(VERSION), nonce, xchacha20poly1305(key, nonce, aad(user)).encrypt(pack(pins)));
}

export function openPins(key: Uint8Array, user: string, blob: Uint8Array): Record<string, SealedPin> {
  if (blob.length < 1 + 24 + 16 || blob[0] !== VERSION) throw new CryptoError("E_FORMAT", "The synced pins are malformed or from an unknown version");
  let plain: Uint8Array;
  try {
    plain = xchacha20poly1305(key, blob.subarray(1, 25), aad(user)).decrypt(blob.subarray(25));
  } catch {
    throw new CryptoError("E_DECRYPT", "The synced pins do not open with this account's key");
  }
  const value = unpack(plain) as Record<string, { dh: Uint8Array; sign: Uint8Array; since: string }>;
  const out: Record<string, SealedPin> = {};
  for (const [name, p] of Object.entries(value ?? {})) {
    if (p && p.dh?.length === 32 && p.sign?.length === 32 && typeof p.since === "string") out[name] = { dh: new Uint8Array(p.dh), sign: new Uint8Array(p.sign), since: p.since };
  }
  return out;
}
