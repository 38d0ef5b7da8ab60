/**
 * Delivery of committed messages: to a connection on this server, over the peer
 * link to the server that holds the recipient, or nowhere (the recipient is
 * offline and will get it from the database at the next login). Where users are
 * is cached; session changes announced by peers update the cache, and entries
 * expire so that a lost announcement heals by itself.
 */
import { encode } from "../protocol/codec";
import type { WireMessage } from "../protocol/messages";
import type { Conn, ServerContext } from "./context";
import { NO_METRICS, type DeliveryRecorder } from "./metrics";

/** Live messages one connection may hold while it has not yet replayed its backlog. */
const MAX_HELD = 50_000;
const ONLINE_TTL_MS = 60_000;
/** Short, so that a missed "logged in" announcement costs at most this much liveness. */
const OFFLINE_TTL_MS = 2_000;

/** Where a message sits in its conversation: all a held delivery needs of it. */
export type Slot = Pick<WireMessage, "conv" | "seq">;

interface Location {
  server: string | null;
  at: number;
}

export class Delivery {
  private readonly where = new Map<number, Location>();

  constructor(
    private readonly ctx: () => ServerContext,
    private readonly recorder: DeliveryRecorder = NO_METRICS,
  ) {}

  located(userId: number, server: string | null): void {
    this.where.set(userId, { server, at: Date.now() });
  }

  /** Forgets every user placed on a server that has gone. */
  forgetServer(server: string): void {
    for (const [user, location] of this.where) if (location.server === server) this.where.delete(user);
  }

  /** Delivers one stored message to its recipients, wherever they are connected. */
  async deliver(message: WireMessage, recipients: number[]): Promise<void> {
    const ctx = this.ctx();
    const lookup = this.resolve(recipients);
    if (lookup) await lookup;
    const bytes = encode({ t: "ev", ev: "msg", m: message });
    const remote = new Map<string, number[]>();
    for (const user of recipients) {
      const server = this.where.get(user)?.server;
      if (server === ctx.id) {
        const conn = ctx.sessions.local(user);
        if (conn) this.push(conn, message, bytes);
      } else if (server) {
        const list = remote.get(server);
        if (list) list.push(user);
        else remote.set(server, [user]);
      }
    }
    for (const [server, users] of remote) {
      // The client frame as it is: the peer passes it on without decoding or encoding it again.
      const fields = { to: users, conv: message.conv, seq: message.seq, frame: bytes };
      if (ctx.peers.send(server, "deliver", fields)) continue;
      // A server that started a moment ago: link to it now (the link queues), or forget it.
      await ctx.peers.refresh().catch(() => {});
      if (!ctx.peers.send(server, "deliver", fields)) this.forgetServer(server);
    }
  }

  /**
   * A peer forwarded a message. A recipient who is no longer here moved since
   * the peer looked: ask the database where they are now and forward once more.
   */
  async fromPeer(message: Slot, recipients: number[], bytes: Uint8Array, hops: number): Promise<void> {
    const ctx = this.ctx();
    const moved: number[] = [];
    for (const user of recipients) {
      const conn = ctx.sessions.local(user);
      if (conn) this.push(conn, message, bytes);
      else moved.push(user);
    }
    if (moved.length === 0 || hops > 0) return;
    const rows = await ctx.store.sessionsOf(moved);
    for (const user of moved) {
      const server = rows.get(user)?.serverId ?? null;
      this.located(user, server);
      if (server && server !== ctx.id) ctx.peers.send(server, "deliver", { to: [user], conv: message.conv, seq: message.seq, frame: bytes, hops: hops + 1 });
    }
  }

  /** Sends to a local connection, or holds it while that connection replays its backlog. */
  push(conn: Conn, message: Slot, bytes: Uint8Array): void {
    const held = conn.state.held;
    if (!held) {
      if (conn.sendEncoded(bytes)) this.recorder.delivered();
    } else if (held.length < MAX_HELD && (conn.state.heldBytes ?? 0) + bytes.length <= this.ctx().config.outboxLimit) {
      held.push({ conv: message.conv, seq: message.seq, bytes });
      conn.state.heldBytes = (conn.state.heldBytes ?? 0) + bytes.length;
    } else {
      conn.bye("E_SLOW_CONSUMER", "Too many messages arrived before this connection synced");
    }
  }

  /** Looks up recipients whose place is unknown or stale; nothing to wait for when every one is cached. */
  private resolve(users: number[]): Promise<void> | undefined {
    const now = Date.now();
    const unknown = users.filter((user) => {
      const location = this.where.get(user);
      if (!location) return true;
      return now - location.at > (location.server ? ONLINE_TTL_MS : OFFLINE_TTL_MS);
    });
    if (unknown.length === 0) return undefined;
    return this.ctx()
      .store.sessionsOf(unknown)
      .then((rows) => {
        for (const user of unknown) this.located(user, rows.get(user)?.serverId ?? null);
      });
  }
}
