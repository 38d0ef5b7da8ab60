/**
 * A client session: what a user does over a Connection. This file composes
 * the parts and is the API the views and commands use: the device's store,
 * the connection (transport), the acknowledgement and read state, and the
 * content codec (MLS, or envelopes; the server sees only ciphertext); the
 * receive path (./inbox.ts) that opens, checks, holds and shows each message;
 * the outbox (./outbox.ts) that seals, keeps and sends; trust in contacts'
 * keys (./trust.ts); groups, files, the server's events about people, and
 * paged lists (./groups.ts, ./file-messages.ts, ./user-events.ts, ./pages.ts).
 */
import { randomUUID } from "node:crypto";
import { ChatError } from "../protocol/errors";
import { changePassword } from "./account";
import { AckState } from "./ack-state";
import { EnvelopeCodec, MlsFirstCodec, type ContentCodec } from "./codec";
import { Connection, type ConnectionOptions, type PendingSend, type SendResult } from "./connection";
import type { FileMeta } from "./content";
import type { E2E } from "./e2e";
import { FileMessages } from "./file-messages";
import type { Target } from "./files";
import { Groups, type GroupInfo, type MemberInfo } from "./groups";
import { Inbox } from "./inbox";
import { isMlsBody, MlsClient } from "./mls/client";
import type { SecrecyNotice } from "./mls/secrecy";
import { Outbox } from "./outbox";
import { allPages, pagedHistory } from "./pages";
import { LocalStore } from "./store";
import type { Progress } from "./progress";
import { fromStored, toStored, type Received } from "./received";
import { Trust } from "./trust";
import { OwnDevices, type OwnDevice } from "./own-devices";
import { UserEvents, type ReceiptEvent, type TypingEvent, type UserEventSink } from "./user-events";

export type { GroupInfo, MemberInfo, ReceiptEvent, Received, SendResult, TypingEvent };
export { describeFile, keyChangedWarning } from "./received";

export interface SessionOptions extends ConnectionOptions, UserEventSink {
  /** A message, in order, once: from someone else, or the user's own from another of their connections. */
  onMessage?(message: Received): void;
  /** A conversation's messages go as envelopes, not forward secret (once, with why), or are on MLS again after that. */
  onSecrecy?(notice: SecrecyNotice): void;
  /**
   * A device this one had not seen signed in as the user (client/own-devices.ts). Without it the account's
   * devices are not looked at, so a command that shows nothing does not use up the notice.
   */
  onNewDevice?(device: OwnDevice): void;
}

export class ChatSession {
  /** The device's local store: token, positions, outbox, pins, history. */
  readonly store: LocalStore;
  /** Whether the store is on disk (under CHATTERBOX_HOME) or in memory. */
  private readonly persist: boolean;
  private readonly connection: Connection;
  private readonly acks: AckState;
  /** Pinned keys and the envelopes (tests reach the envelopes to seal what a client would not). */
  private readonly e2e: E2E;
  private readonly trusted: Trust;
  private readonly codec: ContentCodec;
  private closed?: Promise<void>;
  private readonly mls: MlsClient;
  private readonly inbox: Inbox;
  private readonly outbox: Outbox;
  private readonly groupsPart: Groups;
  private readonly files: FileMessages;
  private readonly events: UserEvents;
  private readonly ownDevices?: OwnDevices;

  private constructor(private readonly options: SessionOptions) {
    this.persist = options.persist !== false;
    this.store = new LocalStore(options.user, this.persist);
    if (options.deviceKey && !this.persist) this.store.set("device.id", options.deviceKey);
    this.acks = new AckState(this.store);
    const status = (line: string) => this.options.onStatus?.(line);
    const onNewDevice = options.onNewDevice;
    if (onNewDevice) this.ownDevices = new OwnDevices({ list: () => this.devices(), store: this.store, onNew: onNewDevice });
    const lookAtDevices = () => void this.ownDevices?.check().catch(() => {});
    this.events = new UserEvents({ acks: this.acks, readReceipts: () => this.settings.readReceipts, sink: options, devicesChanged: lookAtDevices });
    this.connection = new Connection(options, {
      store: this.store,
      acks: this.acks,
      hooks: {
        deliver: (m) => this.inbox.deliver(m),
        event: (ev, frame) => this.events.handle(ev, frame),
        loggedIn: (reply) => this.onLoggedIn(reply),
        passwordLogin: (wrapKey) => this.passwordLogin(wrapKey),
      },
    });
    this.trusted = new Trust({ user: options.user, store: this.store, keys: () => this.connection.keys(), call: (op, args) => this.call(op, args) });
    this.e2e = this.trusted.e2e;
    this.mls = new MlsClient({
      user: options.user,
      store: this.store,
      keys: () => this.connection.keys(),
      keyOf: (n) => this.e2e.keyOf(n),
      call: (op, args) => this.call(op, args),
      persistent: this.persist,
      onSecrecy: (n) => options.onSecrecy?.(n),
      groupMembers: async (g) => (await this.groupsPart.current(g)).members,
    });
    this.codec = new MlsFirstCodec(this.mls, isMlsBody, new EnvelopeCodec(options.user, this.e2e));
    this.groupsPart = new Groups({ request: (op, args) => this.request(op, args), mls: this.mls, onStatus: status });
    const keep = (m: Received) => {
      const stored = toStored(m);
      this.store.keep(stored);
      this.mls.kept(stored);
    };
    const leaving = () => this.connection.leaving;
    this.inbox = new Inbox({
      user: options.user, codec: this.codec, acks: this.acks, keep, leaving, onStatus: status,
      ackSoon: () => this.connection.ackSoon(),
      position: (conv) => this.connection.position(conv),
      groupChanged: (group) => this.groupsPart.forget(group),
      onMessage: (m) => this.options.onMessage?.(m),
      passed: (conv, seq) => this.mls.passed(conv, seq),
    });
    this.outbox = new Outbox({
      user: options.user, store: this.store, codec: this.codec, groups: this.groupsPart, keep, leaving, onStatus: status,
      send: (args) => this.send(args),
      connected: () => this.connected,
      mls: this.mls,
    });
    this.files = new FileMessages({ caller: this, send: (t, c, cmid) => this.outbox.send(t, c, cmid), read: (m) => this.inbox.read(m) });
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
    if (this.connected) await this.trusted.flushed().catch(() => {});
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
    this.trusted.loggedIn((reply.pins as { blob: Uint8Array | null } | undefined)?.blob);
    this.mls.loggedIn();
    // Each login (a reconnect too): a device may have signed in while this one was away.
    void this.ownDevices?.check().catch(() => {});
  }

  private passwordLogin(wrapKey: Uint8Array): void {
    this.trusted.passwordLogin(wrapKey);
    this.mls.passwordLogin(wrapKey);
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
    this.outbox.resendOrphans();
  }

  /** Encrypts to the recipient's pinned key; resolves once the server has stored the message (kept in the outbox until then). */
  sendText(to: string, text: string): Promise<SendResult> {
    return this.outbox.send({ to }, { kind: "text", text }, randomUUID());
  }

  /**
   * Encrypts to every current member of the group. If the membership changes
   * before the commit, the server refuses, and the message is sealed again for
   * the new members: it never reaches someone it was not sealed for.
   */
  sendGroupText(group: string, text: string): Promise<SendResult> {
    return this.outbox.send({ group }, { kind: "text", text }, randomUUID());
  }

  /** Messages in the outbox (on disk) that the server has not stored yet. */
  get pendingSends(): number {
    return this.store.pendingCount();
  }

  /**
   * Uploads a file in encrypted chunks, then sends the message that carries its
   * key. Run again after a break, it resumes from the chunks the server has.
   */
  sendFile(target: Target, path: string, progress?: Progress): Promise<SendResult & { file: FileMeta }> {
    return this.files.send(target, path, progress);
  }

  /** Fetches a received file into downloads/<sender>/, checked end to end; returns where it was saved. */
  fetchFile(file: FileMeta, from: string, progress?: Progress): Promise<string> {
    return this.files.fetch(file, from, progress);
  }

  /** Finds the message that announced a file (it holds the key) and fetches the file again. */
  fetchFileById(fileId: string, progress?: (file: FileMeta) => Progress): Promise<{ path: string; file: FileMeta; from: string }> {
    return this.files.fetchById(fileId, progress);
  }

  createGroup(name: string, members: string[]): Promise<void> {
    return this.groupsPart.create(name, members);
  }

  changeGroup(op: "add" | "remove" | "promote" | "leave", group: string, users: string[] = []): Promise<void> {
    return this.groupsPart.change(op, group, users);
  }

  groupMembers(group: string): Promise<{ epoch: number; members: MemberInfo[] }> {
    return this.groupsPart.members(group);
  }

  groups(): Promise<GroupInfo[]> {
    return this.groupsPart.list();
  }

  /** The group's latest messages, or (with `before`, a seq) those just before it. */
  groupHistory(group: string, limit = 50, before?: number): Promise<Received[]> {
    return pagedHistory((op, args) => this.request(op, args), (m) => this.inbox.read(m), { group }, limit, before);
  }

  history(other: string, limit = 50, before?: number): Promise<Received[]> {
    return pagedHistory((op, args) => this.request(op, args), (m) => this.inbox.read(m), { with: other }, limit, before);
  }

  /** The people one shares a conversation with: who is online, and when the others were last seen. */
  async who(): Promise<{ name: string; online: boolean; lastSeen: number | null }[]> {
    return (await allPages((op, args) => this.request(op, args), "who", "contacts")) as { name: string; online: boolean; lastSeen: number | null }[];
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
  safetyNumber(other: string): Promise<string> {
    return this.trusted.safetyNumber(other);
  }

  /** Accepts a contact's new identity key and shows what was held back because of it. */
  async trust(other: string): Promise<number> {
    await this.trusted.trust(other);
    return this.inbox.release(other);
  }

  heldFrom(other: string): number {
    return this.inbox.heldFrom(other);
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
    await this.trusted.passwordChanged();
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
