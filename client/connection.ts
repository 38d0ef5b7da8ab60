/**
 * The connection under a client session, which survives its server: it asks
 * the balancer where to go, logs in (./login.ts; or resumes with its token),
 * replays what it missed, and when the link drops it starts over with
 * exponential backoff and full jitter (./reconnect.ts). Sends wait in their
 * conversation's lane (./lanes.ts) until stored, and go out again after a
 * reconnect. Messages come out in order, once (./inflow.ts), and go to the
 * session (which decides what is shown); the acknowledgement state goes out
 * (./ack-sender.ts) again after every login and every replay, so the server's
 * cursors catch up with what was shown. Nothing here knows what a message says.
 */
import { askBalancer } from "../balancer/ask";
import type { IdentityKeys } from "../crypto/keys";
import { Link } from "../net/link";
import { ChatError } from "../protocol/errors";
import type { WireMessage } from "../protocol/messages";
import type { AckState } from "./ack-state";
import { AckSender } from "./ack-sender";
import { Inflow } from "./inflow";
import { SendLanes, type PendingSend, type SendResult } from "./lanes";
import { DeviceLogin, type LoginStore } from "./login";
import type { ConnectionOptions } from "./options";
import { Reconnector } from "./reconnect";
import { retrying } from "./retrying";
import type { LocalStore } from "./store";

export { ACK_DELAY_MS, RECEIVED_ACK_DELAY_MS } from "./ack-sender";
export { DEFAULT_WAIT_MS, type ConnectionOptions } from "./options";
export { bytesOf } from "./inflow";

export type { PendingSend, SendResult };

/** What the connection keeps on the device: its token, its keys, where each conversation stands. */
export type ConnectionStore = LoginStore & Pick<LocalStore, "positions">;

/** The acknowledgement state the connection sends after each login and each message kept. */
export type AckQueue = Pick<AckState, "received" | "serverSaid" | "queueUnacknowledged" | "take" | "confirmed" | "failed" | "waiting" | "readWaiting">;

/** What the connection hands to the session above it. */
export interface ConnectionHooks {
  /** One message in order, seen for the first time: the session keeps it (and acknowledges it) or holds it. */
  deliver(message: WireMessage): Promise<void>;
  /** Any other event from the server: read markers, receipts, typing. */
  event(ev: string, frame: Record<string, unknown>): void;
  /** What the login reply carries beyond positions (settings, pins). */
  loggedIn(reply: Record<string, unknown>): void;
  /** A password login gives the wrapping key (pins are kept under a key derived from it). */
  passwordLogin(wrapKey: Uint8Array): void;
}

export interface ConnectionParts {
  store: ConnectionStore;
  acks: AckQueue;
  hooks: ConnectionHooks;
}

export class Connection {
  private link?: Link;
  private readonly store: ConnectionStore;
  private readonly acks: AckQueue;
  private readonly hooks: ConnectionHooks;
  private readonly inflow: Inflow;
  private readonly login: DeviceLogin;
  private readonly lanes: SendLanes;
  private readonly ackSender: AckSender;
  /** Links still logging in: close() closes them too, so a one-shot command always exits. */
  private readonly connecting = new Set<Link>();
  private closing = false;
  private ended = false;
  private readonly reconnector: Reconnector;
  private closed?: Promise<void>;
  serverId = "";
  /** The address of the server this session is on (or was last on), for people: the id means nothing to them. */
  serverAddress = "";

  constructor(
    private readonly options: ConnectionOptions,
    parts: ConnectionParts,
  ) {
    ({ store: this.store, acks: this.acks, hooks: this.hooks } = parts);
    this.login = new DeviceLogin({ options, store: this.store, passwordLogin: (wrapKey) => this.hooks.passwordLogin(wrapKey) });
    this.inflow = new Inflow({
      user: options.user,
      deliver: (m) => this.hooks.deliver(m),
      request: (op, args) => this.request(op, args),
      positions: this.store.positions(),
    });
    this.lanes = new SendLanes({ connected: () => this.connected, request: (op, args) => this.request(op, args), ...this.inflow.own });
    this.ackSender = new AckSender({
      acks: this.acks,
      link: () => (this.connected ? this.link : undefined),
      closing: () => this.closing,
      idle: () => this.idle(),
    });
    this.reconnector = new Reconnector({
      connect: () => this.connect(),
      connected: () => this.connected,
      leaving: () => this.leaving,
      giveUp: () => {
        this.closing = true;
        for (const link of this.connecting) link.close();
      },
      end: (error) => this.end(error),
      options,
    });
  }

  /** Sends an already-sealed body: in its conversation's lane, through reconnects, with its client message id. */
  send(args: PendingSend["args"]): Promise<SendResult> {
    return this.lanes.send(args);
  }

  /** Sends not yet stored by the server. */
  get unacknowledged(): number {
    return this.lanes.size;
  }

  get user(): string {
    return this.options.user;
  }

  get connected(): boolean {
    return !!this.link && !this.link.closed;
  }

  /** Closing, or ended for good: nothing new is shown, and waiting for a connection is pointless. */
  get leaving(): boolean {
    return this.closing || this.ended;
  }

  /** The link now up, for the few exchanges that need one link throughout (a password change). */
  get currentLink(): Link | undefined {
    return this.connected ? this.link : undefined;
  }

  /** The last position handed on in a conversation (0 before any). */
  position(conv: number): number {
    return this.inflow.positions()[conv] ?? 0;
  }

  /** A request that waits out a reconnect and is tried again: for idempotent requests only. */
  call(op: string, args: Record<string, unknown>): Promise<Record<string, unknown>> {
    return this.retrying(() => this.request(op, args));
  }

  /** Runs `run` once connected, again after each temporary failure (bounded): for idempotent work only. */
  retrying<T>(run: () => Promise<T>): Promise<T> {
    return retrying(run, { connected: () => this.connected, leaving: () => this.leaving });
  }

  /** Resolves when every message received so far has been verified and handed on. */
  idle(): Promise<void> {
    return this.inflow.idle();
  }

  /** Waits until every shown message is acknowledged to the server (while connected; else at the next login). */
  flushAcks(): Promise<void> {
    return this.ackSender.flush();
  }

  /** Leaves: the last acknowledgements go out and the links close (the store is the session's). Safe to call again. */
  close(): Promise<void> {
    return (this.closed ??= this.leave());
  }

  private async leave(): Promise<void> {
    // From here on nothing new is shown (it comes back at the next login), so
    // the last acknowledgement really is the last, and it is in before the link closes.
    this.closing = true;
    // A reconnect under way would log in again after this returns and keep the process alive.
    for (const link of this.connecting) if (link !== this.link) link.close();
    // A sent message fills its slot on this device without being delivered
    // back: the device's cursor moves past it, so that the next login does not
    // replay this session's own messages. The read marker does not: only
    // what was shown moves it.
    await this.idle();
    const local = this.store.positions();
    for (const [conv, seq] of Object.entries(this.inflow.positions())) {
      if (seq > (local.get(Number(conv))?.received ?? 0) && this.acks.received(Number(conv), seq)) this.ackSoon();
    }
    await this.flushAcks().catch(() => {});
    this.ackSender.stop();
    this.inflow.stop();
    this.link?.close();
    for (const link of this.connecting) link.close();
  }

  /** This device's identity keys (restored from the server's backup at a password login on a new device). */
  keys(): IdentityKeys {
    return this.login.keys();
  }

  async request(op: string, args: Record<string, unknown> = {}): Promise<Record<string, unknown>> {
    if (!this.link || this.link.closed) throw new ChatError("E_CLOSED", "Not connected; reconnecting");
    return this.link.request(op, args);
  }

  /** The first connection, tried again for up to waitMs while every server is away for a moment (./reconnect.ts). */
  start(): Promise<void> {
    return this.reconnector.start();
  }

  private async connect(): Promise<void> {
    const addr = await askBalancer(this.options.balancer);
    if (this.closing) throw new ChatError("E_CLOSED");
    const link = await Link.connect(addr, {
      hello: { role: "client", agent: this.options.agent ?? "chatterbox" },
      onEvent: (ev, frame) => {
        if (this.closing) return;
        if (ev !== "msg") return this.hooks.event(ev, frame);
        this.inflow.receive(frame.m as WireMessage);
      },
      onBye: (error) => {
        if (error.code === "E_DEVICE_REVOKED") this.end(error);
        else this.options.onStatus?.(`server: ${error.message}`);
      },
      onClose: () => this.lost(link),
    });
    this.connecting.add(link);
    this.serverAddress = addr;
    try {
      let reply: Record<string, unknown>;
      try {
        if (this.closing) throw new ChatError("E_CLOSED");
        reply = await this.login.login(link);
        if (this.closing) throw new ChatError("E_CLOSED");
      } catch (error) {
        link.close();
        throw error;
      }
      this.link = link;
      this.serverId = String(reply.server);
      this.store.set("token", String(reply.token));
      this.loggedIn(reply);
      this.lanes.resume();
      // What was shown before a cut but never acknowledged goes first, so
      // that the replay starts past it instead of with it.
      this.acks.queueUnacknowledged();
      this.ackSender.now(true);
      await this.ackSender.settled();
      try {
        // The replay takes as long as the backlog takes to cross the link: its only deadline is a pause in the messages.
        await this.inflow.replayed(link.request("sync", {}, 24 * 3600_000), () => link.close());
      } catch (error) {
        // A replay that failed on a live link (the server's database is away):
        // drop the link, so that the reconnect loop tries again from the start.
        link.close();
        throw error;
      }
      await this.inflow.fillGaps();
      // And again once the replay is shown: nothing new may be shown by then
      // (it all was, before a cut), and no timer would otherwise send it.
      void this.idle().then(() => {
        this.acks.queueUnacknowledged();
        if (this.link === link) this.ackSender.now();
      });
    } finally {
      this.connecting.delete(link);
    }
  }

  /** The login's word on this device's positions: the server may know of reads made on another device. */
  private loggedIn(reply: Record<string, unknown>): void {
    const cursors = (reply.cursors ?? {}) as Record<string, number>;
    this.inflow.startAt(cursors);
    this.acks.serverSaid(cursors, (reply.read ?? {}) as Record<string, number>);
    this.hooks.loggedIn(reply);
  }

  private lost(link: Link): void {
    if (this.link !== link) return;
    this.link = undefined;
    this.reconnector.lost();
  }

  private end(error: ChatError): void {
    if (this.ended) return;
    this.ended = true;
    this.lanes.fail(error);
    this.options.onEnd?.(error);
  }

  /** Something new waits to be acknowledged: it goes out shortly, with whatever else comes meanwhile. */
  ackSoon(): void {
    this.ackSender.soon();
  }
}
