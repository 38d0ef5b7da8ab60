// The crypto layer's public surface: pure functions over bytes, no I/O.
export { CryptoError, CryptoReasons, type CryptoReason } from "./errors.ts";
export { generateIdentity, identityFromPrivate, publicOf, type IdentityKeys, type PublicIdentity } from "./keys.ts";
export {
  DEFAULT_KDF,
  TEST_KDF,
  SALT_BYTES,
  deriveKeys,
  randomSalt,
  unknownUserSalt,
  wrapIdentity,
  unwrapIdentity,
  type KdfParams,
} from "./kdf.ts";
export { seal, open, peekHeader, type EnvelopeHeader, type Recipient } from "./envelope.ts";
export { safetyNumber, type SafetyParty } from "./safety.ts";
