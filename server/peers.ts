/**
 * The peer links: one outbound link from this server to each other live server,
 * found in the servers table. A link is a fast path, not the record: a send that
 * finds no link is dropped, because the message is already in the database.
 */
import { Link } from "../net/link";
import type { ClientTls, Plaintext } from "../net/tls";
import type { Store } from "./store";
import { PeerBatch, deliverFields, type Forward } from "./peer-batch";
import { isNonce, nonce, proof, verifyProof, type Handshake } from "./peer-proof";

const QUEUE_WHILE_CONNECTING = 10_000;

interface PeerLink {
  addr: string;
  link?: Link;
  /** The open link's forwards of this turn (server/peer-batch.ts). */
  batch?: PeerBatch;
  queue?: [string, Record<string, unknown>][];
}

/** What the peer links use of the server, and no more. */
export interface PeersDeps {
  serverId: string;
  /** The servers table: this server's heartbeat, and the others that are live. */
  store: Pick<Store, "heartbeatServer" | "liveServers">;
  /** A server whose heartbeat is older than this is considered gone. */
  liveWithinMs: number;
  log(line: string): void;
  /** A server left the servers table: whatever placed users there (delivery's location cache) forgets them. */
  gone(serverId: string): void;
  /**
   * This server's own heartbeat reached the servers table `gapMs` after the
   * one before, long enough for the others to have taken it for gone
   * meanwhile (a stalled process, a starved machine, a slow database): they
   * delivered nothing live to its users, who are still connected.
   */
  late?(gapMs: number): void;
}

export class Peers {
  private readonly links = new Map<string, PeerLink>();
  private timer?: Timer;
  private stopped = false;

  constructor(
    private readonly deps: PeersDeps,
    private readonly secret: Uint8Array,
    /** This server's certificate, shown to the peers it calls (mutual TLS), and the CA it checks them against. */
    private readonly tls: ClientTls | Plaintext,
  ) {}

  /** The acceptor's side of the handshake: its proof now, and the proof it must get back in peer.auth. */
  accept(h: Handshake): { proof: Uint8Array; expect: Uint8Array } {
    return { proof: proof(this.secret, "accept", h), expect: proof(this.secret, "connect", h) };
  }

  /**
   * The live servers this one knows of, linked or not (undefined before the
   * first look at ChatDB): a peer it cannot reach, and that cannot reach it,
   * is still one whose announcements it may miss.
   */
  get knownCount(): number | undefined {
    return this.refreshed ? this.links.size : undefined;
  }
  private refreshed = false;

  /** Links open now, for the metrics. */
  get linkCount(): number {
    return [...this.links.values()].filter((peer) => peer.link && !peer.link.closed).length;
  }

  start(intervalMs = 1000): void {
    let beat: number | undefined;
    const tick = async () => {
      try {
        await this.deps.store.heartbeatServer(this.deps.serverId);
        // Half of liveWithinMs: the others may have looked while the heartbeat was older than that whole bound,
        // and a catch-up that was not needed costs a read of what was sent already; one missed hides messages.
        const now = performance.now();
        if (beat !== undefined && now - beat > this.deps.liveWithinMs / 2) this.deps.late?.(Math.round(now - beat));
        beat = now;
        await this.refresh();
      } catch (error) {
        this.deps.log(`peer refresh: ${error}`);
      }
    };
    void tick();
    this.timer = setInterval(tick, intervalMs);
  }

  async refresh(): Promise<void> {
    const live = await this.deps.store.liveServers(this.deps.liveWithinMs);
    const liveIds = new Set(live.map((s) => s.id));
    for (const server of live) {
      if (server.id === this.deps.serverId) continue;
      const known = this.links.get(server.id);
      if (!known || (known.addr !== server.addr && !known.queue)) {
        if (known) this.retire(known);
        known?.link?.close();
        this.connect(server.id, server.addr);
      } else if (!known.link && !known.queue) {
        this.connect(server.id, server.addr);
      }
    }
    for (const [id, peer] of this.links) {
      if (!liveIds.has(id)) {
        this.retire(peer);
        peer.link?.close();
        this.links.delete(id);
        this.deps.gone(id);
      }
    }
    this.refreshed = true;
  }

  /** Frames forwarded so far and the `deliveries`/`deliver` frames they went in, over every link this server made. */
  get forwarded(): { frames: number; items: number } {
    const total = { ...this.closedCounts };
    for (const peer of this.links.values()) {
      total.frames += peer.batch?.sent.frames ?? 0;
      total.items += peer.batch?.sent.items ?? 0;
    }
    return total;
  }
  private readonly closedCounts = { frames: 0, items: 0 };

  /** Forwards a frame to a peer, gathered with the rest of the turn's; false when no link to it exists or is being made. */
  deliver(serverId: string, item: Forward): boolean {
    const peer = this.links.get(serverId);
    if (!peer) return false;
    if (peer.link && !peer.link.closed && peer.batch) {
      peer.batch.add(item);
      return true;
    }
    if (peer.queue && peer.queue.length < QUEUE_WHILE_CONNECTING) {
      peer.queue.push(["deliver", deliverFields(item)]);
      return true;
    }
    return false;
  }

  /** Queues an event for a peer; false when no link to it exists or is being made. */
  send(serverId: string, ev: string, fields: Record<string, unknown>): boolean {
    const peer = this.links.get(serverId);
    if (!peer) return false;
    if (peer.link && !peer.link.closed) {
      // What was forwarded before this event goes before it, as when each went alone.
      peer.batch?.flush();
      peer.link.notify(ev, fields);
      return true;
    }
    if (peer.queue && peer.queue.length < QUEUE_WHILE_CONNECTING) {
      peer.queue.push([ev, fields]);
      return true;
    }
    return false;
  }

  broadcast(ev: string, fields: Record<string, unknown>): void {
    for (const id of this.links.keys()) this.send(id, ev, fields);
  }

  stop(): void {
    this.stopped = true;
    clearInterval(this.timer);
    for (const peer of this.links.values()) {
      this.retire(peer);
      peer.link?.close();
    }
    this.links.clear();
  }

  /** Sends what a link's batch holds and keeps its counts in the totals: before the link closes, or once it has. */
  private retire(peer: PeerLink): void {
    if (!peer.batch) return;
    // What this turn gathered goes out before the link closes (a drain's last commits), as single frames did.
    peer.batch.flush();
    this.closedCounts.frames += peer.batch.sent.frames;
    this.closedCounts.items += peer.batch.sent.items;
    peer.batch = undefined;
  }

  private connect(serverId: string, addr: string): void {
    const me = this.deps.serverId;
    const peer: PeerLink = { addr, queue: [] };
    this.links.set(serverId, peer);
    const mine = nonce();
    const open = async () => {
      const link = await Link.connect(addr, {
        tls: this.tls,
        hello: { role: "peer", server: me, nonce: mine },
        timeoutMs: 5_000,
        onClose: () => {
          this.retire(peer);
          if (this.links.get(serverId) === peer) peer.link = undefined;
        },
      });
      const reply = link.helloReply;
      const h = { caller: me, callee: serverId, callerNonce: mine, calleeNonce: reply.nonce as Uint8Array };
      if (reply.server !== serverId || !isNonce(reply.nonce) || !verifyProof(this.secret, "accept", h, reply.proof)) {
        link.close();
        throw new Error(`${addr} did not prove it is server ${serverId} of this cluster`);
      }
      await link.request("peer.auth", { proof: proof(this.secret, "connect", h) });
      return link;
    };
    open().then(
      (link) => {
        if (this.stopped || this.links.get(serverId) !== peer) return link.close();
        peer.link = link;
        // A peer of this version says it takes `deliveries`; an older one gets a `deliver` a frame.
        peer.batch = new PeerBatch(link, link.helloReply.deliveries === 1);
        for (const [ev, fields] of peer.queue ?? []) link.notify(ev, fields);
        peer.queue = undefined;
      },
      (error) => {
        this.deps.log(`peer link to ${serverId} at ${addr}: ${error.message}`);
        if (this.links.get(serverId) === peer) peer.queue = undefined;
      },
    );
  }
}
