/**
 * The contacts' identity keys this device pinned on first use, or accepted
 * with /trust, kept in the local store and shared with the user's other
 * devices: sealed under a key only the password gives (crypto/pins.ts), so a
 * new device starts with what the user already trusts, and the server can
 * neither read nor change the list.
 */
import type { PublicIdentity } from "../crypto/keys";
import { openPins, sealPins, type SealedPin } from "../crypto/pins";
import { ChatError } from "../protocol/errors";
import type { LocalStore, Pin } from "./store";

export type { Pin };

/** What pin syncing needs of the connection: two requests. */
export interface PinServer {
  call(op: string, args: Record<string, unknown>): Promise<Record<string, unknown>>;
}

export class Pins {
  private uploading?: Promise<void>;
  private again = false;
  /** Set when the server's copy could not be merged yet (no key on this device). */
  server?: PinServer;

  constructor(private readonly store: LocalStore) {}

  get(name: string): Pin | undefined {
    return this.store.pin(name);
  }

  set(name: string, keys: PublicIdentity): void {
    this.store.setPin(name, { dh: keys.dh, sign: keys.sign, since: new Date().toISOString() });
    this.upload();
  }

  /**
   * Folds the server's copy in: a contact pinned on one side only is taken,
   * and where both sides pinned a contact differently the later decision wins
   * (a /trust is newer than the pin it replaced). Returns whether ours had
   * something the server's lacks.
   */
  merge(blob: Uint8Array | null | undefined): boolean {
    const key = this.key();
    if (!key || !blob) return !!key && this.store.allPins().size > 0;
    let theirs: Record<string, SealedPin>;
    try {
      theirs = openPins(key, this.store.user, blob);
    } catch {
      return true; // sealed under an older password: ours replaces it
    }
    const mine = this.store.allPins();
    let ahead = false;
    for (const [name, pin] of Object.entries(theirs)) {
      const local = mine.get(name);
      if (!local || (pin.since > local.since && !sameKeys(local, pin))) this.store.setPin(name, pin);
    }
    for (const [name, pin] of mine) {
      const remote = theirs[name];
      if (!remote || (pin.since > remote.since && !sameKeys(pin, remote))) ahead = true;
    }
    return ahead;
  }

  /** Seals this device's pins and stores them on the server, merging again if another device wrote first. */
  upload(): void {
    if (!this.server || !this.key()) return;
    if (this.uploading) {
      this.again = true;
      return;
    }
    this.uploading = this.push(this.server).finally(() => {
      this.uploading = undefined;
      if (this.again) {
        this.again = false;
        this.upload();
      }
    });
  }

  /** Resolves once what was pinned so far is on the server (or could not be put there now). */
  async flushed(): Promise<void> {
    while (this.uploading) await this.uploading;
  }

  private async push(server: PinServer): Promise<void> {
    for (let attempt = 0; attempt < 5; attempt++) {
      try {
        const current = await server.call("pins", {});
        this.merge(current.blob as Uint8Array | null);
        const all: Record<string, SealedPin> = Object.fromEntries(this.store.allPins());
        await server.call("pins.put", { blob: sealPins(this.key()!, this.store.user, all), version: current.version });
        return;
      } catch (error) {
        if (!(error instanceof ChatError) || error.code !== "E_CONFLICT") return;
      }
    }
  }

  private key(): Uint8Array | undefined {
    const saved = this.store.get("pins.key");
    return saved ? new Uint8Array(Buffer.from(saved, "base64")) : undefined;
  }
}

export function sameKeys(a: PublicIdentity, b: PublicIdentity): boolean {
  return Buffer.from(a.dh).equals(Buffer.from(b.dh)) && Buffer.from(a.sign).equals(Buffer.from(b.sign));
}
