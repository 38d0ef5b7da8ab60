/**
 * The challenge-response that cluster members run on top of mutual TLS, on
 * peer links and towards the balancer. Each proof is an HMAC under the cluster
 * secret over both ids and both fresh nonces, so a proof is good for one
 * handshake between those two parties only: it cannot be replayed on another
 * connection nor spliced into a handshake with someone else.
 */
import { createHmac, timingSafeEqual } from "node:crypto";

export const NONCE_BYTES = 32;
/** The callee id a server uses for the balancer, which has none of its own. */
export const BALANCER_ID = "balancer";

export type ProofRole = "accept" | "connect";

export interface Handshake {
  /** The one who connected and its nonce; the one who accepted and its nonce. */
  caller: string;
  callee: string;
  callerNonce: Uint8Array;
  calleeNonce: Uint8Array;
}

export function nonce(): Uint8Array {
  return crypto.getRandomValues(new Uint8Array(NONCE_BYTES));
}

export function isNonce(value: unknown): value is Uint8Array {
  return value instanceof Uint8Array && value.length === NONCE_BYTES;
}

export function proof(secret: Uint8Array, role: ProofRole, h: Handshake): Uint8Array {
  // JSON keeps the ids unambiguous (no "a b"+"c" = "a"+"b c"); the nonces have a fixed length.
  return new Uint8Array(
    createHmac("sha256", secret)
      .update(JSON.stringify(["chatterbox member proof v2", role, h.caller, h.callee]))
      .update(h.callerNonce)
      .update(h.calleeNonce)
      .digest(),
  );
}

export function verifyProof(secret: Uint8Array, role: ProofRole, h: Handshake, given: unknown): boolean {
  if (!(given instanceof Uint8Array)) return false;
  const expected = proof(secret, role, h);
  return given.length === expected.length && timingSafeEqual(given, expected);
}
