/**
 * The pinned contact keys a user's devices share, sealed so that only those
 * devices can read them (crypto/account-seal.ts: under a key derived from the
 * wrapping key, which only the password gives, with the user's name bound in),
 * so the server can store and hand back the blob but neither read nor alter it.
 */
import { accountKey, openForAccount, sealForAccount } from "./account-seal.ts";

const PURPOSE = "pins";

export interface SealedPin {
  dh: Uint8Array;
  sign: Uint8Array;
  since: string;
}

/** The key the pins are sealed under: from the wrapping key, never the same bytes. */
export function pinsKey(wrapKey: Uint8Array): Uint8Array {
  return accountKey(wrapKey, PURPOSE);
}

export function sealPins(key: Uint8Array, user: string, pins: Record<string, SealedPin>): Uint8Array {
  return sealForAccount(key, PURPOSE, user, pins);
}

export function openPins(key: Uint8Array, user: string, blob: Uint8Array): Record<string, SealedPin> {
  const value = openForAccount(key, PURPOSE, user, blob, "The synced pins") as Record<string, { dh: Uint8Array; sign: Uint8Array; since: string }>;
  const out: Record<string, SealedPin> = {};
  for (const [name, p] of Object.entries(value ?? {})) {
    if (p && p.dh?.length === 32 && p.sign?.length === 32 && typeof p.since === "string") out[name] = { dh: new Uint8Array(p.dh), sign: new Uint8Array(p.sign), since: p.since };
  }
  return out;
}
