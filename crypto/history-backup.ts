// The opt-in history backup: a batch of a device's kept messages, sealed under a key derived from the
// account's wrapping key (so only the password opens it), bound to the account's name.
import { xchacha20poly1305 } from "@noble/ciphers/chacha.js";
import { randomBytes } from "@noble/ciphers/utils.js";
import { hkdf } from "@noble/hashes/hkdf.js";
import { sha256 } from "@noble/hashes/sha2.js";
import { pack, unpack } from "msgpackr";
import { abytes, concat, utf8 } from "./bytes.ts";
import { CryptoError } from "./errors.ts";

const VERSION = 1;

export function historyKey(wrapKey: Uint8Array): Uint8Array {
  abytes(wrapKey, "wrapKey", 32);
  return hkdf(sha256, wrapKey, undefined, utf8("chatterbox/v1/history-backup"), 32);
}

const aad = (user: string) => concat(Uint8Array.of(VERSION), utf8(`chatterbox/v1/history-backup\0${user}`));

export function sealHistory(key: Uint8Array, user: string, items: unknown[]): Uint8Array {
  const nonce = randomBytes(24);
  return concat(Uint8Array.of(VERSION), nonce, xchacha20poly1305(key, nonce, aad(user)).encrypt(pack(items)));
}

export function openHistory(key: Uint8Array, user: string, blob: Uint8Array): unknown[] {
  if (blob.length < 1 + 24 + 16 || blob[0] !== VERSION) throw new CryptoError("E_FORMAT", "The history backup is malformed or from an unknown version");
  let plain: Uint8Array;
  try {
    plain = xchacha20poly1305(key, blob.subarray(1, 25), aad(user)).decrypt(blob.subarray(25));
  } catch {
    throw new CryptoError("E_DECRYPT", "The history backup does not open with this account's key");
  }
  const value = unpack(plain);
  return Array.isArray(value) ? value : [];
}
