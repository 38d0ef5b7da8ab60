/**
 * What this device trusts: contacts' identity keys pinned on first use
 * (./keystore.ts), the pins shared with the user's other devices under a key
 * from the password, and safety numbers to compare in person. A key that
 * changed is pinned only once the user trusts the key they were shown.
 */
import type { IdentityKeys, PublicIdentity } from "../crypto/keys";
import { pinsKey } from "../crypto/pins";
import { safetyNumber } from "../crypto/safety";
import { E2E } from "./e2e";
import type { Caller } from "./files";
import { Pins } from "./keystore";
import type { LocalStore } from "./store";

/** What trust needs around it. */
export interface TrustParts {
  user: string;
  /** The device's store (pins, the pins' key, what was seen). */
  store: LocalStore;
  /** This device's identity keys. */
  keys(): IdentityKeys;
  /** Requests that survive a reconnect (fetching keys, putting pins). */
  call: Caller["call"];
}

export class Trust {
  readonly pins: Pins;
  /** The pairwise envelopes, which check each sender against the pins. */
  readonly e2e: E2E;

  constructor(private readonly parts: TrustParts) {
    this.pins = new Pins(parts.store);
    this.pins.server = { call: (op, args) => parts.call(op, args) };
    this.e2e = new E2E(parts.user, () => parts.keys(), this.pins, (names) => this.fetchKeys(names), parts.store);
  }

  /** The login reply's copy of the pins: a new device starts with what the user already trusts; a device that pinned more shares it. */
  loggedIn(blob: Uint8Array | null | undefined): void {
    if (this.pins.merge(blob ? new Uint8Array(blob) : null)) this.pins.upload();
  }

  /** The pins are sealed under a key derived from the password's wrapping key. */
  passwordLogin(wrapKey: Uint8Array): void {
    this.parts.store.set("pins.key", Buffer.from(pinsKey(wrapKey)).toString("base64"));
  }

  /** The password changed: the pins are sealed again under the new key, and are on the server when this returns. */
  async passwordChanged(): Promise<void> {
    this.pins.upload();
    await this.pins.flushed();
  }

  /** Resolves once the pins made so far are on the server. */
  flushed(): Promise<void> {
    return this.pins.flushed();
  }

  /**
   * The safety number of this user and a contact. While a key change waits to
   * be trusted, it is computed from the key now offered: comparing it is how
   * the user finds out whether that key is really the contact's.
   */
  async safetyNumber(other: string): Promise<string> {
    const { user } = this.parts;
    const mine = await this.e2e.keyOf(user);
    const theirs = await this.e2e.keyOf(other, true);
    const key = theirs.changed ? this.e2e.offered(other)! : theirs.key;
    // What /trust may pin afterwards: this key, and no other.
    this.e2e.showed(other, key);
    return safetyNumber({ name: user, ...mine.key }, { name: other, ...key });
  }

  /** Pins the contact's new key (the one whose safety number was shown). */
  trust(other: string): Promise<void> {
    return this.e2e.trust(other);
  }

  private async fetchKeys(names: string[]): Promise<Record<string, PublicIdentity>> {
    return (await this.parts.call("keys", { users: names })).keys as Record<string, PublicIdentity>;
  }
}
