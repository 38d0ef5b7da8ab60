/**
 * Password to keys, on the client: the login key the server checks, the
 * wrapping key it never sees, and the identity keys backed up under it.
 */
import { DEFAULT_KDF, TEST_KDF, deriveKeys, randomSalt, unwrapIdentity, wrapIdentity, type KdfParams } from "../crypto/kdf";
import { generateIdentity, type IdentityKeys } from "../crypto/keys";
import { CryptoError } from "../crypto/errors";
import { hmac } from "@noble/hashes/hmac.js";
import { sha256 } from "@noble/hashes/sha2.js";
import type { Link } from "../net/link";
import { ChatError } from "../protocol/errors";
import { MIN_PASSWORD, NAME_PATTERN } from "../protocol/validate";

/**
 * CHATTERBOX_TEST_KDF=1 makes new accounts cheap to derive and lets the client
 * accept such accounts: for test suites only, never for a real password.
 */
function testKdfAllowed(): boolean {
  return process.env.CHATTERBOX_TEST_KDF === "1";
}

export function newAccountKdf(): KdfParams {
  return testKdfAllowed() ? TEST_KDF : DEFAULT_KDF;
}

export function checkName(user: string): void {
  if (!NAME_PATTERN.test(user)) throw new ChatError("E_INVALID_NAME", `"${user}": names are 1 to 32 characters from a-z, 0-9, '_', '.' and '-', starting with a letter, digit or '_'`);
}

export function checkPassword(password: string): void {
  if (password.length < MIN_PASSWORD) throw new ChatError("E_WEAK_PASSWORD", `Passwords have at least ${MIN_PASSWORD} characters`);
}

/** Refuses derivation settings weaker than ours: a server must not make a password cheap to guess. */
function checkKdf(kdf: KdfParams): void {
  const weakest = testKdfAllowed() ? TEST_KDF : DEFAULT_KDF;
  if (kdf?.alg !== "scrypt" || kdf.N < weakest.N || kdf.r < weakest.r) {
    throw new ChatError("E_AUTH", "The server asks for a weaker key derivation than this client accepts; refusing to send a password-derived key");
  }
}

export async function signupAccount(link: Link, user: string, password: string): Promise<IdentityKeys> {
  checkName(user);
  checkPassword(password);
  const salt = randomSalt();
  const kdf = newAccountKdf();
  const { authKey, wrapKey } = deriveKeys(password, salt, kdf);
  const keys = generateIdentity();
  await link.request("signup", {
    user,
    auth: authKey,
    salt,
    kdf,
    dh: keys.dhPublic,
    sign: keys.signPublic,
    backup: wrapIdentity(keys, wrapKey, user),
  });
  return keys;
}

/** The login key for this user, from the salt and settings the server keeps for them. */
export async function loginKeys(link: Link, user: string, password: string): Promise<{ authKey: Uint8Array; wrapKey: Uint8Array; salt: Uint8Array; kdf: KdfParams }> {
  checkName(user);
  const { salt, kdf } = await link.request("salt", { user });
  checkKdf(kdf as KdfParams);
  const keys = deriveKeys(password, new Uint8Array(salt as Uint8Array), kdf as KdfParams);
  return { ...keys, salt: new Uint8Array(salt as Uint8Array), kdf: kdf as KdfParams };
}

/**
 * What a device keeps to tell, without the server, whether a password given
 * later is this account's: the salt and settings, and a MAC under the login
 * key (which it never stores). Checked when a saved session is resumed
 * although a password was given, so a wrong CHATTERBOX_PASSWORD is not silently ignored.
 */
export function passwordCheck(authKey: Uint8Array, salt: Uint8Array, kdf: KdfParams): string {
  return JSON.stringify({ salt: Buffer.from(salt).toString("base64"), kdf, mac: Buffer.from(checkMac(authKey)).toString("base64") });
}

export function passwordMatches(check: string, password: string): boolean {
  try {
    const { salt, kdf, mac } = JSON.parse(check) as { salt: string; kdf: KdfParams; mac: string };
    const { authKey } = deriveKeys(password, new Uint8Array(Buffer.from(salt, "base64")), kdf);
    return Buffer.from(checkMac(authKey)).equals(Buffer.from(mac, "base64"));
  } catch {
    return true; // an unreadable check proves nothing either way
  }
}

function checkMac(authKey: Uint8Array): Uint8Array {
  return hmac(sha256, authKey, new TextEncoder().encode("chatterbox/v1/local-password-check"));
}

export function restoreIdentity(backup: Uint8Array, wrapKey: Uint8Array, user: string): IdentityKeys {
  try {
    return unwrapIdentity(new Uint8Array(backup), wrapKey, user);
  } catch (error) {
    if (error instanceof CryptoError) throw new ChatError("E_AUTH", `The key backup could not be opened: ${error.message}`);
    throw error;
  }
}

/** New password: re-derive, re-wrap the same identity, and let the server swap both in one transaction. */
/** Returns the new wrapping key. */
export async function changePassword(link: Link, user: string, oldPassword: string, newPassword: string, keys: IdentityKeys): Promise<Uint8Array> {
  checkPassword(newPassword);
  const old = await loginKeys(link, user, oldPassword);
  const salt = randomSalt();
  const kdf = newAccountKdf();
  const next = deriveKeys(newPassword, salt, kdf);
  await link.request("passwd", { old: old.authKey, auth: next.authKey, salt, kdf, backup: wrapIdentity(keys, next.wrapKey, user) });
  return next.wrapKey;
}
