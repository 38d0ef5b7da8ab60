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
import { chunks, MAX_ACKS, type WireMessage } from "../protocol/messages";
import { loginKeys, restoreIdentity } from "./account";
import { loadIdentity, saveIdentity } from "./keystore";
import { Sequencer } from "./sequencer";
import { joinsMe } from "./system";
import { loadState, saveState, type ClientState } from "./state";

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
  /** Keep the token, positions, keys and pins under CHATTERBOX_HOME (default true). */
  persist?: boolean;
  agent?: string;
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
  protected readonly state: ClientState;
  protected readonly persist: boolean;
  protected readonly sequencer: Sequencer;
  protected identity?: IdentityKeys;
  private readonly pending = new Map<string, PendingSend>();
  private readonly toAck = new Map<number, number>();
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

  protected constructor(protected readonly options: ConnectionOptions) {
    this.persist = options.persist !== false;
    this.state = this.persist ? loadState(options.user) : { shown: {} };
    this.identity = this.persist ? loadIdentity(options.user) : undefined;
    this.sequencer = new Sequencer({
      emit: (m) => (this.reveals = this.reveals.then(() => this.deliver(m))),
      gap: (conv, after) => void this.fill(conv, after),
    });
    for (const [conv, seq] of Object.entries(this.state.shown)) this.sequencer.position(Number(conv), seq);
  }

  /** One message in order, seen for the first time: show it (or hold it), then call shown(). */
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
      if (this.toAck.size === 0 && inFlight === this.ackInFlight) return;
    }
  }

  async close(): Promise<void> {
    // From here on nothing new is shown (it comes back at the next login), so
    // the last acknowledgement really is the last, and it is in before the link closes.
    this.closing = true;
    // A sent message fills its slot without an ack of its own: the next one
    // shown acknowledges past it. The last ack covers them too, so that the
    // next login does not replay this session's own messages.
    await this.idle();
    for (const [conv, seq] of Object.entries(this.sequencer.positions())) {
      if (seq > (this.state.shown[Number(conv)] ?? 0)) this.shown(Number(conv), seq);
    }
    await this.flushAcks().catch(() => {});
    this.sequencer.stop();
    this.save();
    this.link?.close();
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
        if (ev !== "msg" || this.closing) return;
        const message = bytesOf(frame.m as WireMessage);
        // A group we were just added to starts at the system message that added us.
        // Anything else in a conversation new to us waits for that line (or a fetch).
        if (!this.sequencer.knows(message.conv) && joinsMe(message, this.options.user)) this.sequencer.position(message.conv, message.seq - 1);
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

  protected shown(conv: number, seq: number): void {
    if (this.frozen.has(conv)) return;
    this.state.shown[conv] = seq;
    this.toAck.set(conv, seq);
    this.ackTimer ??= setTimeout(() => this.sendAcks(), ACK_DELAY_MS);
  }

  private sendAcks(): void {
    this.ackTimer = undefined;
    if (!this.connected || this.toAck.size === 0) return;
    const acks = [...this.toAck];
    this.toAck.clear();
    const link = this.link!;
    const requests = chunks(acks, MAX_ACKS).map((part) => link.request("ack", { acks: part }));
    this.ackInFlight = Promise.all([this.ackInFlight, ...requests]).catch(() => {
      for (const [conv, seq] of acks) if ((this.toAck.get(conv) ?? 0) < seq) this.toAck.set(conv, seq);
    });
    this.save();
  }

  protected save(): void {
    if (!this.persist) return;
    saveState(this.options.user, this.state);
  }
}

export function bytesOf(m: WireMessage): WireMessage {
  return { ...m, body: new Uint8Array(m.body) };
}
