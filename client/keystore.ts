/**
 * The keys a client keeps under CHATTERBOX_HOME/<user>/: its own identity
 * (keys.json, readable by the user alone, like an SSH key) and the identity
 * keys it pinned for each contact on first use (contacts.json).
 */
import { existsSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { identityFromPrivate, type IdentityKeys, type PublicIdentity } from "../crypto/keys";
import { userDir } from "./state";

const b64 = (bytes: Uint8Array) => Buffer.from(bytes).toString("base64");
const unb64 = (text: string) => new Uint8Array(Buffer.from(text, "base64"));

function writeAtomically(file: string, value: unknown): void {
  writeFileSync(`${file}.tmp`, JSON.stringify(value, null, 1), { mode: 0o600 });
  renameSync(`${file}.tmp`, file);
}

export function loadIdentity(user: string): IdentityKeys | undefined {
  const file = join(userDir(user), "keys.json");
  if (!existsSync(file)) return undefined;
  const saved = JSON.parse(readFileSync(file, "utf8"));
  return identityFromPrivate(unb64(saved.dh), unb64(saved.sign));
}

export function saveIdentity(user: string, keys: IdentityKeys): void {
  writeAtomically(join(userDir(user), "keys.json"), { dh: b64(keys.dhPrivate), sign: b64(keys.signPrivate) });
}

export interface Pin extends PublicIdentity {
  since: string;
}

/** Contacts' identity keys as first seen, trusted until the user says otherwise. */
export class Pins {
  private readonly pins = new Map<string, Pin>();
  private readonly file: string | undefined;

  constructor(user: string, persist: boolean) {
    this.file = persist ? join(userDir(user), "contacts.json") : undefined;
    if (this.file && existsSync(this.file)) {
      for (const [name, p] of Object.entries(JSON.parse(readFileSync(this.file, "utf8")) as Record<string, any>)) {
        this.pins.set(name, { dh: unb64(p.dh), sign: unb64(p.sign), since: p.since });
      }
    }
  }

  get(name: string): Pin | undefined {
    return this.pins.get(name);
  }

  set(name: string, keys: PublicIdentity): void {
    this.pins.set(name, { dh: keys.dh, sign: keys.sign, since: new Date().toISOString() });
    if (!this.file) return;
    const out: Record<string, unknown> = {};
    for (const [n, p] of this.pins) out[n] = { dh: b64(p.dh), sign: b64(p.sign), since: p.since };
    writeAtomically(this.file, out);
  }
}

export function sameKeys(a: PublicIdentity, b: PublicIdentity): boolean {
  return Buffer.from(a.dh).equals(Buffer.from(b.dh)) && Buffer.from(a.sign).equals(Buffer.from(b.sign));
}
