/**
 * The connection under a client session, which survives its server: it asks
 * the balancer where to go, logs in (or resumes with its token), replays what
 * it missed, and when the link drops it starts over with exponential backoff
 * and full jitter. Sends wait in their conversation's lane (./lanes.ts) until
 * stored, and go out again after a reconnect. Messages come out in order, once, and go to the
 * session (which decides what is shown); the acknowledgement state it keeps
 * goes out again after every login and every replay, so the server's cursors
 * catch up with what was shown. Nothing here knows what a message says.
 */
import { askBalancer } from "../balancer/ask";
import { backoffDelay } from "../balancer/backoff";
import type { IdentityKeys } from "../crypto/keys";
import { Link } from "../net/link";
import { ChatError, isTemporary } from "../protocol/errors";
import { MAX_ACKS, type WireMessage } from "../protocol/messages";
import type { AckState } from "./ack-state";
import { loginKeys, passwordCheck, passwordMatches, restoreIdentity } from "./account";
import { SendLanes, type PendingSend, type SendResult } from "./lanes";
import { Sequencer } from "./sequencer";
import type { LocalStore } from "./store";
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
  /** This device's name, for `chatterbox devices` (default: the host name). */
  deviceName?: string;
  /** A device id to use when nothing is kept on disk (tests: one device per user per process). */
  deviceKey?: string;
  /** Whether the password came from CHATTERBOX_PASSWORD: then a login that did not check it says so. */
  passwordGiven?: boolean;
  /** Keep the token, positions, keys, pins and history under CHATTERBOX_HOME (default true). */
  persist?: boolean;
  agent?: string;
  /** How long the first connection keeps trying the balancer and a server, in ms (default 30 s). */
  waitMs?: number;
}

export type { PendingSend, SendResult };

export const DEFAULT_WAIT_MS = 30_000;
/** A replay with no message for this long is taken for a dead link. */
const SYNC_SILENCE_MS = 30_000;

/** What the connection keeps on the device: its token, its keys, where each conversation stands. */
export type ConnectionStore = Pick<LocalStore, "get" | "set" | "device" | "identity" | "saveIdentity" | "positions">;

/** The acknowledgement state the connection sends after each login and each message kept. */
export type AckQueue = Pick<AckState, "received" | "serverSaid" | "queueUnacknowledged" | "take" | "confirmed" | "failed" | "waiting">;

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
  private readonly sequencer: Sequencer;
  private identity?: IdentityKeys;
  private readonly lanes: SendLanes;
  /** Links still logging in: close() closes them too, so a one-shot command always exits. */
  private readonly connecting = new Set<Link>();
  private reveals: Promise<void> = Promise.resolve();
  private ackTimer?: Timer;
  private ackInFlight: Promise<unknown> = Promise.resolve();
  private closing = false;
  private ended = false;
  private reconnecting?: Promise<void>;
  /** Messages received, on any link: a replay that goes quiet for too long is given up. */
  private arrivals = 0;
  private saidResumed = false;
  private closed?: Promise<void>;
  serverId = "";
  /** The address of the server this session is on (or was last on), for people: the id means nothing to them. */
  serverAddress = "";

  constructor(
    private readonly options: ConnectionOptions,
    parts: ConnectionParts,
  ) {
    ({ store: this.store, acks: this.acks, hooks: this.hooks } = parts);
    this.identity = this.store.identity();
    this.sequencer = new Sequencer({
      emit: (m) => (this.reveals = this.reveals.then(() => this.hooks.deliver(m))),
      gap: (conv, after) => void this.fill(conv, after),
    });
    for (const [conv, { received }] of this.store.positions()) this.sequencer.position(conv, received);
    this.lanes = new SendLanes({
      connected: () => this.connected,
      request: (op, args) => this.request(op, args),
      stored: (conv, seq) => this.sequencer.ownSend(conv, seq),
      sending: (args) => this.sequencer.sending(args),
      answered: (token, args, conv) => this.sequencer.answered(token, args, conv),
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
    return this.sequencer.positions()[conv] ?? 0;
  }

  /** A request that waits out a reconnect and is tried again: for idempotent requests only. */
  call(op: string, args: Record<string, unknown>): Promise<Record<string, unknown>> {
    return this.retrying(() => this.request(op, args));
  }

  /** Runs `attempt` once connected, again after each temporary failure (bounded): for idempotent work only. */
  async retrying<T>(run: () => Promise<T>): Promise<T> {
    for (let attempt = 0; ; attempt++) {
      try {
        if (!this.connected) await this.waitConnected();
        return await run();
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
      if (!this.acks.waiting && inFlight === this.ackInFlight) return;
    }
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
    for (const [conv, seq] of Object.entries(this.sequencer.positions())) {
      if (seq > (local.get(Number(conv))?.received ?? 0) && this.acks.received(Number(conv), seq)) this.ackSoon();
    }
    await this.flushAcks().catch(() => {});
    clearTimeout(this.ackTimer);
    this.sequencer.stop();
    this.link?.close();
    for (const link of this.connecting) link.close();
  }

  /** This device's identity keys (restored from the server's backup at a password login on a new device). */
  keys(): IdentityKeys {
    if (!this.identity) throw new ChatError("E_NO_KEYS");
    return this.identity;
  }

  async request(op: string, args: Record<string, unknown> = {}): Promise<Record<string, unknown>> {
    if (!this.link || this.link.closed) throw new ChatError("E_CLOSED", "Not connected; reconnecting");
    return this.link.request(op, args);
  }

  /**
   * The first connection: the balancer, or every server, may be away for a
   * moment (a restart), so temporary refusals are tried again with backoff
   * for up to waitMs before the error is the caller's.
   */
  async start(): Promise<void> {
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

  private async connect(): Promise<void> {
    const addr = await askBalancer(this.options.balancer);
    if (this.closing) throw new ChatError("E_CLOSED");
    const link = await Link.connect(addr, {
      hello: { role: "client", agent: this.options.agent ?? "chatterbox" },
      onEvent: (ev, frame) => {
        if (this.closing) return;
        if (ev !== "msg") return this.hooks.event(ev, frame);
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
      this.lanes.resume();
      // What was shown before a cut but never acknowledged goes first, so
      // that the replay starts past it instead of with it.
      this.acks.queueUnacknowledged();
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
        this.acks.queueUnacknowledged();
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
    for (const [conv, seq] of Object.entries(cursors)) this.sequencer.position(Number(conv), seq);
    this.acks.serverSaid(cursors, (reply.read ?? {}) as Record<string, number>);
    this.hooks.loggedIn(reply);
  }

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
    this.hooks.passwordLogin(wrapKey);
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
    this.lanes.fail(error);
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
        // Pages are bounded in bytes too: only an empty one means the end.
        if (page.length === 0) break;
        from = page[page.length - 1]!.seq;
      }
      this.sequencer.filled(conv, all);
    } catch {
      // Not connected: the replay after the reconnect fills the gap.
    }
  }

  /** Something new waits to be acknowledged: it goes out shortly, with whatever else comes meanwhile. */
  ackSoon(): void {
    this.ackTimer ??= setTimeout(() => this.sendAcks(), ACK_DELAY_MS);
  }

  private sendAcks(): void {
    clearTimeout(this.ackTimer);
    this.ackTimer = undefined;
    if (!this.connected) return;
    const batch = this.acks.take();
    if (!batch) return;
    const link = this.link!;
    const requests: Promise<unknown>[] = [];
    for (let i = 0; i < Math.max(batch.acks.length, batch.read.length); i += MAX_ACKS) {
      const a = batch.acks.slice(i, i + MAX_ACKS);
      const r = batch.read.slice(i, i + MAX_ACKS);
      requests.push(link.request("ack", { ...(a.length ? { acks: a } : {}), ...(r.length ? { read: r } : {}) }));
    }
    this.ackInFlight = Promise.all([this.ackInFlight, ...requests]).then(
      () => this.acks.confirmed(batch),
      () => {
        this.acks.failed(batch);
        // Tried again on a timer while connected; after a cut, the next login sends it.
        if (this.connected && !this.closing) this.ackTimer ??= setTimeout(() => this.sendAcks(), 1_000);
      },
    );
  }
}

export function bytesOf(m: WireMessage): WireMessage {
  return { ...m, body: new Uint8Array(m.body) };
}
