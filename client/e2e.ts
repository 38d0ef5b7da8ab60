/**
 * End-to-end encryption as the client applies it: seal each outgoing message to
 * its recipients' pinned keys, and for each incoming one check, before showing
 * anything, that it is signed by the pinned key of the sender the server names,
 * addressed to this conversation and to us, and not a replay of an earlier one.
 */
import { CryptoError } from "../crypto/errors";
import { open, peekHeader, seal } from "../crypto/envelope";
import type { IdentityKeys, PublicIdentity } from "../crypto/keys";
import { ChatError } from "../protocol/errors";
import type { WireMessage } from "../protocol/messages";
import { decodeContent, encodeContent, type Content } from "./content";
import { sameKeys, type Pins } from "./keystore";

export type Revealed =
  | { status: "ok"; content: Content }
  /** Shown as a failure with its reason, never as text. */
  | { status: "failed"; reason: string; code: string }
  /** The sender's key changed: kept back until the user trusts the new key. */
  | { status: "held" };

export function dmLabel(a: string, b: string): string {
  return a < b ? `dm:${a}:${b}` : `dm:${b}:${a}`;
}

export function groupLabel(name: string): string {
  return `group:${name}`;
}

/** The conversation an incoming message must have been sealed for. */
export function labelOf(message: WireMessage): string {
  return message.group !== undefined ? groupLabel(message.group) : dmLabel(message.from, message.to);
}

/** Remembered (sender, client message id) pairs: an old envelope under a new id is a replay. */
export interface ReplayMemory {
  seenId(key: string): number | undefined;
  remember(key: string, id: number): void;
}

export class E2E {
  private readonly fromServer = new Map<string, PublicIdentity>();
  /** The key whose safety number was last shown for each contact: what /trust may pin. */
  private readonly compared = new Map<string, PublicIdentity>();

  constructor(
    private readonly me: string,
    private readonly keys: () => IdentityKeys,
    private readonly pins: Pick<Pins, "get" | "set">,
    private readonly fetchKeys: (names: string[]) => Promise<Record<string, PublicIdentity>>,
    private readonly seen: ReplayMemory,
  ) {}

  /** The key to use for a contact, pinning it on first use; `changed` when the server now hands out another. */
  async keyOf(name: string, fresh = false): Promise<{ key: PublicIdentity; changed: boolean }> {
    if (name === this.me) return { key: { dh: this.keys().dhPublic, sign: this.keys().signPublic }, changed: false };
    if (fresh || !this.fromServer.has(name)) {
      const got = (await this.fetchKeys([name]))[name]!;
      this.fromServer.set(name, { dh: new Uint8Array(got.dh), sign: new Uint8Array(got.sign) });
    }
    const served = this.fromServer.get(name)!;
    const pinned = this.pins.get(name);
    if (!pinned) {
      this.pins.set(name, served);
      return { key: served, changed: false };
    }
    return { key: pinned, changed: !sameKeys(pinned, served) };
  }

  /** The key the server hands out now for a contact, which may differ from the pinned one. */
  offered(name: string): PublicIdentity | undefined {
    return this.fromServer.get(name);
  }

  /** Records that the safety number of this key was shown for a contact (/verify). */
  showed(name: string, key: PublicIdentity): void {
    this.compared.set(name, { dh: new Uint8Array(key.dh), sign: new Uint8Array(key.sign) });
  }

  /**
   * Pins exactly the key whose safety number the person compared, and only if
   * the server still offers that key: a server that showed the genuine key
   * during /verify and its own during /trust gets a refusal, not a pin.
   */
  async trust(name: string): Promise<void> {
    const compared = this.compared.get(name);
    if (!compared) throw new ChatError("E_KEY_CHANGED", `Compare safety numbers with /verify ${name} first, then /trust ${name}`);
    await this.keyOf(name, true);
    const offered = this.fromServer.get(name);
    if (!offered || !sameKeys(offered, compared)) {
      this.compared.delete(name);
      throw new ChatError("E_KEY_CHANGED", `The key offered for ${name} changed since /verify: compare the new safety number with /verify ${name}`);
    }
    this.pins.set(name, compared);
    this.compared.delete(name);
  }

  /** Seals once for every recipient (and, always, the sender); refuses if any recipient's key changed. */
  async seal(recipients: string[], conv: string, cmid: string, content: Content): Promise<Uint8Array> {
    const others = recipients.filter((n) => n !== this.me);
    const missing = others.filter((n) => !this.fromServer.has(n));
    if (missing.length > 0) {
      const got = await this.fetchKeys(missing);
      for (const n of missing) this.fromServer.set(n, { dh: new Uint8Array(got[n]!.dh), sign: new Uint8Array(got[n]!.sign) });
    }
    const keys = [];
    for (const name of others) {
      const { key, changed } = await this.keyOf(name);
      if (changed) throw new ChatError("E_KEY_CHANGED", `The identity key of ${name} changed. Compare safety numbers with /verify ${name}, then /trust ${name}`);
      keys.push({ name, dh: key.dh });
    }
    return seal({
      header: { v: 1, from: this.me, conv, cmid, sentAt: Date.now(), kind: content.kind },
      plaintext: encodeContent(content),
      sender: this.keys(),
      recipients: keys,
    });
  }

  async reveal(message: WireMessage, conv: string): Promise<Revealed> {
    let claimed: string;
    let cmid: string;
    try {
      const header = peekHeader(message.body);
      claimed = header.from;
      cmid = header.cmid;
    } catch {
      return failed("E_FORMAT", "the message is malformed");
    }
    if (claimed !== message.from) {
      return failed("E_SIGNATURE", `the server says it is from ${message.from}, but it is signed as from ${claimed}`);
    }
    const { key, changed } = await this.keyOf(message.from);
    if (changed) return { status: "held" };
    let opened;
    try {
      opened = open({ envelope: message.body, me: { name: this.me, keys: this.keys() }, senderSign: key.sign, expect: { from: message.from, conv } });
    } catch (error) {
      if (error instanceof CryptoError) return failed(error.reason, error.message.toLowerCase());
      return failed("E_FORMAT", "the message is malformed");
    }
    if (cmid !== message.cmid) return failed("E_REPLAY", "the server's record of this message does not match its envelope");
    const replayKey = `${message.from}\u0000${cmid}`;
    const firstId = this.seen.seenId(replayKey);
    if (firstId !== undefined && firstId !== message.id) return failed("E_REPLAY", `a replay of message ${firstId}, rejected`);
    this.seen.remember(replayKey, message.id);
    return { status: "ok", content: decodeContent(opened.plaintext) };
  }
}

function failed(code: string, reason: string): Revealed {
  return { status: "failed", code, reason };
}
