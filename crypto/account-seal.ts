/**
 * Blobs only the account's own devices can read, for the server to keep:
 * XChaCha20-Poly1305 under a key derived (HKDF) from the wrapping key, which
 * only the password gives, one key per purpose, with the user's name bound in
 * as associated data, so the server can store and hand back a blob but can
 * neither read it nor move it to another account or purpose. The synced pins
 * (crypto/pins.ts) and the history backup (crypto/history-backup.ts) are two.
 */
import { xchacha20poly1305 } from "@noble/ciphers/chacha.js";
import { randomBytes } from "@noble/ciphers/utils.js";
import { hkdf } from "@noble/hashes/hkdf.js";
import { sha256 } from "@noble/hashes/sha2.js";
import { pack, unpack } from "msgpackr";
import { abytes, concat, utf8 } from "./bytes.ts";
import { CryptoError } from "./errors.ts";

const VERSION = 1;

/** "pins", "history-backup": names the key and the associated data. */
export type Purpose = string;

/** The key for one purpose: from the wrapping key, never the same bytes. */
export function accountKey(wrapKey: Uint8Array, purpose: Purpose): Uint8Array {
  abytes(wrapKey, "wrapKey", 32);
  return hkdf(sha256, wrapKey, undefined, utf8(`chatterbox/v1/${purpose}`), 32);
}

const aad = (purpose: Purpose, user: string) => concat(Uint8Array.of(VERSION), utf8(`chatterbox/v1/${purpose}\0${user}`));

/** version ‖ 24-byte nonce ‖ ciphertext of the MessagePack of `value`. */
export function sealForAccount(key: Uint8Array, purpose: Purpose, user: string, value: unknown): Uint8Array {
  const nonce = randomBytes(24);
  return concat(Uint8Array.of(VERSION), nonce, xchacha20poly1305(key, nonce, aad(purpose, user)).encrypt(pack(value)));
}

/** The value sealed by sealForAccount; `what` names it in the errors ("The synced pins"). */
export function openForAccount(key: Uint8Array, purpose: Purpose, user: string, blob: Uint8Array, what: string): unknown {
  if (blob.length < 1 + 24 + 16 || blob[0] !== VERSION) throw new CryptoError("E_FORMAT", `${what}: malformed, or from an unknown version`);
  let plain: Uint8Array;
  try {
    plain = xchacha20poly1305(key, blob.subarray(1, 25), aad(purpose, user)).decrypt(blob.subarray(25));
  } catch {
    throw new CryptoError("E_DECRYPT", `${what}: not openable with this account's key`);
  }
  return unpack(plain);
}
