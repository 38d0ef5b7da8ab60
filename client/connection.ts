/**
 * The connection under a client session, which survives its server: it asks
 * the balancer where to go, logs in (or resumes with its token), replays what
 * it missed, and when the link drops it starts over with exponential backoff
 * and full jitter. Sends stay pending until acknowledged and are sent again
 * with the same client message id after a reconnect, so a retry never makes a
 * second message. Messages come out in order, once, and are acknowledged.
 */
import { askBalancer } from "../balancer/ask";
import { backoffDelay } from "../balancer/backoff";
import type { IdentityKeys } from "../crypto/keys";
import { Link } from "../net/link";
import { ChatError, isTemporary } from "../protocol/errors";
import { MAX_ACKS, type WireMessage } from "../protocol/messages";
import { loginKeys, restoreIdentity } from "./account";
import { Sequencer } from "./sequencer";
import { LocalStore } from "./store";
import { joinsMe } from "./system";

/**
 * How long a shown message waits for its acknowledgement, so that one ack
 * covers what arrives meanwhile in every conversation. Longer means fewer
 * requests; the cost is what a crash in between shows again at the next login.
 */
export const ACK_DELAY_MS = 100;

export interface ConnectionOptions {
  balancer: string;
  user: string;
  /** Asked only when there is no valid resume token or no keys on this device. */
  password: () => Promise<string> | string;
  /** Connection and trust news for the user: reconnecting, a contact's key changed. */
  onStatus?(line: string): void;
  /** The session ended for good (logged in elsewhere, or a refusal that retrying cannot fix). */
  onEnd?(error: ChatError): void;
  /** Keep the token, positions, keys, pins and history under CHATTERBOX_HOME (default true). */
  persist?: boolean;
  agent?: string;
  /** This device's name, for `chatterbox devices` (default: the host name). */
  deviceName?: string;
  /** A device id to use when nothing is kept on disk (tests: one device per user per process). */
  deviceKey?: string;
  /** Whether the password came from CHATTERBOX_PASSWORD: then a login that did not check it says so. */
  passwordGiven?: boolean;
}

export interface SendResult {
  msg: number;
  conv: number;
  seq: number;
  at: number;
  duplicate: boolean;
}

export interface PendingSend {
  args: { to?: string; group?: string; epoch?: number; cmid: string; body: Uint8Array };
  resolve(result: SendResult): void;
  reject(error: unknown): void;
  inFlight: boolean;
}

export abstract class Connection {
  protected link?: Link;
  /** The device's local store: token, positions, outbox, pins, history. */
  readonly store: LocalStore;
  protected readonly persist: boolean;
  protected readonly sequencer: Sequencer;
  protected identity?: IdentityKeys;
  private readonly pending = new Map<string, PendingSend>();
  /** What this device received (stored), and what the person read, not yet told to the server. */
  private readonly toAck = new Map<number, number>();
  private readonly toRead = new Map<number, number>();
  /** Conversations whose messages wait for the user (to trust a changed key): not acknowledged past this. */
  protected readonly frozen = new Map<number, number>();
  protected reveals: Promise<void> = Promise.resolve();
  protected outgoing: Promise<unknown> = Promise.resolve();
  private ackTimer?: Timer;
  private ackInFlight: Promise<unknown> = Promise.resolve();
  protected closing = false;
  protected ended = false;
  private reconnecting?: Promise<void>;
  serverId = "";
  private saidResumed = false;

  protected constructor(protected readonly options: ConnectionOptions) {
    this.persist = options.persist !== false;
    this.store = new LocalStore(options.user, this.persist);
    if (options.deviceKey && !this.persist) this.store.set("device.id", options.deviceKey);
    this.identity = this.store.identity();
    this.sequencer = new Sequencer({
      emit: (m) => (this.reveals = this.reveals.then(() => this.deliver(m))),
      gap: (conv, after) => void this.fill(conv, after),
    });
    for (const [conv, { received }] of this.store.positions()) this.sequencer.position(conv, received);
  }

  /** One message in order, seen for the first time: keep it (or hold it), then call received(). */
  protected abstract deliver(message: WireMessage): Promise<void>;

  get user(): string {
    return this.options.user;
  }

  get connected(): boolean {
    return !!this.link && !this.link.closed;
  }

  /** Sends an already-sealed body. */
  send(args: PendingSend["args"]): Promise<SendResult> {
    return new Promise((resolve, reject) => {
      const p: PendingSend = { args, resolve, reject, inFlight: false };
      this.pending.set(args.cmid, p);
      this.transmit(p);
    });
  }

  get unacknowledged(): number {
    return this.pending.size;
  }

  /**
   * Sealing runs at once, but sends go out in the order they were asked for,
   * even when sealing one (fetching a new contact's keys) takes longer.
   */
  protected async inOrder(sealing: Promise<PendingSend["args"]>): Promise<SendResult> {
    const queued = this.outgoing.then(() => sealing).then((args) => ({ result: this.send(args) }));
    this.outgoing = queued.catch(() => {});
    return (await queued).result;
  }

  /** A request that waits out a reconnect and is tried again: for idempotent requests only. */
  async call(op: string, args: Record<string, unknown>): Promise<Record<string, unknown>> {
    for (let attempt = 0; ; attempt++) {
      try {
        if (!this.connected) await this.waitConnected();
        return await this.request(op, args);
      } catch (error) {
        if (!(error instanceof ChatError) || !isTemporary(error.code) || attempt >= 50 || this.ended || this.closing) throw error;
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

  /** Resolves when every message received so far has been verified and handed on. */
  async idle(): Promise<void> {
    let seen: Promise<void>;
    do {
      seen = this.reveals;
      await seen;
    } while (seen !== this.reveals);
  }

  /**
   * Waits until every shown message is acknowledged to the server: a message
   * shown while an ack was in flight starts another, which is waited for too.
   * Not connected, what is left waits for the next connection.
   */
  async flushAcks(): Promise<void> {
    for (;;) {
      await this.idle();
      if (!this.connected) return;
      clearTimeout(this.ackTimer);
      this.sendAcks();
      const inFlight = this.ackInFlight;
      await inFlight;
      if (this.toAck.size === 0 && this.toRead.size === 0 && inFlight === this.ackInFlight) return;
    }
  }

  /** Leaves: the last acknowledgements go out, the link and the local store close. Safe to call again. */
  close(): Promise<void> {
    return (this.closed ??= this.leave());
  }

  private closed?: Promise<void>;

  private async leave(): Promise<void> {
    // From here on nothing new is shown (it comes back at the next login), so
    // the last acknowledgement really is the last, and it is in before the link closes.
    this.closing = true;
    // A sent message fills its slot on this device without being delivered
    // back: the device's cursor moves past it, so that the next login does not
    // replay this session's own messages. The read marker does not: only
    // what was shown moves it.
    await this.idle();
    const local = this.store.positions();
    for (const [conv, seq] of Object.entries(this.sequencer.positions())) {
      if (seq > (local.get(Number(conv))?.received ?? 0)) this.received(Number(conv), seq);
    }
    await this.flushAcks().catch(() => {});
    this.sequencer.stop();
    this.link?.close();
    this.store.close();
  }

  protected keys(): IdentityKeys {
    if (!this.identity) throw new ChatError("E_NO_KEYS");
    return this.identity;
  }

  protected async request(op: string, args: Record<string, unknown> = {}): Promise<Record<string, unknown>> {
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

  protected async connect(): Promise<void> {
    const addr = await askBalancer(this.options.balancer);
    const link = await Link.connect(addr, {
      hello: { role: "client", agent: this.options.agent ?? "chatterbox" },
      onEvent: (ev, frame) => {
        if (this.closing) return;
        if (ev !== "msg") return this.userEvent(ev, frame);
        const message = bytesOf(frame.m as WireMessage);
        // A group we were just added to starts at the system message that added us.
        // Anything else in a conversation new to us waits for that line (or a fetch).
        if (!this.sequencer.knows(message.conv) && joinsMe(message, this.options.user)) this.sequencer.position(message.conv, message.seq - 1);
        this.sequencer.receive(message);
      },
      onBye: (error) => {
        if (error.code === "E_DEVICE_REVOKED") this.end(error);
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
    this.store.set("token", String(reply.token));
    this.loggedIn(reply);
    for (const p of this.pending.values()) this.transmit(p);
    await link.request("sync");
    // What this device has and what was read may be ahead of what the server
    // heard (an ack lost with the last link): it hears it again now.
    this.sendAcks();
    for (const { conv, after } of this.sequencer.gaps()) await this.fill(conv, after);
  }

  private async login(link: Link): Promise<Record<string, unknown>> {
    const user = this.options.user;
    const token = this.store.get("token");
    if (token && this.identity) {
      try {
        const reply = await link.request("resume", { user, token });
        if (this.options.passwordGiven && !this.saidResumed) {
          this.saidResumed = true;
          this.options.onStatus?.("resumed this device's saved session: the password given was not checked");
        }
        return reply;
      } catch (error) {
        if (!(error instanceof ChatError) || error.code !== "E_TOKEN") throw error;
        this.store.set("token", undefined);
      }
    }
    const { authKey, wrapKey } = await loginKeys(link, user, await this.options.password());
    const reply = await link.request("login", { user, auth: authKey, device: this.store.device(this.options.deviceName) });
    if (!this.identity) {
      this.identity = restoreIdentity(reply.backup as Uint8Array, wrapKey, user);
      this.store.saveIdentity(this.identity);
    }
    this.passwordLogin(wrapKey);
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
  protected async fill(conv: number, after: number): Promise<void> {
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

  /** This device has the message at `seq` (kept in its store): the server may stop replaying it here. */
  protected received(conv: number, seq: number): void {
    if (this.frozen.has(conv)) return;
    this.store.received(conv, seq);
    this.toAck.set(conv, Math.max(seq, this.toAck.get(conv) ?? 0));
    this.ackTimer ??= setTimeout(() => this.sendAcks(), ACK_DELAY_MS);
  }

  /**
   * A person was shown everything from others up to `seq`: the read marker,
   * shared by all of the user's devices, may move there. Views call this, and
   * only for what they displayed.
   */
  markRead(conv: number, seq: number): void {
    const held = this.frozen.get(conv);
    if (held !== undefined) seq = Math.min(seq, held);
    if (seq <= (this.store.positions().get(conv)?.read ?? 0)) return;
    this.store.read(conv, seq);
    this.toRead.set(conv, Math.max(seq, this.toRead.get(conv) ?? 0));
    this.ackTimer ??= setTimeout(() => this.sendAcks(), ACK_DELAY_MS);
  }

  /** The login's word on this device's positions: the server may know of reads made on another device. */
  private loggedIn(reply: Record<string, unknown>): void {
    const cursors = (reply.cursors ?? {}) as Record<string, number>;
    const read = (reply.read ?? {}) as Record<string, number>;
    for (const [conv, seq] of Object.entries(cursors)) this.sequencer.position(Number(conv), seq);
    for (const [conv, seq] of Object.entries(read)) this.store.read(Number(conv), seq);
    for (const [conv, local] of this.store.positions()) {
      if (local.received > (cursors[conv] ?? 0)) this.toAck.set(conv, Math.max(local.received, this.toAck.get(conv) ?? 0));
      if (local.read > (read[conv] ?? 0)) this.toRead.set(conv, Math.max(local.read, this.toRead.get(conv) ?? 0));
    }
    this.onLoggedIn(reply);
  }

  /** For the session: read markers, receipts and typing from the server. */
  protected userEvent(_ev: string, _frame: Record<string, unknown>): void {}

  /** For the session: what the login reply carries beyond positions (settings, pins). */
  protected onLoggedIn(_reply: Record<string, unknown>): void {}

  /** For the session: a password login gives the wrapping key (pins are kept under a key derived from it). */
  protected passwordLogin(_wrapKey: Uint8Array): void {}

  private sendAcks(): void {
    clearTimeout(this.ackTimer);
    this.ackTimer = undefined;
    if (!this.connected || (this.toAck.size === 0 && this.toRead.size === 0)) return;
    const acks = [...this.toAck];
    const read = [...this.toRead];
    this.toAck.clear();
    this.toRead.clear();
    const link = this.link!;
    const requests: Promise<unknown>[] = [];
    for (let i = 0; i < Math.max(acks.length, read.length); i += MAX_ACKS) {
      const a = acks.slice(i, i + MAX_ACKS);
      const r = read.slice(i, i + MAX_ACKS);
      requests.push(link.request("ack", { ...(a.length ? { acks: a } : {}), ...(r.length ? { read: r } : {}) }));
    }
    this.ackInFlight = Promise.all([this.ackInFlight, ...requests]).catch(() => {
      for (const [conv, seq] of acks) if ((this.toAck.get(conv) ?? 0) < seq) this.toAck.set(conv, seq);
      for (const [conv, seq] of read) if ((this.toRead.get(conv) ?? 0) < seq) this.toRead.set(conv, seq);
    });
  }
}

export function bytesOf(m: WireMessage): WireMessage {
  return { ...m, body: new Uint8Array(m.body) };
}
