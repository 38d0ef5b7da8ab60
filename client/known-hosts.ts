/**
 * The cluster CAs this device has pinned, by balancer address, as SSH keeps
 * known_hosts: CHATTERBOX_HOME/known_hosts, one "ADDRESS FINGERPRINT CERT" a
 * line (CERT is the CA's DER in base64; FINGERPRINT PUBLIC-PKI and CERT "-" for a
 * balancer whose certificate is a public CA's). Behind a tiny interface, so the pins
 * can move into another store later.
 */
import { chmodSync, mkdirSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { homeDir } from "./state";

export interface Pinned {
  fingerprint: string;
  caPem: string;
}

export interface KnownHosts {
  get(address: string): Pinned | undefined;
  pin(address: string, pinned: Pinned): void;
}

export class KnownHostsFile implements KnownHosts {
  /** CHATTERBOX_HOME is read at each use: tests switch homes within one process. */
  constructor(private readonly dir: () => string = homeDir) {}

  get(address: string): Pinned | undefined {
    return this.read().get(address);
  }

  pin(address: string, pinned: Pinned): void {
    const all = this.read();
    all.set(address, pinned);
    // "-" for a balancer with a public CA's certificate: there is no cluster CA to keep.
    const lines = [...all].map(([addr, p]) => `${addr} ${p.fingerprint} ${derOf(p.caPem) || "-"}`);
    mkdirSync(this.dir(), { recursive: true, mode: 0o700 });
    // Written whole and renamed, so that two clients pinning at once never leave half a file.
    const tmp = `${this.path()}.${process.pid}.tmp`;
    writeFileSync(tmp, `${lines.join("\n")}\n`, { mode: 0o600 });
    chmodSync(tmp, 0o600);
    renameSync(tmp, this.path());
  }

  private path(): string {
    return join(this.dir(), "known_hosts");
  }

  private read(): Map<string, Pinned> {
    const all = new Map<string, Pinned>();
    let text = "";
    try {
      text = readFileSync(this.path(), "utf8");
    } catch {
      return all;
    }
    for (const line of text.split("\n")) {
      const [addr, fingerprint, der] = line.trim().split(/\s+/);
      if (addr && fingerprint && der) all.set(addr, { fingerprint, caPem: der === "-" ? "" : pemOf(der) });
    }
    return all;
  }
}

function derOf(pem: string): string {
  return pem.replace(/-----(BEGIN|END) CERTIFICATE-----/g, "").replace(/\s+/g, "");
}

function pemOf(der: string): string {
  return `-----BEGIN CERTIFICATE-----\n${der.match(/.{1,64}/g)!.join("\n")}\n-----END CERTIFICATE-----\n`;
}
