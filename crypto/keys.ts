// An account's long-term identity: X25519 to receive sealed content keys, Ed25519 to sign envelopes.
// Made on the client; the private halves leave it only inside the password-wrapped backup.
import { ed25519, x25519 } from "@noble/curves/ed25519.js";
import { abytes } from "./bytes.ts";

export interface IdentityKeys {
  dhPrivate: Uint8Array;
  dhPublic: Uint8Array;
  signPrivate: Uint8Array;
  signPublic: Uint8Array;
}

/** What others pin and what the server publishes: both halves, since either can be substituted. */
export interface PublicIdentity {
  dh: Uint8Array;
  sign: Uint8Array;
}

export function generateIdentity(): IdentityKeys {
  return identityFromPrivate(x25519.utils.randomSecretKey(), ed25519.utils.randomSecretKey());
}

/** Rebuilds the full key set from the two 32-byte secrets (a backup or a test vector stores only these). */
export function identityFromPrivate(dhPrivate: Uint8Array, signPrivate: Uint8Array): IdentityKeys {
  abytes(dhPrivate, "dhPrivate", 32);
  abytes(signPrivate, "signPrivate", 32);
  return {
    dhPrivate,
    dhPublic: x25519.getPublicKey(dhPrivate),
    signPrivate,
    signPublic: ed25519.getPublicKey(signPrivate),
  };
}

export function publicOf(keys: IdentityKeys): PublicIdentity {
  abytes(keys?.dhPublic, "keys.dhPublic", 32);
  abytes(keys?.signPublic, "keys.signPublic", 32);
  return { dh: keys.dhPublic, sign: keys.signPublic };
}
