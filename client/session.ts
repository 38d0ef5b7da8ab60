/**
 * A logged-in client session that survives its server: it asks the balancer
 * where to go, logs in (or resumes with its token), replays what it missed, and
 * when the link drops it starts over with exponential backoff and full jitter.
 * Sends stay pending until acknowledged and are sent again with the same client
 * message id after a reconnect, so a retry never makes a second message.
 */
import { randomUUID } from "node:crypto";
import { askBalancer } from "../balancer/ask";
import { backoffDelay } from "../balancer/backoff";
import { Link } from "../net/link";
import { ChatError, isTemporary } from "../protocol/errors";
import type { WireMessage } from "../protocol/messages";
import { decodeContent, encodeContent } from "./content";
import { Sequencer } from "./sequencer";
import { loadState, saveState, type ClientState } from "./state";

export interface SessionOptions {
  balancer: string;
  user: string;
  /** Asked only when there is no valid resume token. */
  password: () => Promise<string> | string;
  /** A message from someone else, in order, once. */
  onMessage?(message: Received): void;
  /** Connection news for the user: reconnecting, reconnected, displaced. */
  onStatus?(line: string): void;
  /** The session ended for good (logged in elsewhere, or a refusal that retrying cannot fix). */
  onEnd?(error: ChatError): void;
  /** Keep the token and positions under CHATTERBOX_HOME (default true). */
  persist?: boolean;
  agent?: string;
}

interface PendingSend {
  args: { to: string; cmid: string; body: Uint8Array };
  resolve(result: SendResult): void;
  reject(error: unknown): void;
  inFlight: boolean;
}

/** A message as its reader sees it: the stored message and what it says. */
export interface Received extends WireMessage {
  text: string;
}

export interface SendResult {
  msg: number;
  conv: number;
  seq: number;
  at: number;
  duplicate: boolean;
}

export class ChatSession {
  private link?: Link;
  private readonly state: ClientState;
  private readonly sequencer: Sequencer;
  private readonly pending = new Map<string, PendingSend>();
  private readonly toAck = new Map<number, number>();
  private ackTimer?: Timer;
  private ackInFlight: Promise<unknown> = Promise.resolve();
  private closing = false;
  private ended = false;
  private reconnecting?: Promise<void>;
  serverId = "";

  private constructor(private readonly options: SessionOptions) {
    this.state = options.persist === false ? { shown: {} } : loadState(options.user);
    this.sequencer = new Sequencer({
      emit: (m) => this.emit(m),
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
    return session;
  }

  /** Resolves once the server has stored the message. */
  send(to: string, body: Uint8Array): Promise<SendResult> {
    const cmid = randomUUID();
    return new Promise((resolve, reject) => {
      const p: PendingSend = { args: { to, cmid, body }, resolve, reject, inFlight: false };
      this.pending.set(cmid, p);
      this.transmit(p);
    });
  }

  sendText(to: string, text: string): Promise<SendResult> {
    return this.send(to, encodeContent({ kind: "text", text }));
  }

  get unacknowledged(): number {
    return this.pending.size;
  }

  async history(other: string, limit = 50): Promise<Received[]> {
    const reply = await this.request("history", { with: other, limit });
    return (reply.messages as WireMessage[]).map((m) => read(bytesOf(m)));
  }

  async who(): Promise<string[]> {
    return (await this.request("who")).users as string[];
  }

  /** Waits until every shown message is acknowledged to the server. */
  async flushAcks(): Promise<void> {
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
        if (ev === "msg") this.sequencer.receive(bytesOf(frame.m as WireMessage));
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
    if (this.state.token) {
      try {
        return await link.request("resume", { user, token: this.state.token });
      } catch (error) {
        if (!(error instanceof ChatError) || error.code !== "E_TOKEN") throw error;
        this.state.token = undefined;
      }
    }
    return link.request("login", { user, password: await this.options.password() });
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

  private async fill(conv: number, after: number): Promise<void> {
    try {
      const reply = await this.request("fetch", { conv, after, limit: 1000 });
      this.sequencer.filled(conv, (reply.messages as WireMessage[]).map(bytesOf));
    } catch {
      // Not connected: the replay after the reconnect fills the gap.
    }
  }

  private emit(message: WireMessage): void {
    this.state.shown[message.conv] = message.seq;
    this.toAck.set(message.conv, message.seq);
    this.ackTimer ??= setTimeout(() => this.sendAcks(), 20);
    // Our own messages fill their place in the sequence but are not news to us.
    if (message.from === this.options.user) return;
    this.options.onMessage?.(read(message));
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
    if (this.options.persist !== false) saveState(this.options.user, this.state);
  }
}

function read(message: WireMessage): Received {
  return { ...message, text: decodeContent(message.body).text };
}

function bytesOf(m: WireMessage): WireMessage {
  return { ...m, body: new Uint8Array(m.body) };
}
