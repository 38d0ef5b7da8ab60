/**
 * TLS settings for Bun.listen and Bun.connect, in one place, so that no caller
 * can pass the `tls: {}` that Bun.connect takes as "no TLS at all". Plaintext is
 * a value of its own, spelled as the flag that asks for it.
 */
import { readFileSync } from "node:fs";
import { rootCertificates } from "node:tls";
import { ChatError } from "../protocol/errors";

export const PLAINTEXT = "insecure-plaintext";
export type Plaintext = typeof PLAINTEXT;

/** What a listener presents, and the CA it checks the certificates of callers against (mutual TLS). */
export interface ServerTls {
  certPem: string;
  keyPem: string;
  caPem: string;
  /** The certificate is from a public CA (--tls-cert): hello names no cluster CA, and clients check against the system roots. */
  publicCertificate?: boolean;
}

/** How a caller checks the other end, and the certificate it shows, if it has one (a server calling a peer). */
export type ClientTls =
  | { caPem: string; certPem?: string; keyPem?: string }
  /** First contact: take the CA the other end names, so that the caller can pin it and connect again. */
  | { learn: true }
  /** An operator's certificate from a public CA: the system's roots decide. */
  | { systemRoots: true };

export function listenerTls(tls: ServerTls | Plaintext): Record<string, unknown> | undefined {
  if (tls === PLAINTEXT) return undefined;
  // Chat clients have no certificate: ask for one, and let the hello decide who must have shown it.
  return { cert: tls.certPem, key: tls.keyPem, ca: tls.caPem, requestCert: true, rejectUnauthorized: false };
}

export function connectTls(tls: ClientTls | Plaintext): Record<string, unknown> | undefined {
  if (tls === PLAINTEXT) return undefined;
  if ("learn" in tls) return { rejectUnauthorized: false };
  // Not {}: Bun.connect takes an empty tls object for no TLS at all.
  if ("systemRoots" in tls) return { rejectUnauthorized: true };
  return {
    ca: tls.caPem,
    rejectUnauthorized: true,
    ...(tls.certPem && tls.keyPem ? { cert: tls.certPem, key: tls.keyPem } : {}),
  };
}

/**
 * The handshake's verdict for a caller. Bun checks the chain and the name,
 * but a failed check still reaches the handshake handler: refuse here.
 */
export function handshakeError(tls: ClientTls | Plaintext, address: string, success: boolean, error: Error | null): ChatError | undefined {
  if (tls === PLAINTEXT || "learn" in tls) return success ? undefined : new ChatError("E_UNAVAILABLE", `TLS handshake with ${address} failed`);
  if (success && !error) return undefined;
  const code = (error as { code?: string } | null)?.code;
  // A connection that broke during the handshake says nothing about certificates: try again later.
  if (!code || /^E(CONNRESET|CONNREFUSED|PIPE|TIMEDOUT|CONNABORTED)$/.test(code)) {
    return new ChatError("E_UNAVAILABLE", `TLS handshake with ${address} broke off: ${error?.message ?? "closed"}`);
  }
  const reason = error?.message ?? "the handshake failed";
  return new ChatError("E_TLS", `Refused ${address}: its certificate is not trusted (${code ? `${code}: ` : ""}${reason})`);
}

/**
 * What members trust when their cluster's listeners present public
 * certificates (--tls-cert): the cluster CA, the system's roots, and the
 * operator's own (NODE_EXTRA_CA_CERTS, which Bun adds for clients by itself).
 */
export function withPublicRoots(caPem: string): string {
  const extraFile = process.env.NODE_EXTRA_CA_CERTS;
  const extra = extraFile ? readFileSync(extraFile, "utf8") : "";
  return [caPem, ...rootCertificates, extra].join("\n");
}

/** An operator's certificate and key files, presented instead of the cluster's own; callers' certificates still checked against the cluster CA. */
export function publicServerTls(certFile: string, keyFile: string, cluster: ServerTls): ServerTls {
  return { certPem: readFileSync(certFile, "utf8"), keyPem: readFileSync(keyFile, "utf8"), caPem: cluster.caPem, publicCertificate: true };
}
