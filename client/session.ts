/**
 * A client session: what a user does over a Connection. It composes the
 * parts: the device's store, the connection (transport), the acknowledgement
 * and read state, and the content codec. Every message is sealed and opened
 * through the codec (MLS, or envelopes; the server sees only ciphertext), checked against pinned
 * keys before it is shown, or held while a contact's key change waits to be
 * trusted; the outbox, pins, receipts, typing, groups and files live here.
 */
import { randomUUID } from "node:crypto";
import type { PublicIdentity } from "../crypto/keys";
import { safetyNumber } from "../crypto/safety";
import { backoffDelay } from "../balancer/backoff";
import { ChatError, isTemporary } from "../protocol/errors";
import type { WireMessage } from "../protocol/messages";
import { changePassword } from "./account";
import { AckState } from "./ack-state";
import { EnvelopeCodec, MlsFirstCodec, type ContentCodec } from "./codec";
import { bytesOf, Connection, type ConnectionOptions, type PendingSend, type SendResult } from "./connection";
import { decodeContent, encodeContent, type Content, type FileMeta } from "./content";
import { E2E } from "./e2e";
import { download, upload, type Target } from "./files";
import { Pins } from "./keystore";
import { isMlsBody, MlsClient } from "./mls/client";
import type { SecrecyNotice } from "./mls/secrecy";
import { pinsKey } from "../crypto/pins";
import { LocalStore, type StoredMessage } from "./store";
import { bytes, progressBar, type Progress } from "./progress";
import { describeSystem } from "./system";
import { safeName } from "./safe-name";

const CONTROL = /[\u0000-\u001f\u007f-\u009f]/g;

export type { SendResult };

export interface SessionOptions extends ConnectionOptions {
  /** A message, in order, once: from someone else, or the user's own from another of their connections. */
  onMessage?(message: Received): void;
  /** The read marker moved (on this device or another of the user's). */
  onRead?(conv: number, seq: number): void;
  /** Another member's device received, or they read, up to a position. */
  onReceipt?(receipt: ReceiptEvent): void;
  /** Someone in a conversation is typing (refreshed every few seconds while they type). */
  onTyping?(typing: TypingEvent): void;
  /** A conversation's messages go as envelopes, not forward secret (once, with why), or are on MLS again after that. */
  onSecrecy?(notice: SecrecyNotice): void;
}

export interface ReceiptEvent {
  conv: number;
  user: string;
  delivered?: number;
  read?: number;
}

export interface TypingEvent {
  conv: number;
  from: string;
  group?: string;
}

/** A message as its reader sees it: what it says, and whether it could be verified. */
export interface Received extends WireMessage {
  text: string;
  /** For a file message: what the file is, and the key to fetch and open it. */
  file?: FileMeta;
  verified: boolean;
  /** An MLS commit or welcome: keys changed, nothing to show. */
  control?: boolean;
  /** Why it could not be verified or read; the text is then not shown. */
  problem?: string;
  code?: string;
}

export interface GroupInfo {
  name: string;
  conv: number;
  role: string;
  members: number;
  unread: number;
}

export interface MemberInfo {
  name: string;
  role: "admin" | "member";
  since: number;
  /** Listed by the server, but no admin's MLS commit added them: they cannot read the group. */
  unconfirmed?: true;
  /** Listed by the server as an admin, but the group's own MLS admin list does not name them: their adds and removals are refused. */
  adminUnconfirmed?: true;
}

export class ChatSession {
  /** The device's local store: token, positions, outbox, pins, history. */
  readonly store: LocalStore;
  /** Whether the store is on disk (under CHATTERBOX_HOME) or in memory. */
  private readonly persist: boolean;
  private readonly connection: Connection;
  private readonly acks: AckState;
  private readonly e2e: E2E;
  private readonly codec: ContentCodec;
  /** The last sealed send: sends go out in the order they were asked for. */
  private outgoing: Promise<unknown> = Promise.resolve();
  private closed?: Promise<void>;
  private readonly mls: MlsClient;
  /** The last send to each conversation ("dm:NAME", "group:NAME"): the next waits for it. */
  private readonly tails = new Map<string, Promise<unknown>>();
  /** Each message on its way, by client message id. */
  private readonly sending = new Map<string, Promise<SendResult>>();
  /** Messages from the outbox this session stored: asked again (a resumed file send), the same answer. */
  private readonly settled = new Map<string, Promise<SendResult>>();
  /** Each group's membership as last asked, to seal for without a round trip per message. */
  private readonly membership = new Map<string, { epoch: number; members: MemberInfo[] }>();
  private readonly held = new Map<string, WireMessage[]>();
  private readonly pins: Pins;
  /** Conversations where a message could not be read before the session closed: nothing after it is shown. */
  private readonly abandoned = new Set<number>();

  private constructor(private readonly options: SessionOptions) {
    this.persist = options.persist !== false;
    this.store = new LocalStore(options.user, this.persist);
    if (options.deviceKey && !this.persist) this.store.set("device.id", options.deviceKey);
    this.acks = new AckState(this.store);
    this.connection = new Connection(options, {
      store: this.store,
      acks: this.acks,
      hooks: {
        deliver: (m) => this.deliver(m),
        event: (ev, frame) => this.userEvent(ev, frame),
        loggedIn: (reply) => this.onLoggedIn(reply),
        passwordLogin: (wrapKey) => this.passwordLogin(wrapKey),
      },
    });
    this.pins = new Pins(this.store);
    this.pins.server = { call: (op, args) => this.call(op, args) };
    this.e2e = new E2E(options.user, () => this.connection.keys(), this.pins, (names) => this.fetchKeys(names), this.store);
    this.mls = new MlsClient({
      user: options.user,
      store: this.store,
      keys: () => this.connection.keys(),
      keyOf: (n) => this.e2e.keyOf(n),
      call: (op, args) => this.call(op, args),
      persistent: this.persist,
      onSecrecy: (n) => options.onSecrecy?.(n),
      groupMembers: async (g) => (this.membership.get(g) ?? (await this.groupMembers(g))).members,
    });
    this.codec = new MlsFirstCodec(this.mls, isMlsBody, new EnvelopeCodec(options.user, this.e2e));
  }

  get user(): string {
    return this.options.user;
  }

  get connected(): boolean {
    return this.connection.connected;
  }

  /** The id of the server this session is on (or was last on). */
  get serverId(): string {
    return this.connection.serverId;
  }

  /** The address of that server, for people: the id means nothing to them. */
  get serverAddress(): string {
    return this.connection.serverAddress;
  }

  /** Sends not yet acknowledged by the server (on the wire or waiting for a connection). */
  get unacknowledged(): number {
    return this.connection.unacknowledged;
  }

  /** Sends an already-sealed body, in its conversation's lane, through reconnects. */
  send(args: PendingSend["args"]): Promise<SendResult> {
    return this.connection.send(args);
  }

  /** A request on the current link; refused at once when there is none. */
  request(op: string, args: Record<string, unknown> = {}): Promise<Record<string, unknown>> {
    return this.connection.request(op, args);
  }

  /** A request that waits out a reconnect and is tried again: for idempotent requests only. */
  call(op: string, args: Record<string, unknown>): Promise<Record<string, unknown>> {
    return this.connection.retrying(() => this.request(op, args));
  }

  /** Resolves when every message received so far has been verified and handed on. */
  idle(): Promise<void> {
    return this.connection.idle();
  }

  /** Waits until every shown message is acknowledged to the server (while connected). */
  flushAcks(): Promise<void> {
    return this.connection.flushAcks();
  }

  /**
   * Leaves once the pins made in this session are on the server too (they are
   * shared with the user's other devices); then the last acknowledgements go
   * out and the links and the store close. Safe to call again.
   */
  close(): Promise<void> {
    return (this.closed ??= this.leave());
  }

  private async leave(): Promise<void> {
    if (this.connected) await this.pins.flushed().catch(() => {});
    // a one-shot command's device publishes its MLS keys before it leaves, or others keep sealing envelopes to it
    // (bounded: a link lost meanwhile would have the publishing wait for a reconnect)
    if (this.connected) {
      // A timer that is cleared: one left pending would keep a one-shot command's process alive for its 5 s.
      let timer: Timer | undefined;
      await Promise.race([this.mls.settled(), new Promise<void>((resolve) => (timer = setTimeout(resolve, 5_000)))]);
      clearTimeout(timer);
    }
    await this.connection.close();
    this.store.close();
  }

  /** The user's settings, as the server last said. */
  settings: { readReceipts: boolean } = { readReceipts: true };

  private onLoggedIn(reply: Record<string, unknown>): void {
    if (reply.settings) this.settings = reply.settings as { readReceipts: boolean };
    const pins = reply.pins as { blob: Uint8Array | null } | undefined;
    // A new device starts with what the user already trusts; a device that pinned more shares it.
    if (this.pins.merge(pins?.blob ? new Uint8Array(pins.blob) : null)) this.pins.upload();
    this.mls.loggedIn();
  }

  private passwordLogin(wrapKey: Uint8Array): void {
    this.store.set("pins.key", Buffer.from(pinsKey(wrapKey)).toString("base64"));
    this.mls.passwordLogin(wrapKey);
  }

  private userEvent(ev: string, frame: Record<string, unknown>): void {
    if (ev === "read" && typeof frame.conv === "number" && typeof frame.seq === "number") {
      this.acks.readElsewhere(frame.conv, frame.seq);
      this.options.onRead?.(frame.conv, frame.seq);
    } else if (ev === "receipts" && Array.isArray(frame.r)) {
      const num = (v: unknown) => (typeof v === "number" ? v : undefined);
      for (const item of frame.r as unknown[]) {
        if (!Array.isArray(item) || typeof item[0] !== "number" || typeof item[1] !== "string") continue;
        // With read receipts off, none are shown (the server stops sending them; this covers the moment between).
        this.options.onReceipt?.({ conv: item[0], user: item[1], delivered: num(item[2]), read: this.settings.readReceipts ? num(item[3]) : undefined });
      }
    } else if (ev === "typing" && typeof frame.conv === "number" && typeof frame.from === "string") {
      this.options.onTyping?.({ conv: frame.conv, from: frame.from, ...(typeof frame.group === "string" ? { group: frame.group } : {}) });
    }
  }

  /** Connects, logs in and replays everything waiting; throws if the first login is refused. */
  static async open(options: SessionOptions): Promise<ChatSession> {
    const session = ChatSession.create(options);
    await session.start();
    return session;
  }

  /** A session not yet connected: for a caller that must hold it before the first message arrives. */
  static create(options: SessionOptions): ChatSession {
    return new ChatSession(options);
  }

  /** Connects, logs in, replays everything waiting, and sends what earlier runs left in the outbox. */
  async start(): Promise<void> {
    await this.connection.start();
    await this.idle();
    this.resendOrphans();
  }

  /** Encrypts to the recipient's pinned key; resolves once the server has stored the message. */
  sendText(to: string, text: string): Promise<SendResult> {
    return this.sendContent({ to }, { kind: "text", text }, randomUUID());
  }

  /**
   * Encrypts to every current member of the group. If the membership changes
   * before the commit, the server refuses, and the message is sealed again for
   * the new members: it never reaches someone it was not sealed for.
   */
  sendGroupText(group: string, text: string): Promise<SendResult> {
    return this.sendContent({ group }, { kind: "text", text }, randomUUID());
  }

  /** Messages in the outbox (on disk) that the server has not stored yet. */
  get pendingSends(): number {
    return this.store.pendingCount();
  }

  /**
   * The outbox: a message goes to disk first, so that a crash of the client
   * keeps it, and leaves once the server has stored it. Sends to one
   * conversation go one after another, each waiting for the one before to be
   * stored (through reconnects, with its original client message id), so a
   * retry never lets a later message overtake an earlier one. A refusal that
   * retrying cannot fix ends the message, with its reason.
   */
  private sendContent(target: Target, content: Content, cmid: string): Promise<SendResult> {
    // The same message already on its way (taken over from the outbox): one send, not two.
    const already = this.sending.get(cmid) ?? this.settled.get(cmid);
    if (already) return already;
    const key = "to" in target ? `dm:${target.to}` : `group:${target.group}`;
    this.store.enqueue({ cmid, target: key, content: encodeContent(content), createdAt: Date.now() });
    return this.queueSend(key, target, content, cmid);
  }

  /** Sends after the last send to the same conversation has settled. */
  private queueSend(key: string, target: Target, content: Content, cmid: string): Promise<SendResult> {
    const result = (this.tails.get(key) ?? Promise.resolve()).then(() => this.transmitContent(target, content, cmid));
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

  private async transmitContent(target: Target, content: Content, cmid: string): Promise<SendResult> {
    for (let stale = 0; ; ) {
      try {
        const r = "to" in target ? await this.sealAndSend(target.to, content, cmid) : await this.sealForGroup(target.group, content, cmid);
        this.store.sent(cmid);
        this.keepOwn(target, cmid, content.kind === "text" ? content.text : describeFile(content.file), r, content.kind === "file" ? content.file : undefined);
        this.mls.passed(r.conv, r.seq);
        return r;
      } catch (error) {
        // sealed on an MLS epoch a commit just ended: take the commit in, seal again (nothing was stored)
        if (error instanceof ChatError && error.code === "E_MLS_STALE_EPOCH" && stale++ < 3 && (await this.mls.caughtUp(target))) continue;
        const temporary = error instanceof ChatError && isTemporary(error.code);
        // Leaving with it unsent keeps it in the outbox, for the next start.
        if (temporary && !this.connection.leaving) {
          await this.untilConnected();
          continue;
        }
        if (!temporary) this.store.sent(cmid);
        throw error;
      }
    }
  }

  private sealAndSend(to: string, content: Content, cmid: string): Promise<SendResult> {
    return this.inOrder(this.codec.seal({ to }, [to], cmid, content).then((body) => ({ to, cmid, body })));
  }

  /**
   * Sealing runs at once, but sends go out in the order they were asked for,
   * even when sealing one (fetching a new contact's keys) takes longer.
   */
  private async inOrder(sealing: Promise<PendingSend["args"]>): Promise<SendResult> {
    const queued = this.outgoing.then(() => sealing).then((args) => ({ result: this.send(args) }));
    this.outgoing = queued.catch(() => {});
    return (await queued).result;
  }

  /** Waits (without a deadline) for the next connection; returns at once when leaving. */
  private async untilConnected(): Promise<void> {
    await Bun.sleep(50);
    while (!this.connected && !this.connection.leaving) await Bun.sleep(50);
  }

  /**
   * What earlier processes of this user left in the outbox (they crashed, or
   * left while disconnected): sent now, in order, with their original ids.
   */
  private resendOrphans(): void {
    for (const entry of this.store.orphans()) {
      const [kind, name] = [entry.target.slice(0, entry.target.indexOf(":")), entry.target.slice(entry.target.indexOf(":") + 1)];
      const target: Target = kind === "group" ? { group: name } : { to: name };
      const content = decodeContent(entry.content);
      void this.queueSend(entry.target, target, content, entry.cmid).then(
        (r) => this.options.onStatus?.(`sent a message left in the outbox to ${kind === "group" ? `#${name}` : name} (message ${r.msg})`),
        (e) => this.options.onStatus?.(`a message left in the outbox to ${name} could not be sent: ${(e as Error).message}`),
      );
    }
  }

  private async sealForGroup(group: string, content: Content, cmid: string): Promise<SendResult> {
    const sealed = async () => {
      // The membership as last seen: if it changed since, the server says so (E_STALE_MEMBERS) and it is asked again.
      const { epoch, members } = this.membership.get(group) ?? (await this.groupMembers(group));
      const body = await this.codec.seal({ group }, members.map((m) => m.name), cmid, content);
      return { group, epoch, cmid, body };
    };
    for (let attempt = 0; ; attempt++) {
      try {
        return await this.inOrder(sealed());
      } catch (error) {
        if (!(error instanceof ChatError) || error.code !== "E_STALE_MEMBERS" || attempt >= 5) throw error;
        this.membership.delete(group);
      }
    }
  }

  /**
   * Uploads a file in encrypted chunks, then sends the message that carries its
   * key. Run again after a break, it resumes from the chunks the server has.
   */
  async sendFile(target: Target, path: string, progress: Progress = progressBar(`sending ${path}`, 0, false)): Promise<SendResult & { file: FileMeta }> {
    const sent = await upload(this, path, target, progress);
    const result = await this.sendContent(target, { kind: "file", file: sent.meta }, sent.cmid);
    sent.done();
    return { ...result, file: sent.meta };
  }

  /** Fetches a received file into downloads/<sender>/, checked end to end; returns where it was saved. */
  fetchFile(file: FileMeta, from: string, progress?: Progress): Promise<string> {
    return download(this, file, from, progress ?? progressBar(`receiving ${file.name}`, file.size, false));
  }

  /** Finds the message that announced a file (it holds the key) and fetches the file again. */
  async fetchFileById(fileId: string, progress?: (file: FileMeta) => Progress): Promise<{ path: string; file: FileMeta; from: string }> {
    const info = await this.call("file.info", { file: fileId });
    for (let after = (info.after as number) ?? 0; ; ) {
      const page = (await this.call("fetch", { conv: info.conv, after, limit: 500 })).messages as WireMessage[];
      for (const m of page) {
        const received = await this.read(bytesOf(m));
        if (received.file?.id === fileId) {
          return { path: await this.fetchFile(received.file, received.from, progress?.(received.file)), file: received.file, from: received.from };
        }
      }
      if (page.length === 0) throw new ChatError("E_NO_SUCH_FILE", "No message you can read announces that file");
      after = page[page.length - 1]!.seq;
    }
  }

  async createGroup(name: string, members: string[]): Promise<void> {
    await this.request("group.create", { group: name, members: members.length > 0 ? members : undefined });
    await this.mls.groupCreated(name);
  }

  async changeGroup(op: "add" | "remove" | "promote" | "leave", group: string, users: string[] = []): Promise<void> {
    if (op === "promote") await this.request("group.promote", { group, user: users[0] });
    else if (op === "leave") await this.request("group.leave", { group });
    else await this.request(`group.${op}`, { group, users });
    this.membership.delete(group);
    if (op === "promote" || op === "remove") {
      if (!(await this.mls.groupRolesChanged(group, op === "promote" ? { promote: users[0] } : { remove: users })))
        this.options.onStatus?.(`#${group}'s own MLS admin list does not name you: the other members will not take this ${op} from your device`);
    }
    if (op !== "add") return;
    const left = await this.mls.groupAdded(group, users);
    if (left.length > 0) this.options.onStatus?.(`${left.join(", ")} could not be added to #${group}'s MLS group (a device of theirs has no MLS keys yet): they cannot read it`);
  }

  async groupMembers(group: string): Promise<{ epoch: number; members: MemberInfo[] }> {
    const reply = await this.request("group.members", { group });
    const members = reply.members as MemberInfo[];
    const unconfirmed = new Set(await this.mls.unconfirmed(group, members.map((m) => m.name)));
    for (const m of members) if (unconfirmed.has(m.name)) m.unconfirmed = true;
    const notAdmins = new Set(await this.mls.unconfirmedAdmins(group, members.filter((m) => m.role === "admin").map((m) => m.name)));
    for (const m of members) if (notAdmins.has(m.name)) m.adminUnconfirmed = true;
    const membership = { epoch: reply.epoch as number, members };
    this.membership.set(group, membership);
    return membership;
  }

  async groups(): Promise<GroupInfo[]> {
    return this.allPages("groups", "groups") as Promise<GroupInfo[]>;
  }

  /** A list the server pages so that each reply fits a frame (groups, who): ask after the last name until there is no `next`. */
  private async allPages(op: string, field: string): Promise<unknown[]> {
    const out: unknown[] = [];
    let after: string | undefined;
    do {
      const reply = await this.request(op, after === undefined ? {} : { after });
      out.push(...(reply[field] as unknown[]));
      after = typeof reply.next === "string" && reply.next !== after ? reply.next : undefined;
    } while (after !== undefined);
    return out;
  }

  /** The group's latest messages, or (with `before`, a seq) those just before it. */
  async groupHistory(group: string, limit = 50, before?: number): Promise<Received[]> {
    return this.pagedHistory({ group }, limit, before);
  }

  async history(other: string, limit = 50, before?: number): Promise<Received[]> {
    return this.pagedHistory({ with: other }, limit, before);
  }

  /** The server pages history by bytes as well, so that a reply fits a frame: ask again, further back, until `limit` or the start. */
  private async pagedHistory(target: { group: string } | { with: string }, limit: number, start?: number): Promise<Received[]> {
    const pages: WireMessage[][] = [];
    let got = 0;
    let before: number | undefined = start;
    while (got < limit) {
      const reply = await this.request("history", { ...target, limit: limit - got, ...(before !== undefined ? { before } : {}) });
      const page = reply.messages as WireMessage[];
      if (page.length === 0) break;
      pages.unshift(page);
      got += page.length;
      before = page[0]!.seq;
    }
    const out: Received[] = [];
    for (const m of pages.flat()) {
      const r = await this.read(bytesOf(m));
      if (!r.control) out.push(r);
    }
    return out;
  }

  /** The people one shares a conversation with: who is online, and when the others were last seen. */
  async who(): Promise<{ name: string; online: boolean; lastSeen: number | null }[]> {
    return (await this.allPages("who", "contacts")) as { name: string; online: boolean; lastSeen: number | null }[];
  }

  async devices(): Promise<{ id: string; name: string; created: number; lastSeen: number; online: boolean; current: boolean }[]> {
    return (await this.call("devices", {})).devices as never;
  }

  async revokeDevice(id: string): Promise<number> {
    const closed = (await this.request("devices.revoke", { device: id })).closed as number;
    // the account's MLS device list drops it, and this device's next message removes its leaves
    await this.mls.devicesChanged();
    return closed;
  }

  /** The opt-in history backup of this device's messages (off by default; SECURITY.md says what it costs). */
  setHistoryBackup(on: boolean): void {
    this.mls.backup.set(on);
  }

  async getSettings(): Promise<{ readReceipts: boolean }> {
    return (this.settings = (await this.call("settings", {})).settings as { readReceipts: boolean });
  }

  async setReadReceipts(on: boolean): Promise<{ readReceipts: boolean }> {
    return (this.settings = (await this.call("settings.set", { readReceipts: on })).settings as { readReceipts: boolean });
  }

  /** Every other member's positions in a conversation: delivered to, and (where receipts are on) read up to. */
  async receipts(conv: number): Promise<ReceiptEvent[]> {
    return ((await this.call("receipts", { conv })).receipts as { user: string; delivered: number; read?: number }[]).map((r) => ({ conv, ...r }));
  }

  /** Tells the other side one is typing: the server passes it on, rate-limited, and never stores it. */
  typing(target: { to: string } | { group: string }): void {
    if (this.connected) this.request("typing", target).catch(() => {});
  }

  /** The conversation id of a DM or a group, as the server knows it. */
  async conversationOf(target: { with: string } | { group: string }): Promise<number> {
    return (await this.call("history", { ...target, limit: 1 })).conv as number;
  }

  /** What this device holds that the person has not read, oldest first in each conversation. */
  unread(): Received[] {
    return this.store.unread(this.user).map(fromStored);
  }

  /** What this device holds that matches (SQLite FTS5 over the local copy), newest first. */
  search(text: string, limit = 50): Received[] {
    return this.store.search(text, limit).map(fromStored);
  }

  /** This device's copy of a conversation's latest messages. */
  localHistory(conv: number, limit = 50, before = Number.MAX_SAFE_INTEGER): Received[] {
    return this.store.history(conv, before, limit).map(fromStored);
  }

  /**
   * The safety number of this user and a contact. While a key change waits to
   * be trusted, it is computed from the key now offered: comparing it is how
   * the user finds out whether that key is really the contact's.
   */
  async safetyNumber(other: string): Promise<string> {
    const mine = await this.e2e.keyOf(this.user);
    const theirs = await this.e2e.keyOf(other, true);
    const key = theirs.changed ? this.e2e.offered(other)! : theirs.key;
    // What /trust may pin afterwards: this key, and no other.
    this.e2e.showed(other, key);
    return safetyNumber({ name: this.user, ...mine.key }, { name: other, ...key });
  }

  /** Accepts a contact's new identity key and shows what was held back because of it. */
  async trust(other: string): Promise<number> {
    await this.e2e.trust(other);
    const held = this.held.get(other) ?? [];
    this.held.delete(other);
    for (const m of held) this.acks.thaw(m.conv);
    for (const m of held) await this.deliver(m);
    for (const conv of new Set(held.map((m) => m.conv))) this.received(conv, this.connection.position(conv));
    return held.length;
  }

  heldFrom(other: string): number {
    return this.held.get(other)?.length ?? 0;
  }

  async changePassword(oldPassword: string, newPassword: string): Promise<void> {
    const link = this.connection.currentLink;
    if (!link) throw new ChatError("E_CLOSED");
    const wrapKey = await changePassword(link, this.user, oldPassword, newPassword, this.connection.keys());
    this.store.set("token", undefined);
    // What the device kept to check a given password belongs to the old one.
    this.store.set("password.check", undefined);
    // The pins were sealed under a key from the old password: sealed again under the new one.
    this.passwordLogin(wrapKey);
    this.pins.upload();
    await this.pins.flushed();
  }

  private async fetchKeys(names: string[]): Promise<Record<string, PublicIdentity>> {
    return (await this.call("keys", { users: names })).keys as Record<string, PublicIdentity>;
  }

  /** One message in order: verify it, then show it, hold it, or (our own) just count it. */
  private async deliver(message: WireMessage): Promise<void> {
    if (message.kind === "system" && message.group !== undefined) this.membership.delete(message.group);
    const received = this.abandoned.has(message.conv) ? undefined : await this.readPatiently(message);
    if (!received) {
      // Closing before the keys came: not shown, so not acknowledged, and
      // nothing after it in this conversation is either; it comes back at the next login.
      this.abandoned.add(message.conv);
      this.acks.freeze(message.conv, message.seq - 1);
      return;
    }
    if (received.code === "E_KEY_CHANGED") {
      const list = this.held.get(message.from) ?? [];
      list.push(message);
      this.held.set(message.from, list);
      this.acks.freeze(message.conv, message.seq - 1);
      if (list.length === 1) this.options.onStatus?.(keyChangedWarning(message.from));
      return;
    }
    if (!received.control) this.keep(received);
    this.received(message.conv, message.seq);
    this.mls.passed(message.conv, message.seq);
    if (!received.control) this.options.onMessage?.(received);
  }

  /** The device's copy of a message, for its history and search. */
  private keep(m: Received): void {
    const { file, ...rest } = m;
    const stored = { ...rest, ...(file ? { file: JSON.stringify({ ...file, key: Buffer.from(file.key).toString("base64") }) } : {}) };
    this.store.keep(stored);
    this.mls.kept(stored);
  }

  /** One's own message, stored by the server: into the local history too. */
  private keepOwn(target: { to: string } | { group: string }, cmid: string, text: string, r: SendResult, file?: FileMeta): void {
    if (r.duplicate) return;
    const to = "to" in target ? target.to : target.group;
    this.keep({ id: r.msg, conv: r.conv, seq: r.seq, from: this.user, to, ...("group" in target ? { group: target.group } : {}), kind: "chat", at: r.at, cmid, body: new Uint8Array(0), text, verified: true, ...(file ? { file } : {}) });
  }

  /**
   * Reads a message, waiting out temporary failures (the server or its
   * database away while the sender's keys are fetched): only a verdict on the
   * message itself is final. Undefined when the session closes first.
   */
  private async readPatiently(message: WireMessage): Promise<Received | undefined> {
    for (let attempt = 0; ; attempt++) {
      try {
        return await this.read(message, true);
      } catch (error) {
        const code = error instanceof ChatError ? error.code : undefined;
        if (!code || !isTemporary(code)) return { ...message, text: "", verified: false, problem: (error as Error).message, code: code ?? "E_INTERNAL" };
        if (this.connection.leaving) return undefined;
        if (attempt === 0) this.options.onStatus?.(`a message from ${message.from} waits for their keys: ${(error as Error).message}`);
        await Bun.sleep(backoffDelay(attempt, 100, 2_000));
      }
    }
  }

  /** `inOrder`: the message comes in its conversation's order (from delivery, not from history or a file search); MLS takes it in only then. */
  private async read(message: WireMessage, inOrder = false): Promise<Received> {
    // Membership changes are recorded by the server, not signed by a member: shown as the server's word.
    if (message.kind === "system") return { ...message, text: describeSystem(message, this.user), verified: false, problem: "recorded by the server, not signed by a member" };
    const revealed = await this.codec.open(message, inOrder);
    if (revealed.status === "control") return { ...message, text: "", verified: true, control: true };
    if (revealed.status === "stored") return fromStored(revealed.stored);
    if (revealed.status === "ok") {
      const content = revealed.content;
      if (content.kind === "text") return { ...message, text: content.text, verified: true };
      return { ...message, text: describeFile(content.file), file: content.file, verified: true };
    }
    if (revealed.status === "held") return { ...message, text: "", verified: false, code: "E_KEY_CHANGED", problem: keyChangedWarning(message.from) };
    return { ...message, text: "", verified: false, code: revealed.code, problem: revealed.reason };
  }

  /** This device kept the message at `seq`: the server may stop replaying it. */
  private received(conv: number, seq: number): void {
    if (this.acks.received(conv, seq)) this.connection.ackSoon();
  }

  /**
   * A person was shown everything from others up to `seq`: the read marker,
   * shared by all of the user's devices, may move there. Views call this, and
   * only for what they displayed.
   */
  markRead(conv: number, seq: number): void {
    if (this.closed) return;
    if (this.acks.read(conv, seq)) this.connection.ackSoon();
  }
}

/** A message from the local store, as a reader sees it. */
function fromStored(m: StoredMessage): Received {
  const { file, ...rest } = m;
  const meta = file ? (JSON.parse(file) as FileMeta & { key: string }) : undefined;
  return { ...rest, body: new Uint8Array(0), ...(meta ? { file: { ...meta, key: new Uint8Array(Buffer.from(meta.key, "base64")) } } : {}) };
}

export function describeFile(file: FileMeta): string {
  const size = file.width !== undefined ? `, ${file.width}×${file.height}` : "";
  // Name and type come from the sender: nothing in them may drive the terminal or fake a line.
  return `[file] ${safeName(file.name)} (${bytes(file.size)}, ${file.type.replace(CONTROL, "")}${size})`;
}

export function keyChangedWarning(user: string): string {
  return (
    `WARNING: the identity key of ${user} has changed. Their messages are held and nothing is sent to them ` +
    `until you accept the new key. Compare safety numbers with them in person or on a call (/verify ${user}, ` +
    `or \`chatterbox verify --with ${user}\`), then /trust ${user}.`
  );
}

