/**
 * Whom a client trusts, trust on first use: the first balancer it reaches pins
 * the cluster CA's fingerprint (client/known-hosts.ts); later, that balancer and
 * every server of its cluster must show certificates under that CA, and a
 * different CA is refused loudly, with both fingerprints. `--ca FILE`,
 * `--ca-fingerprint` or `--insecure-plaintext` set it beforehand.
 */
import { readFileSync } from "node:fs";
import { KnownHostsFile, type KnownHosts } from "../client/known-hosts";
import { ChatError } from "../protocol/errors";
import { fingerprint, firstCertificate, normalFingerprint } from "./ca";
import { PLAINTEXT, type ClientTls, type Plaintext } from "./tls";

export interface TrustOptions {
  plaintext?: boolean;
  /** The CA itself (--ca FILE): no first use to trust. */
  caPem?: string;
  /** The CA's expected fingerprint (--ca-fingerprint): first use is checked against it. */
  fingerprint?: string;
}

/** What known_hosts records for a balancer whose certificate is a public CA's (--tls-cert): the system roots. */
export const PUBLIC_PKI = "PUBLIC-PKI";

export interface Trust {
  /** How to call this address. */
  tlsFor(address: string): ClientTls | Plaintext;
  /** The CA that `address` named on first contact (none: a public certificate): pins it, or throws E_CA_CHANGED. */
  learn(address: string, caPem: string | undefined): ClientTls;
  /** The CA `address` named after it failed the pinned one: E_CA_CHANGED when it is another CA. */
  mismatch(address: string, caPem: string | undefined): ChatError | undefined;
}

export class ClientTrust implements Trust {
  /** The CA of the cluster this process has reached (or PUBLIC_PKI): its servers are checked against it, not trusted on first use. */
  private cluster?: string;
  private readonly expected?: string;

  constructor(
    private readonly known: KnownHosts | undefined,
    private readonly options: TrustOptions = {},
  ) {
    this.expected = options.fingerprint ? normalFingerprint(options.fingerprint) : undefined;
    if (options.caPem) this.cluster = firstCertificate(options.caPem);
  }

  tlsFor(address: string): ClientTls | Plaintext {
    if (this.options.plaintext) return PLAINTEXT;
    if (this.options.caPem) return { caPem: this.cluster! };
    const pinned = this.known?.get(address);
    if (pinned && (!this.expected || pinned.fingerprint === this.expected)) {
      // The cluster this process reached: the servers its balancer names are checked against it.
      this.cluster = pinned.fingerprint === PUBLIC_PKI ? PUBLIC_PKI : pinned.caPem;
      return this.tlsOf(this.cluster);
    }
    if (this.cluster) return this.tlsOf(this.cluster);
    return { learn: true };
  }

  learn(address: string, caPem: string | undefined): ClientTls {
    const ca = caPem === undefined ? PUBLIC_PKI : firstCertificate(caPem);
    const got = ca === PUBLIC_PKI ? PUBLIC_PKI : fingerprint(ca);
    const pinned = this.known?.get(address);
    const expected = this.expected ?? pinned?.fingerprint;
    if (expected && expected !== got) throw changed(address, expected, got, !!this.expected);
    this.known?.pin(address, { fingerprint: got, caPem: ca === PUBLIC_PKI ? "" : ca });
    this.cluster = ca;
    return this.tlsOf(ca);
  }

  mismatch(address: string, caPem: string | undefined): ChatError | undefined {
    const want = this.tlsFor(address);
    if (want === PLAINTEXT || "learn" in want) return undefined;
    const expected = "systemRoots" in want ? PUBLIC_PKI : fingerprint(want.caPem);
    const got = caPem === undefined ? PUBLIC_PKI : fingerprint(firstCertificate(caPem));
    return expected === got ? undefined : changed(address, expected, got, !!this.expected || !!this.options.caPem);
  }

  private tlsOf(ca: string): ClientTls {
    return ca === PUBLIC_PKI ? { systemRoots: true } : { caPem: ca };
  }
}

function changed(address: string, expected: string, got: string, fromFlag: boolean): ChatError {
  const source = fromFlag ? "the CA you gave (--ca or --ca-fingerprint)" : "the CA this device pinned on first use";
  // PUBLIC-PKI on either side: a certificate from a public CA (the operator's --tls-cert), checked against the system roots.
  return new ChatError(
    "E_CA_CHANGED",
    [
      `REFUSED: ${address} presents a different cluster certificate authority than ${source}.`,
      `  expected ${expected}`,
      `  got      ${got}`,
      "Someone may be intercepting this connection, or the cluster was set up anew.",
      "Ask the operator for the fingerprint (`chatterbox ca fingerprint`); if it is the new one,",
      `remove the line for ${address} from ${"known_hosts under CHATTERBOX_HOME"} or pass --ca-fingerprint.`,
    ].join("\n"),
  );
}

let current: Trust | undefined;

/** The trust of this process: set by the command line (or tests), else made from the environment. */
export function defaultTrust(): Trust {
  return (current ??= fromEnvironment());
}

/** Without an argument: made again from the environment at the next use (after it changed). */
export function setDefaultTrust(trust?: Trust): void {
  current = trust;
}

/**
 * CHATTERBOX_INSECURE_PLAINTEXT=1, CHATTERBOX_CA=FILE and CHATTERBOX_CA_FINGERPRINT,
 * which the command line's flags set, so that processes it starts (bench workers) inherit them.
 */
function fromEnvironment(): Trust {
  const env = process.env;
  return new ClientTrust(new KnownHostsFile(), {
    plaintext: env.CHATTERBOX_INSECURE_PLAINTEXT === "1",
    caPem: env.CHATTERBOX_CA ? readFileSync(env.CHATTERBOX_CA, "utf8") : undefined,
    fingerprint: env.CHATTERBOX_CA_FINGERPRINT || undefined,
  });
}
