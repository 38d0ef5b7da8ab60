/**
 * The outbox: a message goes to disk first, so that a crash of the client
 * keeps it, and leaves once the server has stored it. Sends to one
 * conversation go one after another, each waiting for the one before to be
 * stored (through reconnects, with its original client message id), so a
 * retry never lets a later message overtake an earlier one. A refusal that
 * retrying cannot fix ends the message, with its reason. What an earlier
 * process left in the outbox (it crashed, or left while disconnected) is sent
 * at the next start, in order, with its original id.
 */
import { ChatError, isTemporary } from "../protocol/errors";
import type { ContentCodec } from "./codec";
import { decodeContent, encodeContent, type Content, type FileMeta } from "./content";
import type { Target } from "./files";
import type { Membership } from "./groups";
import type { PendingSend, SendResult } from "./lanes";
import { describeFile, type Received } from "./received";
import type { LocalStore } from "./store";

/** The outbox on the device: entries written before a send, removed once it is settled. */
export type OutboxStore = Pick<LocalStore, "enqueue" | "sent" | "orphans">;

/** What the outbox needs around it. */
export interface OutboxParts {
  user: string;
  store: OutboxStore;
  codec: Pick<ContentCodec, "seal">;
  /** Hands a sealed body to its conversation's lane; resolves once the server stored it. */
  send(args: PendingSend["args"]): Promise<SendResult>;
  /** A group's membership as last seen, and forgetting it when the server says it is stale. */
  groups: { current(group: string): Promise<Membership>; forget(group: string): void };
  /** Into the device's history: one's own message, once stored. */
  keep(message: Received): void;
  connected(): boolean;
  /** The session is closing or ended: what is unsent stays in the outbox for the next start. */
  leaving(): boolean;
  onStatus?(line: string): void;
  /**
   * MLS: wait until this device took in the commits that made a send's epoch
   * old (false: it cannot, and the send fails), and hear of each message this
   * device stored (client/mls/client.ts).
   */
  mls?: { caughtUp(target: Target): Promise<boolean>; passed(conv: number, seq: number): void };
}

export class Outbox {
  /** The last sealed send: sends go out in the order they were asked for. */
  private outgoing: Promise<unknown> = Promise.resolve();
  /** The last send to each conversation ("dm:NAME", "group:NAME"): the next waits for it. */
  private readonly tails = new Map<string, Promise<unknown>>();
  /** Each message on its way, by client message id. */
  private readonly sending = new Map<string, Promise<SendResult>>();
  /** Messages from the outbox this session stored: asked again (a resumed file send), the same answer. */
  private readonly settled = new Map<string, Promise<SendResult>>();

  constructor(private readonly parts: OutboxParts) {}

  /** Stores the message in the outbox, then sends it after the last send to its conversation has settled. */
  send(target: Target, content: Content, cmid: string): Promise<SendResult> {
    // The same message already on its way (taken over from the outbox): one send, not two.
    const already = this.sending.get(cmid) ?? this.settled.get(cmid);
    if (already) return already;
    const key = "to" in target ? `dm:${target.to}` : `group:${target.group}`;
    this.parts.store.enqueue({ cmid, target: key, content: encodeContent(content), createdAt: Date.now() });
    return this.queue(key, target, content, cmid);
  }

  /** What earlier processes of this user left in the outbox: sent now, in order, with their original ids. */
  resendOrphans(): void {
    for (const entry of this.parts.store.orphans()) {
      const [kind, name] = [entry.target.slice(0, entry.target.indexOf(":")), entry.target.slice(entry.target.indexOf(":") + 1)];
      const target: Target = kind === "group" ? { group: name } : { to: name };
      const content = decodeContent(entry.content);
      void this.queue(entry.target, target, content, entry.cmid).then(
        (r) => this.parts.onStatus?.(`sent a message left in the outbox to ${kind === "group" ? `#${name}` : name} (message ${r.msg})`),
        (e) => this.parts.onStatus?.(`a message left in the outbox to ${name} could not be sent: ${(e as Error).message}`),
      );
    }
  }

  /** Sends after the last send to the same conversation has settled. */
  private queue(key: string, target: Target, content: Content, cmid: string): Promise<SendResult> {
    const result = (this.tails.get(key) ?? Promise.resolve()).then(() => this.transmit(target, content, cmid));
    this.sending.set(cmid, result);
    void result.then(
      () => {
        this.sending.delete(cmid);
        this.settled.set(cmid, result);
        if (this.settled.size > 1000) this.settled.delete(this.settled.keys().next().value!);
      },
      () => this.sending.delete(cmid),
    );
    const tail = result.catch(() => {});
    this.tails.set(key, tail);
    void tail.then(() => {
      if (this.tails.get(key) === tail) this.tails.delete(key);
    });
    return result;
  }

  private async transmit(target: Target, content: Content, cmid: string): Promise<SendResult> {
    for (let stale = 0; ; ) {
      try {
        const r = "to" in target ? await this.sealForDm(target.to, content, cmid) : await this.sealForGroup(target.group, content, cmid);
        this.parts.store.sent(cmid);
        this.keepOwn(target, cmid, content.kind === "text" ? content.text : describeFile(content.file), r, content.kind === "file" ? content.file : undefined);
        this.parts.mls?.passed(r.conv, r.seq);
        return r;
      } catch (error) {
        // sealed on an MLS epoch a commit just ended: take the commit in, seal again (nothing was stored)
        if (error instanceof ChatError && error.code === "E_MLS_STALE_EPOCH" && stale++ < 3 && this.parts.mls && (await this.parts.mls.caughtUp(target))) continue;
        const temporary = error instanceof ChatError && isTemporary(error.code);
        // Leaving with it unsent keeps it in the outbox, for the next start.
        if (temporary && !this.parts.leaving()) {
          await this.untilConnected();
          continue;
        }
        if (!temporary) this.parts.store.sent(cmid);
        throw error;
      }
    }
  }

  private sealForDm(to: string, content: Content, cmid: string): Promise<SendResult> {
    return this.inOrder(this.parts.codec.seal({ to }, [to], cmid, content).then((body) => ({ to, cmid, body })));
  }

  private async sealForGroup(group: string, content: Content, cmid: string): Promise<SendResult> {
    const sealed = async () => {
      // The membership as last seen: if it changed since, the server says so (E_STALE_MEMBERS) and it is asked again.
      const { epoch, members } = await this.parts.groups.current(group);
      const body = await this.parts.codec.seal({ group }, members.map((m) => m.name), cmid, content);
      return { group, epoch, cmid, body };
    };
    for (let attempt = 0; ; attempt++) {
      try {
        return await this.inOrder(sealed());
      } catch (error) {
        if (!(error instanceof ChatError) || error.code !== "E_STALE_MEMBERS" || attempt >= 5) throw error;
        this.parts.groups.forget(group);
      }
    }
  }

  /**
   * Sealing runs at once, but sends go out in the order they were asked for,
   * even when sealing one (fetching a new contact's keys) takes longer.
   */
  private async inOrder(sealing: Promise<PendingSend["args"]>): Promise<SendResult> {
    const queued = this.outgoing.then(() => sealing).then((args) => ({ result: this.parts.send(args) }));
    this.outgoing = queued.catch(() => {});
    return (await queued).result;
  }

  /** Waits (without a deadline) for the next connection; returns at once when leaving. */
  private async untilConnected(): Promise<void> {
    await Bun.sleep(50);
    while (!this.parts.connected() && !this.parts.leaving()) await Bun.sleep(50);
  }

  /** One's own message, stored by the server: into the local history too. */
  private keepOwn(target: Target, cmid: string, text: string, r: SendResult, file?: FileMeta): void {
    if (r.duplicate) return;
    const to = "to" in target ? target.to : target.group;
    this.parts.keep({ id: r.msg, conv: r.conv, seq: r.seq, from: this.parts.user, to, ...("group" in target ? { group: target.group } : {}), kind: "chat", at: r.at, cmid, body: new Uint8Array(0), text, verified: true, ...(file ? { file } : {}) });
  }
}
