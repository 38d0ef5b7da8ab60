/**
 * The user-level state a client reads and changes: acknowledgements (what this
 * device received, what the person read), receipts, typing, presence, the
 * user's devices, settings, and the encrypted pins shared by their devices.
 */
import type { Route } from "../net/listener";
import { ChatError } from "../protocol/errors";
import { listPage, listPageRows } from "../protocol/limits";
import { MAX_ACKS } from "../protocol/messages";
import * as v from "../protocol/validate";
import type { Acks } from "./acks";
import type { ClientState, Conn, ServerConfig } from "./context";
import type { CursorStore } from "./cursor-store";
import type { Delivery } from "./delivery";
import type { DeviceStore } from "./device-store";
import type { Directory } from "./directory";
import type { GroupStore } from "./group-store";
import type { Peers } from "./peers";
import type { Sessions } from "./sessions";
import type { Store } from "./store";

/** Typing goes out at most this often per connection and conversation; clients refresh it every few seconds. */
const TYPING_INTERVAL_MS = 1500;
const MAX_PINS_BYTES = 256 * 1024;

/** What the user-level requests use of the server, and no more. */
export interface UserRouteDeps {
  /** This server's id: a revoked device connected here is closed here, elsewhere through its server. */
  id: string;
  config: Pick<ServerConfig, "maxFrame" | "liveWithinMs">;
  store: Pick<Store, "contacts" | "settingsOf" | "setReadReceipts" | "putPins">;
  devices: Pick<DeviceStore, "list" | "revoke">;
  cursors: Pick<CursorStore, "receipts" | "audience">;
  groups: Pick<GroupStore, "conversation">;
  delivery: Pick<Delivery, "send">;
  sessions: Pick<Sessions, "close">;
  peers: Pick<Peers, "send">;
  log(line: string): void;
}

export function userRoutes(ctx: UserRouteDeps, directory: Directory, acks: Acks, loggedIn: Route<ClientState>["guard"]): Record<string, Route<ClientState>> {
  /** The conversation a request names (`to` or `group`), for a member of it. */
  const conversation = async (conn: Conn, req: Record<string, unknown>) => {
    const me = conn.state.user!;
    const group = v.optionalName(req, "group");
    if (group !== undefined) return { convId: await ctx.groups.conversation(group, me.id), group };
    return { convId: (await directory.direct(me.id, v.name(req, "to"))).convId, to: v.name(req, "to") };
  };

  return {
    ack: {
      guard: loggedIn,
      async handle(conn, req) {
        const received = req.acks === undefined ? [] : v.cursorPairs(req, "acks", MAX_ACKS);
        const read = req.read === undefined ? [] : v.cursorPairs(req, "read", MAX_ACKS);
        if (received.length + read.length === 0) throw new ChatError("E_BAD_REQUEST", "acks or read: expected [conv, seq] pairs");
        // flush: this device's received marks are written before the reply (server/acks.ts holds them otherwise).
        const flush = req.flush === undefined ? false : v.boolean(req, "flush");
        await acks.ack(conn.state.user!.id, conn.state.device!.id, received, read, flush);
      },
    },
    receipts: {
      guard: loggedIn,
      async handle(conn, req) {
        return { conv: v.int(req, "conv", 1), receipts: await ctx.cursors.receipts(v.int(req, "conv", 1), conn.state.user!.id) };
      },
    },
    typing: {
      guard: loggedIn,
      async handle(conn, req) {
        const me = conn.state.user!;
        const { convId, group } = await conversation(conn, req);
        // Ephemeral: never stored. Rate limited per connection, silently: a refresh too soon is simply not passed on.
        const last = (conn.state.typingAt ??= new Map()).get(convId) ?? 0;
        if (Date.now() - last < TYPING_INTERVAL_MS) return {};
        conn.state.typingAt.set(convId, Date.now());
        const audience = (await ctx.cursors.audience([convId])).get(convId) ?? [];
        const others = audience.filter((m) => m.userId !== me.id).map((m) => m.userId);
        const frame = { t: "ev", ev: "typing", conv: convId, from: me.name, ...(group !== undefined ? { group } : {}) };
        void ctx.delivery.send(others, frame).catch((e) => ctx.log(`typing: ${e}`));
        return {};
      },
    },
    who: {
      guard: loggedIn,
      async handle(conn, req) {
        // Paged like groups: anyone who writes to a user becomes a contact.
        const rows = listPageRows({ maxFrame: ctx.config.maxFrame });
        const fetched = await ctx.store.contacts(conn.state.user!.id, ctx.config.liveWithinMs, v.optionalName(req, "after") ?? "", rows + 1);
        const { entries: contacts, next } = listPage(fetched, rows, (c) => c.name);
        return { users: contacts.filter((c) => c.online).map((c) => c.name), contacts, ...(next !== undefined ? { next } : {}) };
      },
    },
    devices: {
      guard: loggedIn,
      async handle(conn) {
        const list = await ctx.devices.list(conn.state.user!.id, ctx.config.liveWithinMs);
        return { devices: list.map((d) => ({ ...d, current: d.id === conn.state.device!.key })) };
      },
    },
    "devices.revoke": {
      guard: loggedIn,
      async handle(conn, req) {
        const me = conn.state.user!;
        const gone = await ctx.devices.revoke(me.id, v.string(req, "device", 64));
        for (const { serverId, connId } of gone) {
          // Its own connection too, once the reply is out.
          if (serverId === ctx.id) setTimeout(() => ctx.sessions.close(me.id, connId, "E_DEVICE_REVOKED", "This device was revoked: log in again with the password"), 0);
          else ctx.peers.send(serverId, "kick", { user: me.id, conn: connId });
        }
        // The user's devices look at the list again: the revoked one is out of it, so if it signs in again it is new.
        void ctx.delivery.send([me.id], { t: "ev", ev: "devices" }).catch((e) => ctx.log(`devices: ${e}`));
        return { closed: gone.length };
      },
    },
    settings: {
      guard: loggedIn,
      async handle(conn) {
        return { settings: (await ctx.store.settingsOf(conn.state.user!.id)).settings };
      },
    },
    "settings.set": {
      guard: loggedIn,
      async handle(conn, req) {
        if (req.readReceipts !== undefined) await ctx.store.setReadReceipts(conn.state.user!.id, v.boolean(req, "readReceipts"));
        return { settings: (await ctx.store.settingsOf(conn.state.user!.id)).settings };
      },
    },
    pins: {
      guard: loggedIn,
      async handle(conn) {
        return (await ctx.store.settingsOf(conn.state.user!.id)).pins;
      },
    },
    "pins.put": {
      guard: loggedIn,
      async handle(conn, req) {
        const blob = v.bytes(req, "blob", MAX_PINS_BYTES);
        const version = await ctx.store.putPins(conn.state.user!.id, blob, v.int(req, "version", 0));
        if (version === undefined) throw new ChatError("E_CONFLICT", "Another device changed the pins first: read them again and merge");
        return { version };
      },
    },
  };
}
