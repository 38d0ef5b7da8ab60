/**
 * What a chat server takes from the other servers of its cluster: the
 * peer.auth request that finishes a peer's handshake, and the events peers
 * send over their links (deliveries, displaced sessions, users who moved,
 * the MLS epoch a commit moved a conversation to).
 */
import { timingSafeEqual } from "node:crypto";
import type { Route } from "../net/listener";
import { ChatError } from "../protocol/errors";
import type { ClientState, Conn } from "./context";
import type { Delivery } from "./delivery";
import type { Sessions } from "./sessions";

/**
 * peer.auth: the calling peer's proof over this very handshake, the one its
 * hello was answered with (conn.state.peerChallenge). A good proof makes the
 * connection a peer's; a bad one closes it.
 */
export function peerAuth(peers: { refresh(): Promise<void> }, linked?: (conn: Conn) => void): Route<ClientState> {
  return {
    guard: (conn) => (conn.state.peerChallenge ? undefined : new ChatError("E_BAD_REQUEST", "peer.auth follows a peer's hello")),
    handle(conn, req) {
      const expected = conn.state.peerChallenge!;
      conn.state.peerChallenge = undefined;
      const given = req.proof;
      if (!(given instanceof Uint8Array) || given.length !== expected.length || !timingSafeEqual(given, expected)) {
        setTimeout(() => conn.bye("E_AUTH", "This peer did not prove it belongs to the cluster"), 0);
        throw new ChatError("E_AUTH", "This peer did not prove it belongs to the cluster");
      }
      conn.state.role = "peer";
      clearTimeout(conn.state.loginTimer);
      conn.trust();
      linked?.(conn);
      // A server we have not met yet: link back to it now rather than at the next refresh.
      void peers.refresh().catch(() => {});
    },
  };
}

/** What the peer events use of the server, and no more. */
export interface PeerEventDeps {
  delivery: Pick<Delivery, "fromPeer" | "located">;
  sessions: Pick<Sessions, "close">;
  /** Receipts keep each conversation's members for a moment: a peer's membership change forgets them. */
  receipts: { forget(convId: number): void };
  /** The MLS epoch gate's cache (server/mls-epochs.ts): a peer's commit moves it. */
  epochs: { heard(convId: number, seq: number, state: { epoch: number; groupId: Uint8Array | null }): void };
  log(line: string): void;
}

/** Events from other servers: deliveries, displaced sessions, users who moved. */
export function peerEvent(deps: PeerEventDeps, _conn: Conn, ev: string, frame: Record<string, unknown>): void {
  switch (ev) {
    case "deliver": {
      // The client frame comes as the sending server encoded it; copied, so
      // that it does not keep the whole chunk it arrived in alive.
      // A stored message names its place (conv, seq); an event (receipt, typing) names none.
      const { to, conv, seq, frame: bytes } = frame;
      if (!Array.isArray(to) || !(bytes instanceof Uint8Array)) return;
      const slot = typeof conv === "number" && typeof seq === "number" ? { conv, seq } : undefined;
      void deps.delivery
        .fromPeer(slot, to as number[], new Uint8Array(bytes), Number(frame.hops ?? 0))
        .catch((e) => deps.log(`peer deliver: ${e}`));
      return;
    }
    case "deliveries": {
      // A turn's forwards in one frame (server/peer-batch.ts), handed on in the order they came:
      // fromPeer pushes to local connections before it first waits, so each conversation keeps its order.
      const { d } = frame;
      if (!Array.isArray(d)) return;
      for (const item of d) {
        if (!Array.isArray(item)) continue;
        const [to, bytes, conv, seq, hops] = item as unknown[];
        if (!Array.isArray(to) || !(bytes instanceof Uint8Array)) continue;
        const slot = typeof conv === "number" && typeof seq === "number" ? { conv, seq } : undefined;
        // Copied: a subarray would keep the whole batch alive in a slow reader's outbox.
        void deps.delivery
          .fromPeer(slot, to as number[], new Uint8Array(bytes), Number(hops ?? 0))
          .catch((e) => deps.log(`peer deliveries: ${e}`));
      }
      return;
    }
    case "kick":
      deps.sessions.close(Number(frame.user), Number(frame.conn), "E_DEVICE_REVOKED", "This device was revoked: log in again with the password");
      return;
    case "members":
      deps.receipts.forget(Number(frame.conv));
      return;
    case "mls.epoch":
      // sent before the commit's deliveries over the same link: a member who has the commit finds this server knowing its epoch
      deps.epochs.heard(Number(frame.conv), Number(frame.seq), {
        epoch: Number(frame.epoch),
        groupId: frame.groupId instanceof Uint8Array ? new Uint8Array(frame.groupId) : null,
      });
      return;
    case "located":
      if (typeof frame.server === "string") deps.delivery.located(Number(frame.user), frame.server, frame.here === true);
      return;
  }
}
