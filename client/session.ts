/**
 * A logged-in client session that survives its server: it asks the balancer
 * where to go, logs in (or resumes with its token), replays what it missed, and
 * when the link drops it starts over with exponential backoff and full jitter.
 * Sends stay pending until acknowledged and are sent again with the same client
 * message id after a reconnect, so a retry never makes a second message. Every
 * message is sealed here and opened here: the server sees only envelopes.
 */
import { randomUUID } from "node:crypto";
import { askBalancer } from "../balancer/ask";
import { backoffDelay } from "../balancer/backoff";
import type { IdentityKeys, PublicIdentity } from "../crypto/keys";
import { safetyNumber } from "../crypto/safety";
import { Link } from "../net/link";
import { ChatError, isTemporary } from "../protocol/errors";
import type { WireMessage } from "../protocol/messages";
import { changePassword, loginKeys, restoreIdentity } from "./account";
import { dmLabel, E2E, groupLabel, labelOf } from "./e2e";
import { describeSystem } from "./system";
import type { Content, FileMeta } from "./content";
import { download, upload, type Target } from "./files";
import { bytes, progressBar, type Progress } from "./progress";
import { loadIdentity, Pins, saveIdentity } from "./keystore";
import { Sequencer } from "./sequencer";
import { loadState, saveState, type ClientState } from "./state";

export interface SessionOptions {
  balancer: string;
  user: string;
  /** Asked only when there is no valid resume token or no keys on this device. */
  password: () => Promise<string> | string;
  /** A message from someone else, in order, once. */
  onMessage?(message: Received): void;
  /** Connection and trust news for the user: reconnecting, a contact's key changed. */
  onStatus?(line: string): void;
  /** The session ended for good (logged in elsewhere, or a refusal that retrying cannot fix). */
  onEnd?(error: ChatError): void;
  /** Keep the token, positions, keys and pins under CHATTERBOX_HOME (default true). */
  persist?: boolean;
  agent?: string;
}

/** A message as its reader sees it: what it says, and whether it could be verified. */
export interface Received extends WireMessage {
  text: string;
  /** For a file message: what the file is, and the key to fetch and open it. */
  file?: FileMeta;
  verified: boolean;
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
}

export interface SendResult {
  msg: number;
  conv: number;
  seq: number;
  at: number;
  duplicate: boolean;
}

interface PendingSend {
  args: { to?: string; group?: string; epoch?: number; cmid: string; body: Uint8Array };
  resolve(result: SendResult): void;
  reject(error: unknown): void;
  inFlight: boolean;
}

export class ChatSession {
  private link?: Link;
  private readonly state: ClientState;
  private readonly persist: boolean;
  private readonly sequencer: Sequencer;
  private readonly e2e: E2E;
  private identity?: IdentityKeys;
  private readonly pending = new Map<string, PendingSend>();
  private readonly toAck = new Map<number, number>();
  /** Conversations whose messages wait for the user to trust a changed key: not acknowledged past this. */
  private readonly frozen = new Map<number, number>();
  private readonly held = new Map<string, WireMessage[]>();
  private reveals: Promise<void> = Promise.resolve();
  private outgoing: Promise<unknown> = Promise.resolve();
  private ackTimer?: Timer;
  private ackInFlight: Promise<unknown> = Promise.resolve();
  private closing = false;
  private ended = false;
  private reconnecting?: Promise<void>;
  serverId = "";

  private constructor(private readonly options: SessionOptions) {
    this.persist = options.persist !== false;
    this.state = this.persist ? loadState(options.user) : { shown: {} };
    this.identity = this.persist ? loadIdentity(options.user) : undefined;
    this.e2e = new E2E(options.user, () => this.keys(), new Pins(options.user, this.persist), (names) => this.fetchKeys(names));
    this.e2e.restoreSeen(this.state.seen);
    this.sequencer = new Sequencer({
      emit: (m) => (this.reveals = this.reveals.then(() => this.deliver(m))),
      gap: (conv, after) => void this.fill(conv, after),
    });
    for (const [conv, seq] of Object.entries(this.state.shown)) this.sequencer.position(Number(conv), seq);
  }

  get user(): string {
    return this.options.user;
  }

  get connected(): boolean {
    return !!this.link && !this.link.closed;
  }

  /** Connects, logs in and replays everything waiting; throws if the first login is refused. */
  static async open(options: SessionOptions): Promise<ChatSession> {
    const session = new ChatSession(options);
    await session.connect();
    await session.idle();
    return session;
  }

  /** Encrypts to the recipient's pinned key; resolves once the server has stored the message. */
  sendText(to: string, text: string): Promise<SendResult> {
    const cmid = randomUUID();
    return this.inOrder(this.e2e.seal([to], dmLabel(this.user, to), cmid, { kind: "text", text }).then((body) => ({ to, cmid, body })));
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

  /**
   * Encrypts to every current member of the group. If the membership changes
   * before the commit, the server refuses, and the message is sealed again for
   * the new members: it never reaches someone it was not sealed for.
   */
  sendGroupText(group: string, text: string): Promise<SendResult> {
    return this.sendGroupContent(group, { kind: "text", text }, randomUUID());
  }

  private async sendGroupContent(group: string, content: Content, cmid: string): Promise<SendResult> {
    const sealed = async () => {
      const { epoch, members } = await this.groupMembers(group);
      const body = await this.e2e.seal(
        members.map((m) => m.name),
        groupLabel(group),
        cmid,
        content,
      );
      return { group, epoch, cmid, body };
    };
    for (let attempt = 0; ; attempt++) {
      try {
        return await this.inOrder(sealed());
      } catch (error) {
        if (!(error instanceof ChatError) || error.code !== "E_STALE_MEMBERS" || attempt >= 5) throw error;
      }
    }
  }

  /**
   * Uploads a file in encrypted chunks, then sends the message that carries its
   * key. Run again after a break, it resumes from the chunks the server has.
   */
  async sendFile(target: Target, path: string, progress: Progress = progressBar(`sending ${path}`, 0, false)): Promise<SendResult & { file: FileMeta }> {
    const sent = await upload(this, path, target, progress);
    const content = { kind: "file" as const, file: sent.meta };
    let result: SendResult;
    if ("to" in target) {
      const cmid = sent.cmid;
      result = await this.inOrder(this.e2e.seal([target.to], dmLabel(this.user, target.to), cmid, content).then((body) => ({ to: target.to, cmid, body })));
    } else {
      result = await this.sendGroupContent(target.group, content, sent.cmid);
    }
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
      if (page.length < 500) throw new ChatError("E_NO_SUCH_FILE", "No message you can read announces that file");
      after = page[page.length - 1]!.seq;
    }
  }

  /** A request that waits out a reconnect and is tried again: for idempotent requests only. */
  async call(op: string, args: Record<string, unknown>): Promise<Record<string, unknown>> {
    for (let attempt = 0; ; attempt++) {
      try {
        if (!this.connected) await this.waitConnected();
        return await this.request(op, args);
      } catch (error) {
        if (!(error instanceof ChatError) || !isTemporary(error.code) || attempt >= 50 || this.ended) throw error;
        await Bun.sleep(Math.min(1000, 50 * 2 ** attempt));
      }
    }
  }

  private async waitConnected(timeoutMs = 60_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!this.connected) {
      if (this.ended || this.closing) throw new ChatError("E_CLOSED");
      if (Date.now() > deadline) throw new ChatError("E_TIMEOUT", "Not reconnected in time");
      await Bun.sleep(20);
    }
  }

  /** Sends an already-sealed body. */
  send(args: PendingSend["args"]): Promise<SendResult> {
    return new Promise((resolve, reject) => {
      const p: PendingSend = { args, resolve, reject, inFlight: false };
      this.pending.set(args.cmid, p);
      this.transmit(p);
    });
  }

  async createGroup(name: string, members: string[]): Promise<void> {
    await this.request("group.create", { group: name, members: members.length > 0 ? members : undefined });
  }

  async changeGroup(op: "add" | "remove" | "promote" | "leave", group: string, users: string[] = []): Promise<void> {
    if (op === "promote") await this.request("group.promote", { group, user: users[0] });
    else if (op === "leave") await this.request("group.leave", { group });
    else await this.request(`group.${op}`, { group, users });
  }

  async groupMembers(group: string): Promise<{ epoch: number; members: MemberInfo[] }> {
    const reply = await this.request("group.members", { group });
    return { epoch: reply.epoch as number, members: reply.members as MemberInfo[] };
  }

  async groups(): Promise<GroupInfo[]> {
    return (await this.request("groups")).groups as GroupInfo[];
  }

  async groupHistory(group: string, limit = 50): Promise<Received[]> {
    const reply = await this.request("history", { group, limit });
    const out: Received[] = [];
    for (const m of reply.messages as WireMessage[]) out.push(await this.read(bytesOf(m)));
    return out;
  }

  get unacknowledged(): number {
    return this.pending.size;
  }

  async history(other: string, limit = 50): Promise<Received[]> {
    const reply = await this.request("history", { with: other, limit });
    const out: Received[] = [];
    for (const m of reply.messages as WireMessage[]) out.push(await this.read(bytesOf(m)));
    return out;
  }

  async who(): Promise<string[]> {
    return (await this.request("who")).users as string[];
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
    return safetyNumber({ name: this.user, ...mine.key }, { name: other, ...key });
  }

  /** Accepts a contact's new identity key and shows what was held back because of it. */
  async trust(other: string): Promise<number> {
    await this.e2e.trust(other);
    const held = this.held.get(other) ?? [];
    this.held.delete(other);
    for (const m of held) this.frozen.delete(m.conv);
    for (const m of held) await this.deliver(m);
    for (const conv of new Set(held.map((m) => m.conv))) this.shown(conv, this.sequencer.positions()[conv] ?? 0);
    return held.length;
  }

  heldFrom(other: string): number {
    return this.held.get(other)?.length ?? 0;
  }

  async changePassword(oldPassword: string, newPassword: string): Promise<void> {
    if (!this.link) throw new ChatError("E_CLOSED");
    await changePassword(this.link, this.user, oldPassword, newPassword, this.keys());
    this.state.token = undefined;
    this.save();
  }

  /** Resolves when every message received so far has been verified and handed on. */
  async idle(): Promise<void> {
    let seen: Promise<void>;
    do {
      seen = this.reveals;
      await seen;
    } while (seen !== this.reveals);
  }

  /** Waits until every shown message is acknowledged to the server. */
  async flushAcks(): Promise<void> {
    await this.idle();
    clearTimeout(this.ackTimer);
    this.sendAcks();
    await this.ackInFlight;
  }

  async close(): Promise<void> {
    await this.flushAcks().catch(() => {});
    this.closing = true;
    this.sequencer.stop();
    this.save();
    this.link?.close();
  }

  private keys(): IdentityKeys {
    if (!this.identity) throw new ChatError("E_NO_KEYS");
    return this.identity;
  }

  private async fetchKeys(names: string[]): Promise<Record<string, PublicIdentity>> {
    return (await this.request("keys", { users: names })).keys as Record<string, PublicIdentity>;
  }

  private async request(op: string, args: Record<string, unknown> = {}): Promise<Record<string, unknown>> {
    if (!this.link || this.link.closed) throw new ChatError("E_CLOSED", "Not connected; reconnecting");
    return this.link.request(op, args);
  }

  private transmit(p: PendingSend): void {
    if (!this.connected || p.inFlight) return;
    p.inFlight = true;
    this.link!.request("send", p.args).then(
      (reply) => {
        this.pending.delete(p.args.cmid);
        const result = reply as unknown as SendResult;
        this.sequencer.ownSend(result.conv, result.seq);
        p.resolve(result);
      },
      (error: ChatError) => {
        p.inFlight = false;
        if (error instanceof ChatError && isTemporary(error.code)) {
          // Stays pending: sent again, with the same id, once connected.
          if (this.connected) setTimeout(() => this.transmit(p), 200);
          return;
        }
        this.pending.delete(p.args.cmid);
        p.reject(error);
      },
    );
  }

  private async connect(): Promise<void> {
    const addr = await askBalancer(this.options.balancer);
    const link = await Link.connect(addr, {
      hello: { role: "client", agent: this.options.agent ?? "chatterbox" },
      onEvent: (ev, frame) => {
        if (ev !== "msg") return;
        const message = bytesOf(frame.m as WireMessage);
        // A group we were just added to starts at the system message that added us.
        if (message.kind === "system" && !this.sequencer.knows(message.conv)) this.sequencer.position(message.conv, message.seq - 1);
        this.sequencer.receive(message);
      },
      onBye: (error) => {
        if (error.code === "E_SESSION_REPLACED") this.end(error);
        else this.options.onStatus?.(`server: ${error.message}`);
      },
      onClose: () => this.lost(link),
    });
    let reply: Record<string, unknown>;
    try {
      reply = await this.login(link);
    } catch (error) {
      link.close();
      throw error;
    }
    this.link = link;
    this.serverId = String(reply.server);
    this.state.token = String(reply.token);
    for (const [conv, seq] of Object.entries((reply.cursors ?? {}) as Record<string, number>)) this.sequencer.position(Number(conv), seq);
    this.save();
    for (const p of this.pending.values()) this.transmit(p);
    await link.request("sync");
    for (const { conv, after } of this.sequencer.gaps()) await this.fill(conv, after);
  }

  private async login(link: Link): Promise<Record<string, unknown>> {
    const user = this.options.user;
    if (this.state.token && this.identity) {
      try {
        return await link.request("resume", { user, token: this.state.token });
      } catch (error) {
        if (!(error instanceof ChatError) || error.code !== "E_TOKEN") throw error;
        this.state.token = undefined;
      }
    }
    const { authKey, wrapKey } = await loginKeys(link, user, await this.options.password());
    const reply = await link.request("login", { user, auth: authKey });
    if (!this.identity) {
      this.identity = restoreIdentity(reply.backup as Uint8Array, wrapKey, user);
      if (this.persist) saveIdentity(user, this.identity);
    }
    return reply;
  }

  private lost(link: Link): void {
    if (this.link !== link) return;
    this.link = undefined;
    if (this.closing || this.ended) return;
    this.reconnecting ??= this.reconnect().finally(() => (this.reconnecting = undefined));
  }

  private async reconnect(): Promise<void> {
    this.options.onStatus?.("connection lost; reconnecting");
    for (let attempt = 0; !this.closing && !this.ended; attempt++) {
      await Bun.sleep(backoffDelay(attempt, 100, 5_000));
      try {
        await this.connect();
        if (!this.connected) continue;
        this.options.onStatus?.(`reconnected (server ${this.serverId.slice(0, 8)})`);
        return;
      } catch (error) {
        if (error instanceof ChatError && !isTemporary(error.code) && error.code !== "E_TOKEN") {
          this.end(error);
          return;
        }
      }
    }
  }

  private end(error: ChatError): void {
    if (this.ended) return;
    this.ended = true;
    for (const p of this.pending.values()) p.reject(error);
    this.pending.clear();
    this.options.onEnd?.(error);
  }

  /** Fetches everything after a gap, page by page, before the sequencer may move past what is missing. */
  private async fill(conv: number, after: number): Promise<void> {
    const PAGE = 1000;
    try {
      const all: WireMessage[] = [];
      for (let from = after; ; ) {
        const page = (await this.request("fetch", { conv, after: from, limit: PAGE })).messages as WireMessage[];
        all.push(...page.map(bytesOf));
        if (page.length < PAGE) break;
        from = page[page.length - 1]!.seq;
      }
      this.sequencer.filled(conv, all);
    } catch {
      // Not connected: the replay after the reconnect fills the gap.
    }
  }

  /** One message in order: verify it, then show it, hold it, or (our own) just count it. */
  private async deliver(message: WireMessage): Promise<void> {
    if (message.from === this.user && message.kind !== "system") {
      this.shown(message.conv, message.seq);
      return;
    }
    const received = await this.read(message).catch(
      (error: Error): Received => ({ ...message, text: "", verified: false, problem: error.message, code: (error as ChatError).code }),
    );
    if (received.code === "E_KEY_CHANGED") {
      const list = this.held.get(message.from) ?? [];
      list.push(message);
      this.held.set(message.from, list);
      if (!this.frozen.has(message.conv)) this.frozen.set(message.conv, message.seq - 1);
      if (list.length === 1) this.options.onStatus?.(keyChangedWarning(message.from));
      return;
    }
    this.shown(message.conv, message.seq);
    this.options.onMessage?.(received);
  }

  private async read(message: WireMessage): Promise<Received> {
    // Membership changes are recorded by the server, not signed by a member: shown as the server's word.
    if (message.kind === "system") return { ...message, text: describeSystem(message, this.user), verified: false, problem: "recorded by the server, not signed by a member" };
    const revealed = await this.e2e.reveal(message, labelOf(message));
    if (revealed.status === "ok") {
      const content = revealed.content;
      if (content.kind === "text") return { ...message, text: content.text, verified: true };
      return { ...message, text: describeFile(content.file), file: content.file, verified: true };
    }
    if (revealed.status === "held") return { ...message, text: "", verified: false, code: "E_KEY_CHANGED", problem: keyChangedWarning(message.from) };
    return { ...message, text: "", verified: false, code: revealed.code, problem: revealed.reason };
  }

  private shown(conv: number, seq: number): void {
    if (this.frozen.has(conv)) return;
    this.state.shown[conv] = seq;
    this.toAck.set(conv, seq);
    this.ackTimer ??= setTimeout(() => this.sendAcks(), 20);
  }

  private sendAcks(): void {
    this.ackTimer = undefined;
    if (!this.connected || this.toAck.size === 0) return;
    const acks = [...this.toAck];
    this.toAck.clear();
    const link = this.link!;
    this.ackInFlight = Promise.all([this.ackInFlight, ...acks.map(([conv, seq]) => link.request("ack", { conv, seq }))]).catch(() => {
      for (const [conv, seq] of acks) if ((this.toAck.get(conv) ?? 0) < seq) this.toAck.set(conv, seq);
    });
    this.save();
  }

  private save(): void {
    if (!this.persist) return;
    this.state.seen = this.e2e.seenList().slice(-5000);
    saveState(this.options.user, this.state);
  }
}

export function describeFile(file: FileMeta): string {
  const size = file.width !== undefined ? `, ${file.width}×${file.height}` : "";
  return `[file] ${file.name} (${bytes(file.size)}, ${file.type}${size})`;
}

export function keyChangedWarning(user: string): string {
  return (
    `WARNING: the identity key of ${user} has changed. Their messages are held and nothing is sent to them ` +
    `until you accept the new key. Compare safety numbers with them in person or on a call (/verify ${user}, ` +
    `or \`chatterbox verify --with ${user}\`), then /trust ${user}.`
  );
}

function bytesOf(m: WireMessage): WireMessage {
  return { ...m, body: new Uint8Array(m.body) };
}
