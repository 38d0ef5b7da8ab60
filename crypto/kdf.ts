// Password to keys, on the client only: the server sees authKey (its login secret), never the
// password or wrapKey, and keeps the identity backup that only wrapKey can open.
import { xchacha20poly1305 } from "@noble/ciphers/chacha.js";
import { randomBytes } from "@noble/ciphers/utils.js";
import { hkdf } from "@noble/hashes/hkdf.js";
import { hmac } from "@noble/hashes/hmac.js";
import { scrypt } from "@noble/hashes/scrypt.js";
import { sha256 } from "@noble/hashes/sha2.js";
import { abytes, astring, concat, utf8 } from "./bytes.ts";
import { CryptoError } from "./errors.ts";
import { identityFromPrivate, type IdentityKeys } from "./keys.ts";

export interface KdfParams {
  alg: "scrypt";
  N: number;
  r: number;
  p: number;
}

/** 220-280 ms and 64 MiB with @noble/hashes under Bun on a 2-core AMD EPYC VM (bench/crypto.ts). */
export const DEFAULT_KDF: KdfParams = Object.freeze({ alg: "scrypt", N: 2 ** 16, r: 8, p: 1 });
/** For tests only: ~10 ms, and far too weak for a real password. */
export const TEST_KDF: KdfParams = Object.freeze({ alg: "scrypt", N: 2 ** 10, r: 8, p: 1 });

export const SALT_BYTES = 16;
const WRAP_VERSION = 1;
const MAX_MEMORY = 2 ** 28; // params come from the server, which must not be able to exhaust the client

function checkParams(params: KdfParams): void {
  const { alg, N, r, p } = params ?? ({} as KdfParams);
  if (alg !== "scrypt") throw new TypeError(`params.alg: unsupported KDF ${String(alg)}`);
  if (!Number.isInteger(N) || N < 2 ** 10 || N > 2 ** 20 || (N & (N - 1)) !== 0)
    throw new TypeError("params.N: expected a power of two from 2^10 to 2^20");
  if (!Number.isInteger(r) || r < 1 || r > 32) throw new TypeError("params.r: expected 1..32");
  if (!Number.isInteger(p) || p < 1 || p > 16) throw new TypeError("params.p: expected 1..16");
  if (128 * N * r > MAX_MEMORY) throw new TypeError("params: N*r needs more than 256 MiB");
}

export function deriveKeys(
  password: string,
  salt: Uint8Array,
  params: KdfParams,
): { authKey: Uint8Array; wrapKey: Uint8Array } {
  if (typeof password !== "string") throw new TypeError("password: expected a string");
  abytes(salt, "salt", SALT_BYTES);
  checkParams(params);
  // the same password typed on another terminal or OS may arrive composed differently
  const pw = utf8(password.normalize("NFC"));
  const master = scrypt(pw, salt, { N: params.N, r: params.r, p: params.p, dkLen: 32, maxmem: MAX_MEMORY * 2 });
  const authKey = hkdf(sha256, master, undefined, utf8("chatterbox/v1/auth"), 32);
  const wrapKey = hkdf(sha256, master, undefined, utf8("chatterbox/v1/wrap"), 32);
  master.fill(0);
  return { authKey, wrapKey };
}

export function randomSalt(): Uint8Array {
  return randomBytes(SALT_BYTES);
}

/** Lets the server answer a salt request for a name that does not exist with a stable, plausible salt. */
export function unknownUserSalt(serverSecret: Uint8Array, username: string): Uint8Array {
  abytes(serverSecret, "serverSecret");
  if (serverSecret.length < 16) throw new TypeError("serverSecret: expected at least 16 bytes");
  astring(username, "username");
  return hmac(sha256, serverSecret, utf8(`chatterbox/v1/unknown-salt\0${username}`)).subarray(0, SALT_BYTES);
}

// The username is in the AAD so the server cannot hand one account's backup to another name.
const wrapAad = (username: string) => concat(Uint8Array.of(WRAP_VERSION), utf8(username));

/** Layout: version (1) || nonce (24) || XChaCha20-Poly1305(dhPrivate || signPrivate) (64 + 16) = 105 bytes. */
export function wrapIdentity(keys: IdentityKeys, wrapKey: Uint8Array, username: string): Uint8Array {
  abytes(keys?.dhPrivate, "keys.dhPrivate", 32);
  abytes(keys?.signPrivate, "keys.signPrivate", 32);
  abytes(wrapKey, "wrapKey", 32);
  astring(username, "username");
  const nonce = randomBytes(24);
  const secrets = concat(keys.dhPrivate, keys.signPrivate);
  const sealed = xchacha20poly1305(wrapKey, nonce, wrapAad(username)).encrypt(secrets);
  secrets.fill(0);
  return concat(Uint8Array.of(WRAP_VERSION), nonce, sealed);
}

export function unwrapIdentity(blob: Uint8Array, wrapKey: Uint8Array, username: string): IdentityKeys {
  abytes(blob, "blob");
  abytes(wrapKey, "wrapKey", 32);
  astring(username, "username");
  if (blob.length !== 1 + 24 + 64 + 16 || blob[0] !== WRAP_VERSION)
    throw new CryptoError("E_FORMAT", "The key backup is malformed or from an unknown version");
  let secrets: Uint8Array;
  try {
    secrets = xchacha20poly1305(wrapKey, blob.subarray(1, 25), wrapAad(username)).decrypt(blob.subarray(25));
  } catch {
    throw new CryptoError("E_WRONG_PASSWORD");
  }
  return identityFromPrivate(secrets.slice(0, 32), secrets.slice(32, 64));
}
