/**
 * The connection under a client session, which survives its server: it asks
 * the balancer where to go, logs in (or resumes with its token), replays what
 * it missed, and when the link drops it starts over with exponential backoff
 * and full jitter. Sends stay pending until acknowledged and are sent again
 * with the same client message id after a reconnect, so a retry never makes a
 * second message; one send per conversation is in flight at a time, so retries
 * keep the sender's order. Messages come out in order, once, and are
 * acknowledged; the acknowledgement state goes out again after every login and
 * every replay, so the server's cursors catch up with what was shown.
 */
import { askBalancer } from "../balancer/ask";
import { backoffDelay } from "../balancer/backoff";
import type { IdentityKeys } from "../crypto/keys";
import { Link } from "../net/link";
import { ChatError, isTemporary } from "../protocol/errors";
import { MAX_ACKS, type WireMessage } from "../protocol/messages";
import { loginKeys, passwordCheck, passwordMatches, restoreIdentity } from "./account";
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
  /** The link is down and the next try is at this time (ms since the epoch): for a countdown. */
  onRetry?(at: number): void;
  /** Keep the token, positions, keys, pins and history under CHATTERBOX_HOME (default true). */
  /** This device's name, for `chatterbox devices` (default: the host name). */
  deviceName?: string;
  /** A device id to use when nothing is kept on disk (tests: one device per user per process). */
  deviceKey?: string;
  /** Whether the password came from CHATTERBOX_PASSWORD: then a login that did not check it says so. */
  passwordGiven?: boolean;
  persist?: boolean;
  agent?: string;
  /** How long the first connection keeps trying the balancer and a server, in ms (default 30 s). */
  waitMs?: number;
}

export const DEFAULT_WAIT_MS = 30_000;
/** A replay with no message for this long is taken for a dead link. */
const SYNC_SILENCE_MS = 30_000;

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
  /** The conversation it goes to, as the sender names it: sends in one lane go one at a time. */
  lane: string;
}

function laneOf(args: PendingSend["args"]): string {
  return args.group !== undefined ? `g:${args.group}` : `u:${args.to}`;
}

export abstract class Connection {
  protected link?: Link;
  /** The device's local store: token, positions, outbox, pins, history. */
  readonly store: LocalStore;
  protected readonly persist: boolean;
  protected readonly sequencer: Sequencer;
  protected identity?: IdentityKeys;
  private readonly pending = new Map<string, PendingSend>();
  /**
   * Per conversation, the sends not yet acknowledged, oldest first; only the
   * first is on the wire. A later send never overtakes an earlier one that
   * failed and is being retried, so one sender's messages are stored in order.
   */
  private readonly lanes = new Map<string, PendingSend[]>();
  /** What this device received (kept in its store), and what the person read, not yet told to the server. */
  private readonly toAck = new Map<number, number>();
  private readonly toRead = new Map<number, number>();
  /** The server's positions as last known (from the login, then from each ack it took). */
  private readonly acked = new Map<number, number>();
  private readonly ackedRead = new Map<number, number>();
  /** Links still logging in: close() closes them too, so a one-shot command always exits. */
  private readonly connecting = new Set<Link>();
  /** Conversations whose messages wait for the user (to trust a changed key): not acknowledged past this. */
  protected readonly frozen = new Map<number, number>();
  protected reveals: Promise<void> = Promise.resolve();
  protected outgoing: Promise<unknown> = Promise.resolve();
  private ackTimer?: Timer;
  private ackInFlight: Promise<unknown> = Promise.resolve();
  protected closing = false;
  protected ended = false;
  private reconnecting?: Promise<void>;
  /** Messages received, on any link: a replay that goes quiet for too long is given up. */
  private arrivals = 0;
  private saidResumed = false;
  private closed?: Promise<void>;
  serverId = "";
  /** The address of the server this session is on (or was last on), for people: the id means nothing to them. */
  serverAddress = "";

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
      const p: PendingSend = { args, resolve, reject, inFlight: false, lane: laneOf(args) };
      this.pending.set(args.cmid, p);
      const lane = this.lanes.get(p.lane);
      if (lane) {
        lane.push(p);
      } else {
        this.lanes.set(p.lane, [p]);
        this.transmit(p);
      }
    });
  }

  /** A send is settled (stored, or refused for good): the next one of its conversation goes out. */
  private settle(p: PendingSend): void {
    this.pending.delete(p.args.cmid);
    const lane = this.lanes.get(p.lane);
    if (!lane) return;
    const at = lane.indexOf(p);
    if (at >= 0) lane.splice(at, 1);
    if (lane.length === 0) this.lanes.delete(p.lane);
    else if (at === 0) this.transmit(lane[0]!);
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

  /** Leaves: the last acknowledgements go out, the links and the local store close. Safe to call again. */
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
    for (const [conv, seq] of Object.entries(this.sequencer.positions())) {
      if (seq > (local.get(Number(conv))?.received ?? 0)) this.received(Number(conv), seq);
    }
    await this.flushAcks().catch(() => {});
    clearTimeout(this.ackTimer);
    this.sequencer.stop();
    this.link?.close();
    for (const link of this.connecting) link.close();
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
    // The sequencer waits for this answer before it fetches a gap the send may explain.
    const token = this.sequencer.sending(p.args);
    this.link!.request("send", p.args).then(
      (reply) => {
        const result = reply as unknown as SendResult;
        this.sequencer.ownSend(result.conv, result.seq);
        this.sequencer.answered(token, p.args, result.conv);
        this.settle(p);
        p.resolve(result);
      },
      (error: ChatError) => {
        this.sequencer.answered(token, p.args);
        p.inFlight = false;
        if (error instanceof ChatError && error.code === "E_RATE_LIMITED" && error.retryAfterMs !== undefined) {
          // The server's allowance for this user is spent: the same send, same id, once it says there is room (capped at a minute).
          setTimeout(() => this.transmit(p), Math.min(60_000, error.retryAfterMs));
          return;
        }
        if (error instanceof ChatError && isTemporary(error.code)) {
          // Stays pending, first in its lane: sent again, with the same id, once connected.
          if (this.connected) setTimeout(() => this.transmit(p), 200);
          return;
        }
        this.settle(p);
        p.reject(error);
      },
    );
  }

  /**
   * The first connection: the balancer, or every server, may be away for a
   * moment (a restart), so temporary refusals are tried again with backoff
   * for up to waitMs before the error is the caller's.
   */
  protected async firstConnect(): Promise<void> {
    const deadline = Date.now() + (this.options.waitMs ?? DEFAULT_WAIT_MS);
    for (let attempt = 0; ; attempt++) {
      try {
        await this.connect();
        return;
      } catch (error) {
        // Logged in, then lost: the reconnect loop has taken over. It may take
        // as long as the replay takes, but not waitMs without any server.
        if (this.reconnecting) {
          await this.reconnected(this.options.waitMs ?? DEFAULT_WAIT_MS);
          if (this.connected) return;
        }
        if (!(error instanceof ChatError) || !isTemporary(error.code) || this.closing || this.ended) throw error;
        const delay = backoffDelay(attempt, 200, 2_000);
        if (Date.now() + delay > deadline) throw error;
        if (attempt === 0) this.options.onStatus?.(`${error.message}; trying again for up to ${Math.round((deadline - Date.now()) / 1000)} s`);
        await Bun.sleep(delay);
      }
    }
  }

  /**
   * Waits for the reconnect loop; gives up (and stops it) once no link has
   * been up for waitMs in a row, so that a one-shot command whose servers are
   * all gone ends with an error instead of trying for ever.
   */
  private async reconnected(waitMs: number): Promise<void> {
    let since = Date.now();
    while (this.reconnecting) {
      await Promise.race([this.reconnecting, Bun.sleep(200)]);
      if (this.connected) since = Date.now();
      else if (Date.now() - since > waitMs) {
        this.closing = true;
        for (const link of this.connecting) link.close();
        throw new ChatError("E_UNAVAILABLE", `No chat server answered for ${Math.round(waitMs / 1000)} s`);
      }
    }
  }

  protected async connect(): Promise<void> {
    const addr = await askBalancer(this.options.balancer);
    if (this.closing) throw new ChatError("E_CLOSED");
    const link = await Link.connect(addr, {
      hello: { role: "client", agent: this.options.agent ?? "chatterbox" },
      onEvent: (ev, frame) => {
        if (this.closing) return;
        if (ev !== "msg") return this.userEvent(ev, frame);
        this.arrivals++;
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
    this.connecting.add(link);
    this.serverAddress = addr;
    try {
      let reply: Record<string, unknown>;
      try {
        if (this.closing) throw new ChatError("E_CLOSED");
        reply = await this.login(link);
        if (this.closing) throw new ChatError("E_CLOSED");
      } catch (error) {
        link.close();
        throw error;
      }
      this.link = link;
      this.serverId = String(reply.server);
      this.store.set("token", String(reply.token));
      this.loggedIn(reply);
      for (const lane of this.lanes.values()) this.transmit(lane[0]!);
      // What was shown before a cut but never acknowledged goes first, so
      // that the replay starts past it instead of with it.
      this.queueUnacknowledged();
      this.sendAcks();
      await this.ackInFlight;
      try {
        await this.replayed(link);
      } catch (error) {
        // A replay that failed on a live link (the server's database is away):
        // drop the link, so that the reconnect loop tries again from the start.
        link.close();
        throw error;
      }
      for (const { conv, after } of this.sequencer.gaps()) await this.fill(conv, after);
      // And again once the replay is shown: nothing new may be shown by then
      // (it all was, before a cut), and no timer would otherwise send it.
      void this.idle().then(() => {
        this.queueUnacknowledged();
        if (this.link === link) this.sendAcks();
      });
    } finally {
      this.connecting.delete(link);
    }
  }

  /**
   * The replay of everything waiting: it takes as long as the backlog takes
   * to cross the link, so its only deadline is a pause in the messages.
   */
  private async replayed(link: Link): Promise<void> {
    const sync = link.request("sync", {}, 24 * 3600_000);
    let seen = this.arrivals;
    let silent = 0;
    // Two quiet checks in a row: after a SIGSTOP the first check may run before the data waiting in the socket is read.
    const watchdog = setInterval(() => {
      silent = this.arrivals === seen ? silent + 1 : 0;
      seen = this.arrivals;
      if (silent >= 2) link.close();
    }, SYNC_SILENCE_MS / 2);
    try {
      await sync;
    } finally {
      clearInterval(watchdog);
    }
  }

  /**
   * Queues an ack for every conversation where what this device kept, or what
   * the person read, is past what the server last said it has.
   */
  private queueUnacknowledged(): void {
    for (const [conv, local] of this.store.positions()) {
      if (this.frozen.has(conv)) continue;
      if (local.received > (this.acked.get(conv) ?? 0) && local.received > (this.toAck.get(conv) ?? 0)) this.toAck.set(conv, local.received);
      if (local.read > (this.ackedRead.get(conv) ?? 0) && local.read > (this.toRead.get(conv) ?? 0)) this.toRead.set(conv, local.read);
    }
  }

  /**
   * A saved session was resumed although a password was given: the server did
   * not check it, so the device does, against what it kept at its last
   * password login, and says so (once) when it is wrong.
   */
  private async checkGivenPassword(): Promise<void> {
    this.saidResumed = true;
    const check = this.store.get("password.check");
    if (!check) return void this.options.onStatus?.("resumed this device's saved session: the password given was not checked");
    if (!passwordMatches(check, await this.options.password())) {
      this.options.onStatus?.("WARNING: the password given is not this account's; this device's saved session was used instead (change it with chatterbox passwd if it was forgotten)");
    }
  }

  /** The login's word on this device's positions: the server may know of reads made on another device. */
  private loggedIn(reply: Record<string, unknown>): void {
    const cursors = (reply.cursors ?? {}) as Record<string, number>;
    const read = (reply.read ?? {}) as Record<string, number>;
    this.acked.clear();
    this.ackedRead.clear();
    for (const [conv, seq] of Object.entries(cursors)) {
      this.sequencer.position(Number(conv), seq);
      this.acked.set(Number(conv), seq);
    }
    for (const [conv, seq] of Object.entries(read)) {
      this.store.read(Number(conv), seq);
      this.ackedRead.set(Number(conv), seq);
    }
    this.onLoggedIn(reply);
  }

  /** For the session: read markers, receipts and typing from the server. */
  protected userEvent(_ev: string, _frame: Record<string, unknown>): void {}

  /** For the session: what the login reply carries beyond positions (settings, pins). */
  protected onLoggedIn(_reply: Record<string, unknown>): void {}

  /** For the session: a password login gives the wrapping key (pins are kept under a key derived from it). */
  protected passwordLogin(_wrapKey: Uint8Array): void {}

  private async login(link: Link): Promise<Record<string, unknown>> {
    const user = this.options.user;
    const token = this.store.get("token");
    if (token && this.identity) {
      try {
        const reply = await link.request("resume", { user, token });
        if (this.options.passwordGiven && !this.saidResumed) await this.checkGivenPassword();
        return reply;
      } catch (error) {
        if (!(error instanceof ChatError) || error.code !== "E_TOKEN") throw error;
        this.store.set("token", undefined);
      }
    }
    const { authKey, wrapKey, salt, kdf } = await loginKeys(link, user, await this.options.password());
    const reply = await link.request("login", { user, auth: authKey, device: this.store.device(this.options.deviceName) });
    this.store.set("password.check", passwordCheck(authKey, salt, kdf));
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
      const delay = backoffDelay(attempt, 100, 5_000);
      this.options.onRetry?.(Date.now() + delay);
      await Bun.sleep(delay);
      // close() may have come during the sleep: a one-shot command must exit.
      if (this.closing || this.ended) return;
      try {
        await this.connect();
        if (!this.connected) continue;
        this.options.onStatus?.("reconnected");
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
    this.lanes.clear();
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
        // Pages are bounded in bytes too: only an empty one means the end.
        if (page.length === 0) break;
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
    if (this.closed || seq <= this.store.readOf(conv)) return;
    this.store.read(conv, seq);
    this.toRead.set(conv, Math.max(seq, this.toRead.get(conv) ?? 0));
    this.ackTimer ??= setTimeout(() => this.sendAcks(), ACK_DELAY_MS);
  }

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
    this.ackInFlight = Promise.all([this.ackInFlight, ...requests]).then(
      () => {
        for (const [conv, seq] of acks) if ((this.acked.get(conv) ?? 0) < seq) this.acked.set(conv, seq);
        for (const [conv, seq] of read) if ((this.ackedRead.get(conv) ?? 0) < seq) this.ackedRead.set(conv, seq);
      },
      () => {
        for (const [conv, seq] of acks) if ((this.toAck.get(conv) ?? 0) < seq) this.toAck.set(conv, seq);
        for (const [conv, seq] of read) if ((this.toRead.get(conv) ?? 0) < seq) this.toRead.set(conv, seq);
        // Tried again on a timer while connected; after a cut, the next login sends it.
        if (this.connected && !this.closing) this.ackTimer ??= setTimeout(() => this.sendAcks(), 1_000);
      },
    );
  }
}

export function bytesOf(m: WireMessage): WireMessage {
  return { ...m, body: new Uint8Array(m.body) };
}
