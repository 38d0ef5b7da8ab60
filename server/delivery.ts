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
  async deliver(message: WireMessage, recipients: number[], except?: Conn): Promise<void> {
    const bytes = encodeMessageEvent(message);
    await this.route(recipients, bytes, except, (conn) => this.push(conn, message, bytes), { conv: message.conv, seq: message.seq });
  }

  /** An event that is not stored (a receipt, typing, a read marker) to every connection of these users. */
  async send(users: number[], frame: Record<string, unknown>, except?: Conn): Promise<void> {
    const bytes = encode(frame);
    await this.route(users, bytes, except, (conn) => conn.sendEncoded(bytes));
  }

  /**
   * A peer forwarded a message or an event. A recipient who is no longer here
   * moved since the peer looked: ask the database where they are now and
   * forward once more.
   */
  async fromPeer(message: Slot | undefined, recipients: number[], bytes: Uint8Array, hops: number): Promise<void> {
    const { sessions, peers } = this.links;
    const moved: number[] = [];
    for (const user of recipients) {
      const conns = sessions.local(user);
      if (!conns || conns.size === 0) {
        moved.push(user);
        continue;
      }
      for (const conn of conns) message ? this.push(conn, message, bytes) : conn.sendEncoded(bytes);
    }
    if (moved.length === 0 || hops > 0) return;
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

  private async route(users: number[], bytes: Uint8Array, except: Conn | undefined, local: (conn: Conn) => void, slot?: Slot): Promise<void> {
    const { sessions, peers } = this.links;
    const lookup = this.resolve(users);
    if (lookup) await lookup;
    const remote = new Map<string, number[]>();
    for (const user of users) {
      // peek: resolve() just marked every one of them used.
      for (const server of this.where.peek(user)?.servers ?? []) {
        if (server !== this.deps.serverId) {
          const list = remote.get(server);
          if (list) list.push(user);
          else remote.set(server, [user]);
          continue;
        }
        for (const conn of sessions.local(user) ?? []) if (conn !== except) local(conn);
      }
    }
    for (const [server, to] of remote) {
      // The client frame as it is: the peer passes it on without decoding or encoding it again.
      const item: Forward = { to, ...(slot ? { conv: slot.conv, seq: slot.seq } : {}), frame: bytes, hops: 0 };
      if (peers.deliver(server, item)) continue;
      // A server that started a moment ago: link to it now (the link queues), or forget it.
      await peers.refresh().catch(() => {});
      if (peers.deliver(server, item)) continue;
      this.forgetServer(server);
      this.forwardLater(server, item);
    }
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

  /** Looks up recipients whose place is unknown or stale; nothing to wait for when every one is cached. */
  private resolve(users: number[]): Promise<void> | undefined {
    const now = Date.now();
    const unknown = users.filter((user) => {
      const location = this.where.get(user);
      if (!location) return true;
      return now - location.at > (location.servers.length > 0 ? ONLINE_TTL_MS : OFFLINE_TTL_MS);
    });
    if (unknown.length === 0) return undefined;
    return this.deps.devices.locations(unknown, this.deps.config.liveWithinMs).then((rows) => {
      const at = Date.now();
      for (const user of unknown) this.where.set(user, { servers: rows.get(user) ?? [], at });
    });
  }
}
