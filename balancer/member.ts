/**
 * Joining the balancer as a cluster member: mutual TLS under the cluster CA,
 * then the challenge-response of server/peer-proof.ts in both directions, so
 * that the server knows it reached the real balancer and the balancer knows the
 * caller holds the cluster secret. Used by servers and by tools (the bench).
 */
import { Link, type LinkOptions } from "../net/link";
import type { ClientTls, Plaintext } from "../net/tls";
import { ChatError } from "../protocol/errors";
import { BALANCER_ID, isNonce, nonce, proof, verifyProof } from "../server/peer-proof";

export interface Membership {
  /** This member's id: a server's id, or a tool's name. */
  id: string;
  secret: Uint8Array;
  tls: ClientTls | Plaintext;
}

export async function connectAsMember(balancer: string, member: Membership, options: LinkOptions = {}): Promise<Link> {
  const mine = nonce();
  const link = await Link.connect(balancer, { ...options, tls: member.tls, hello: { role: "server", server: member.id, nonce: mine } });
  const reply = link.helloReply;
  const h = { caller: member.id, callee: BALANCER_ID, callerNonce: mine, calleeNonce: reply.nonce as Uint8Array };
  if (!isNonce(reply.nonce) || !verifyProof(member.secret, "accept", h, reply.proof)) {
    link.close();
    throw new ChatError("E_AUTH", `${balancer} did not prove it is this cluster's balancer`);
  }
  try {
    await link.request("auth", { proof: proof(member.secret, "connect", h) });
  } catch (error) {
    link.close();
    throw error;
  }
  return link;
}
