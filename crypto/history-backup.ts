// The opt-in history backup: a batch of a device's kept messages, sealed under a key derived from the
// account's wrapping key (so only the password opens it), bound to the account's name (crypto/account-seal.ts).
import { accountKey, openForAccount, sealForAccount } from "./account-seal.ts";

const PURPOSE = "history-backup";

export function historyKey(wrapKey: Uint8Array): Uint8Array {
  return accountKey(wrapKey, PURPOSE);
}

export function sealHistory(key: Uint8Array, user: string, items: unknown[]): Uint8Array {
  return sealForAccount(key, PURPOSE, user, items);
}

export function openHistory(key: Uint8Array, user: string, blob: Uint8Array): unknown[] {
  const value = openForAccount(key, PURPOSE, user, blob, "The history backup");
  return Array.isArray(value) ? value : [];
}
