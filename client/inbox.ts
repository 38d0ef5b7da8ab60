/**
 * The receive path of a session: each message, in its conversation's order,
 * is opened through the codec and checked, then kept on the device and shown,
 * or held while its sender's new key waits to be trusted (nothing after it in
 * that conversation is acknowledged meanwhile). A read that fails for a
 * passing reason (the server away while the sender's keys are fetched) is
 * tried again; only a verdict on the message itself is final.
 */
import { backoffDelay } from "../balancer/backoff";
import { ChatError, isTemporary } from "../protocol/errors";
import type { WireMessage } from "../protocol/messages";
import type { AckState } from "./ack-state";
import type { ContentCodec } from "./codec";
import { describeFile, fromStored, keyChangedWarning, type Received } from "./received";
import { describeSystem } from "./system";

/** What the receive path needs around it. */
export interface InboxParts {
  user: string;
  codec: Pick<ContentCodec, "open">;
  acks: Pick<AckState, "freeze" | "thaw" | "received">;
  /** Into the device's history (and backup): a message shown, or one's own. */
  keep(message: Received): void;
  /** Acknowledgements wait to go out: send them shortly. */
  ackSoon(): void;
  /** The last position handed on in a conversation. */
  position(conv: number): number;
  /** The session is closing or ended: waiting for keys is pointless. */
  leaving(): boolean;
  /** A membership change in a group: what was known of its members is stale. */
  groupChanged(group: string): void;
  onMessage?(message: Received): void;
  onStatus?(line: string): void;
  /** A message of a conversation was taken in (MLS: how far this device is, client/mls/frontier.ts). */
  passed?(conv: number, seq: number): void;
}

export class Inbox {
  /** Messages held back per sender, whose key changed, until the user trusts it. */
  private readonly held = new Map<string, WireMessage[]>();
  /** Conversations where a message could not be read before the session closed: nothing after it is shown. */
  private readonly abandoned = new Set<number>();

  constructor(private readonly parts: InboxParts) {}

  /** One message in order: verify it, then show it, hold it, or (our own) just count it. */
  async deliver(message: WireMessage): Promise<void> {
    if (message.kind === "system" && message.group !== undefined) this.parts.groupChanged(message.group);
    const received = this.abandoned.has(message.conv) ? undefined : await this.readPatiently(message);
    if (!received) {
      // Closing before the keys came: not shown, so not acknowledged, and
      // nothing after it in this conversation is either; it comes back at the next login.
      this.abandoned.add(message.conv);
      this.parts.acks.freeze(message.conv, message.seq - 1);
      return;
    }
    if (received.code === "E_KEY_CHANGED") {
      const list = this.held.get(message.from) ?? [];
      list.push(message);
      this.held.set(message.from, list);
      this.parts.acks.freeze(message.conv, message.seq - 1);
      if (list.length === 1) this.parts.onStatus?.(keyChangedWarning(message.from));
      return;
    }
    if (!received.control) this.parts.keep(received);
    this.received(message.conv, message.seq);
    this.parts.passed?.(message.conv, message.seq);
    if (!received.control) this.parts.onMessage?.(received);
  }

  /** The sender's new key is trusted now: what was held from them is shown, in order. */
  async release(sender: string): Promise<number> {
    const held = this.held.get(sender) ?? [];
    this.held.delete(sender);
    for (const m of held) this.parts.acks.thaw(m.conv);
    for (const m of held) await this.deliver(m);
    for (const conv of new Set(held.map((m) => m.conv))) this.received(conv, this.parts.position(conv));
    return held.length;
  }

  heldFrom(sender: string): number {
    return this.held.get(sender)?.length ?? 0;
  }

  /** `inOrder`: the message comes in its conversation's order (from delivery, not from history or a file search); MLS takes it in only then. */
  async read(message: WireMessage, inOrder = false): Promise<Received> {
    // Membership changes are recorded by the server, not signed by a member: shown as the server's word.
    if (message.kind === "system") return { ...message, text: describeSystem(message, this.parts.user), verified: false, problem: "recorded by the server, not signed by a member" };
    const revealed = await this.parts.codec.open(message, inOrder);
    if (revealed.status === "control") return { ...message, text: "", verified: true, control: true };
    if (revealed.status === "notice") return { ...message, kind: "system", text: revealed.text, verified: true };
    if (revealed.status === "stored") return fromStored(revealed.stored);
    if (revealed.status === "ok") {
      const content = revealed.content;
      if (content.kind === "text") return { ...message, text: content.text, verified: true };
      return { ...message, text: describeFile(content.file), file: content.file, verified: true };
    }
    if (revealed.status === "held") return { ...message, text: "", verified: false, code: "E_KEY_CHANGED", problem: keyChangedWarning(message.from) };
    return { ...message, text: "", verified: false, code: revealed.code, problem: revealed.reason };
  }

  /**
   * Reads a message, waiting out temporary failures: only a verdict on the
   * message itself is final. Undefined when the session closes first.
   */
  private async readPatiently(message: WireMessage): Promise<Received | undefined> {
    for (let attempt = 0; ; attempt++) {
      try {
        return await this.read(message, true);
      } catch (error) {
        const code = error instanceof ChatError ? error.code : undefined;
        if (!code || !isTemporary(code)) return { ...message, text: "", verified: false, problem: (error as Error).message, code: code ?? "E_INTERNAL" };
        if (this.parts.leaving()) return undefined;
        if (attempt === 0) this.parts.onStatus?.(`a message from ${message.from} waits for their keys: ${(error as Error).message}`);
        await Bun.sleep(backoffDelay(attempt, 100, 2_000));
      }
    }
  }

  /** This device kept the message at `seq`: the server may stop replaying it. */
  private received(conv: number, seq: number): void {
    if (this.parts.acks.received(conv, seq)) this.parts.ackSoon();
  }
}
