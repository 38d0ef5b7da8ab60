/**
 * Delivery of committed messages and of ephemeral events (receipts, typing,
 * read markers): to every connection of each recipient on this server, over
 * the peer link to every other server that holds one, or nowhere (the
 * recipient is offline and gets stored messages at the next login). Where
 * users are is cached; peers announce when a user first connects to them or
 * last leaves, and entries expire so that a lost announcement heals by itself.
 */
import { ClockCache } from "./clock-cache";
import { encode } from "../protocol/codec";
import { encodeMessageEvent } from "../protocol/message-frame";
import type { WireMessage } from "../protocol/messages";
import type { Conn, ServerConfig } from "./context";
import type { DeviceStore } from "./device-store";
import { Flow, type BacklogReader } from "./flow";
import { NO_METRICS, type DeliveryRecorder } from "./metrics";
import type { Forward } from "./peer-batch";

const ONLINE_TTL_MS = 60_000;
/** What a delivery handed on at once returns: nothing left to wait for. */
const DONE: Promise<void> = Promise.resolve();
/** Short, so that a missed "logged in" announcement costs at most this much liveness. */
const OFFLINE_TTL_MS = 2_000;

/** Where a message sits in its conversation: all a held delivery needs of it. */
export type Slot = Pick<WireMessage, "conv" | "seq">;

interface Location {
  servers: string[];
  at: number;
}

/** A forward that failed is tried again every half second for 15 s, at most 20,000 at a time. */
const FORWARD_RETRY_MS = 500;
const FORWARD_RETRIES = 30;
const MAX_RETRYING_FORWARDS = 20_000;

/** What delivery uses of the server from the start. */
export interface DeliveryDeps {
  serverId: string;
  /** Where users are connected, asked for those the cache does not know (ChatDB's connection rows). */
  devices: Pick<DeviceStore, "locations">;
  /** What a connection that fell behind reads back (server/flow.ts). */
  store: BacklogReader;
  config: Pick<ServerConfig, "outboxLimit" | "liveWithinMs">;
  log(line: string): void;
}

/** The links to the other servers, as delivery uses them. */
export interface PeerLinks {
  /** Forwards a frame to a peer, with the rest of this turn's to it in one batch; false when no link to it exists or is being made. */
  deliver(serverId: string, item: Forward): boolean;
  /** Links to servers that started since the last look. */
  refresh(): Promise<void>;
}

/**
 * Where delivery hands messages on: this server's connections and the peer
 * links. Both also tell delivery where users are (located, forgetServer), so
 * they are built after it and handed over once, with connect().
 */
export interface DeliveryReach {
  sessions: { local(userId: number): ReadonlySet<Conn> | undefined };
  peers: PeerLinks;
}

export class Delivery {
  /** Bounded, evicting what was not used lately: an entry that goes is asked of the database again at the next message. */
  private readonly where: ClockCache<number, Location>;
  /** Forwards waiting to be tried again (forwardLater). */
  private retrying = 0;
  /** Per connection: what was sent, what fell behind (server/flow.ts). */
  readonly flow: Flow;
  private reach?: DeliveryReach;

  constructor(
    private readonly deps: DeliveryDeps,
    private readonly recorder: DeliveryRecorder = NO_METRICS,
    maxEntries = 200_000,
  ) {
    this.where = new ClockCache(maxEntries);
    this.flow = new Flow(
      () => deps.store,
      () => deps.config.outboxLimit,
      (line) => deps.log(line),
    );
  }

  /** Hands over the sessions and the peer links, once they exist (see DeliveryReach). Called once, before the server listens. */
  connect(reach: DeliveryReach): void {
    this.reach = reach;
  }

  private get links(): DeliveryReach {
    if (!this.reach) throw new Error("Delivery used before connect()");
    return this.reach;
  }

  /** A user appeared on, or left, a server (this one or a peer). */
  located(userId: number, server: string, here: boolean): void {
    const known = this.where.get(userId);
    const servers = (known?.servers ?? []).filter((s) => s !== server);
    if (here) servers.push(server);
    this.where.set(userId, { servers, at: Date.now() });
  }

  /** Forgets every user placed on a server that has gone. */
  forgetServer(server: string): void {
    const gone: number[] = [];
    for (const [user, location] of this.where.entries()) if (location.servers.includes(server)) gone.push(user);
    for (const user of gone) this.where.delete(user);
  }

  /**
   * Delivers one stored message to every connection of its recipients,
   * wherever they are, but `except` (the connection that sent it).
   */
  deliver(message: WireMessage, recipients: number[], except?: Conn): Promise<void> {
    // A failure is the returned promise's, as when these were async: a send's reply never carries a delivery's error.
    try {
      return this.route(recipients, encodeMessageEvent(message), except, message);
    } catch (error) {
      return Promise.reject(error);
    }
  }

  /** An event that is not stored (a receipt, typing, a read marker) to every connection of these users. */
  send(users: number[], frame: Record<string, unknown>, except?: Conn): Promise<void> {
    try {
      return this.route(users, encode(frame), except, undefined);
    } catch (error) {
      return Promise.reject(error);
    }
  }

  /** An event already framed (protocol/receipts-frame.ts): one encoding for every connection it goes to. */
  sendEncoded(users: number[], bytes: Uint8Array, except?: Conn): Promise<void> {
    try {
      return this.route(users, bytes, except, undefined);
    } catch (error) {
      return Promise.reject(error);
    }
  }

  /**
   * A peer forwarded a message or an event. A recipient who is no longer here
   * moved since the peer looked: ask the database where they are now and
   * forward once more.
   */
  fromPeer(message: Slot | undefined, recipients: number[], bytes: Uint8Array, hops: number): Promise<void> {
    let moved: number[] | undefined;
    try {
      const { sessions } = this.links;
      for (let i = 0; i < recipients.length; i++) {
        const user = recipients[i]!;
        const conns = sessions.local(user);
        if (!conns || conns.size === 0) {
          (moved ??= []).push(user);
          continue;
        }
        for (const conn of conns) message !== undefined ? this.push(conn, message, bytes) : conn.sendEncoded(bytes);
      }
    } catch (error) {
      return Promise.reject(error);
    }
    // All here (the common case): nothing to wait for.
    if (moved === undefined || hops > 0) return DONE;
    return this.forwardMoved(message, moved, bytes, hops);
  }

  private async forwardMoved(message: Slot | undefined, moved: number[], bytes: Uint8Array, hops: number): Promise<void> {
    const { peers } = this.links;
    const rows = await this.deps.devices.locations(moved, this.deps.config.liveWithinMs);
    for (const user of moved) {
      const servers = rows.get(user) ?? [];
      this.where.set(user, { servers, at: Date.now() });
      for (const server of servers) {
        if (server === this.deps.serverId) continue;
        peers.deliver(server, { to: [user], ...(message ? { conv: message.conv, seq: message.seq } : {}), frame: bytes, hops: hops + 1 });
      }
    }
  }

  /**
   * Sends to a local connection. One that is replaying its backlog, or whose
   * outbox is filling up, is never cut off for it: the message is stored, so
   * it is dropped here and read back from the database when there is room.
   */
  push(conn: Conn, message: Slot, bytes: Uint8Array): void {
    this.flow.live(conn, message, bytes);
    this.recorder.delivered();
  }

  /**
   * Where every user is known (the common case), everything is handed on in
   * this call, without a promise to wait for: a plain loop, no closure or list
   * made per message (`route` and `resolve` were 13% of a server's profile).
   * Otherwise the unknown are looked up first, and then all go together.
   * May throw: its callers turn that into their promise's rejection.
   */
  private route(users: number[], bytes: Uint8Array, except: Conn | undefined, slot: Slot | undefined): Promise<void> {
    const unknown = this.stale(users);
    if (unknown !== undefined) return this.lookup(unknown).then(() => this.handOn(users, bytes, except, slot));
    return this.handOn(users, bytes, except, slot) ?? DONE;
  }

  /** Hands on to every place known for these users; a promise only when a peer link must be made first. */
  private handOn(users: number[], bytes: Uint8Array, except: Conn | undefined, slot: Slot | undefined): Promise<void> | undefined {
    const { sessions } = this.links;
    const here = this.deps.serverId;
    let remote: Map<string, number[]> | undefined;
    for (let i = 0; i < users.length; i++) {
      const user = users[i]!;
      // peek: stale() just marked every one of them used.
      const servers = this.where.peek(user)?.servers;
      if (servers === undefined) continue;
      for (let j = 0; j < servers.length; j++) {
        const server = servers[j]!;
        if (server !== here) {
          remote ??= new Map();
          const list = remote.get(server);
          if (list) list.push(user);
          else remote.set(server, [user]);
          continue;
        }
        const conns = sessions.local(user);
        if (conns === undefined) continue;
        for (const conn of conns) {
          if (conn === except) continue;
          if (slot !== undefined) this.push(conn, slot, bytes);
          else conn.sendEncoded(bytes);
        }
      }
    }
    if (remote === undefined) return undefined;
    let pending: Promise<void> | undefined;
    for (const [server, to] of remote) {
      // The client frame as it is: the peer passes it on without decoding or encoding it again.
      const item: Forward = slot !== undefined ? { to, conv: slot.conv, seq: slot.seq, frame: bytes, hops: 0 } : { to, frame: bytes, hops: 0 };
      if (this.links.peers.deliver(server, item)) continue;
      pending = (pending ?? DONE).then(() => this.forwardAfterRefresh(server, item));
    }
    return pending;
  }

  /** A server that started a moment ago: link to it now (the link queues), or forget it and try again later. */
  private async forwardAfterRefresh(server: string, item: Forward): Promise<void> {
    const { peers } = this.links;
    if (peers.deliver(server, item)) return;
    await peers.refresh().catch(() => {});
    if (peers.deliver(server, item)) return;
    this.forgetServer(server);
    this.forwardLater(server, item);
  }

  /**
   * A peer we could not reach may be away only for a moment: after a database
   * outage every heartbeat looks stale, and links are dropped and made again
   * within a second or two. Its users are still connected and would otherwise
   * see these messages only at their next login (nothing later in the
   * conversation may come to reveal the gap), so the forward is tried again
   * for a while. Bounded in number; what is given up is still in the database.
   */
  private forwardLater(server: string, item: Forward, attempt = 0): void {
    if (attempt === 0) {
      if (this.retrying >= MAX_RETRYING_FORWARDS) return;
      this.retrying++;
    }
    setTimeout(() => {
      if (this.links.peers.deliver(server, item)) this.retrying--;
      else if (attempt + 1 < FORWARD_RETRIES) this.forwardLater(server, item, attempt + 1);
      else this.retrying--;
    }, FORWARD_RETRY_MS);
  }

  /** Recipients whose place is unknown or stale, or undefined when every one is cached (marking them used). */
  private stale(users: number[]): number[] | undefined {
    let now = 0;
    let unknown: number[] | undefined;
    for (let i = 0; i < users.length; i++) {
      const user = users[i]!;
      const location = this.where.get(user);
      if (location !== undefined) {
        if (now === 0) now = Date.now();
        if (now - location.at <= (location.servers.length > 0 ? ONLINE_TTL_MS : OFFLINE_TTL_MS)) continue;
      }
      (unknown ??= []).push(user);
    }
    return unknown;
  }

  private lookup(unknown: number[]): Promise<void> {
    return this.deps.devices.locations(unknown, this.deps.config.liveWithinMs).then((rows) => {
      const at = Date.now();
      for (const user of unknown) this.where.set(user, { servers: rows.get(user) ?? [], at });
    });
  }
}
