/**
 * The request table of a chat server: each op names its handler and whether it
 * needs a logged-in user. Handlers validate their arguments at the top (the
 * edge) and are straight-line past that.
 */
import { ChatError } from "../protocol/errors";
import type { Request, WireMessage } from "../protocol/messages";
import * as v from "../protocol/validate";
import type { Route } from "../net/listener";
import type { Acks } from "./acks";
import { AUTH_KEY_BYTES, changePassword, login, prelogin, resume, signup, type LoginResult } from "./auth";
import type { ClientState, Conn, ServerContext } from "./context";
import type { Destination, Directory } from "./directory";
import type { GroupChange } from "./group-store";
import { fileRoutes } from "./files";
import { mlsRoutes } from "./mls-routes";
import { userRoutes } from "./user-routes";

const loggedIn = (conn: Conn) =>
  conn.state.user ? undefined : new ChatError("E_NOT_LOGGED_IN", "Log in first");
const anonymous = (conn: Conn) =>
  conn.state.role === "peer"
    ? new ChatError("E_UNKNOWN_OP", "Peers do not log in")
    : conn.state.user
      ? new ChatError("E_ALREADY_LOGGED_IN")
      : conn.state.authenticating
        ? new ChatError("E_BAD_REQUEST", "A login is already in progress on this connection")
        : undefined;

/** How many names one request may carry; the group's own limit is the store's to enforce (E_GROUP_FULL). */
const MAX_NAMES = 65_535;

export function routes(ctx: ServerContext, directory: Directory, acks: Acks): Record<string, Route<ClientState>> {
  async function authenticate(conn: Conn, run: () => Promise<LoginResult>) {
    conn.state.authenticating = true;
    // Live messages wait until the client's sync has replayed the backlog, so that order holds.
    conn.state.held = [];
    conn.state.heldBytes = 0;
    try {
      const { user, device, token, backup } = await run();
      clearTimeout(conn.state.loginTimer);
      const [cursors, read, me] = await Promise.all([ctx.cursors.deviceCursors(user.id, conn.state.device!.id), ctx.cursors.readMarkers(user.id), ctx.store.settingsOf(user.id)]);
      return { user: user.name, device, token, server: ctx.id, cursors, read, settings: me.settings, pins: me.pins, ...(backup ? { backup } : {}) };
    } catch (error) {
      conn.state.held = undefined;
      throw error;
    } finally {
      conn.state.authenticating = false;
    }
  }

  /** A membership change is a system message: delivered like any other, to members old and new. */
  function announce(message: WireMessage, recipients: number[]) {
    void ctx.delivery.deliver(message, recipients).catch((e) => ctx.log(`deliver ${message.id}: ${e}`));
  }

  async function change(conn: Conn, req: Request, what: GroupChange) {
    const { message, recipients } = await ctx.groups.change(v.name(req, "group"), conn.state.user!, what);
    announce(message, recipients);
    return { seq: message.seq };
  }

  return {
    salt: {
      // Also asked by a logged-in client about to change its password.
      guard: (conn) => (conn.state.role === "peer" ? new ChatError("E_UNKNOWN_OP", "Peers do not log in") : undefined),
      async handle(_conn, req) {
        return prelogin(ctx, v.name(req, "user"));
      },
    },
    signup: {
      guard: anonymous,
      async handle(_conn, req) {
        const name = v.name(req, "user");
        const auth = v.exactBytes(req, "auth", AUTH_KEY_BYTES);
        const identity = {
          salt: v.exactBytes(req, "salt", 16),
          kdf: JSON.stringify(v.kdf(req, "kdf")),
          dh: v.exactBytes(req, "dh", 32),
          sign: v.exactBytes(req, "sign", 32),
          backup: v.bytes(req, "backup", 1024),
        };
        await signup(ctx, name, auth, identity);
        return { user: name };
      },
    },
    login: {
      guard: anonymous,
      handle(conn, req) {
        const name = v.name(req, "user");
        const auth = v.exactBytes(req, "auth", AUTH_KEY_BYTES);
        const device = v.device(req, "device");
        return authenticate(conn, () => login(ctx, conn, name, auth, device));
      },
    },
    resume: {
      guard: anonymous,
      handle(conn, req) {
        const name = v.name(req, "user");
        const token = v.string(req, "token", 100);
        return authenticate(conn, () => resume(ctx, conn, name, token));
      },
    },
    passwd: {
      guard: loggedIn,
      async handle(conn, req) {
        const oldAuth = v.exactBytes(req, "old", AUTH_KEY_BYTES);
        const auth = v.exactBytes(req, "auth", AUTH_KEY_BYTES);
        const next = {
          salt: v.exactBytes(req, "salt", 16),
          kdf: JSON.stringify(v.kdf(req, "kdf")),
          backup: v.bytes(req, "backup", 1024),
        };
        await changePassword(ctx, conn.state.user!.name, oldAuth, auth, next);
      },
    },
    keys: {
      guard: loggedIn,
      async handle(_conn, req) {
        const names = v.names(req, "users", 1000);
        const found = await ctx.store.publicKeys(names);
        const missing = names.filter((n) => !found.has(n));
        if (missing.length > 0) throw new ChatError("E_NO_SUCH_USER", `No user is called "${missing[0]}"`);
        return { keys: Object.fromEntries(found) };
      },
    },
    send: {
      guard: loggedIn,
      async handle(conn, req) {
        const me = conn.state.user!;
        const group = v.optionalName(req, "group");
        const to = group === undefined ? v.name(req, "to") : undefined;
        const cmid = v.string(req, "cmid", 64);
        const body = v.bytes(req, "body", ctx.config.maxBody);
        const epoch = group !== undefined ? v.int(req, "epoch", 0) : undefined;
        const place = ({ convId, recipients }: Destination) => ({ convId, recipients, commit: ctx.committer.append({ senderId: me.id, convId, cmid, body, epoch }) });
        // One connection's sends reach the committer in the order they arrived,
        // even when a cold lookup for one takes longer than for the next: while
        // one is being looked up, the next wait for it. With nothing waiting and
        // the destination cached (the common case), a send goes straight in.
        const target = group !== undefined ? { group } : { to: to! };
        const cached = conn.state.sendTail === undefined ? directory.cached(me.id, target) : undefined;
        let placed: ReturnType<typeof place> | Promise<ReturnType<typeof place>>;
        if (cached) {
          placed = place(cached);
        } else {
          placed = (conn.state.sendTail ?? Promise.resolve()).then(async () => place(await directory.destination(me.id, target)));
          const tail: Promise<void> = placed.then(
            () => {},
            () => {},
          );
          conn.state.sendTail = tail;
          void tail.then(() => {
            if (conn.state.sendTail === tail) conn.state.sendTail = undefined;
          });
        }
        const { convId, recipients, commit } = await placed;
        const result = await commit;
        if (!result.ok) throw new ChatError(result.code, result.message);
        if (!result.duplicate) {
          const message: WireMessage = {
            id: result.id,
            conv: convId,
            seq: result.seq,
            from: me.name,
            to: group ?? to!,
            ...(group !== undefined ? { group } : {}),
            kind: "chat",
            at: result.at,
            cmid,
            body,
          };
          // The sender's other connections (other devices, other processes) get it too; this one has its reply.
          void ctx.delivery.deliver(message, [...(result.recipients ?? recipients), me.id], conn).catch((e) => ctx.log(`deliver ${result.id}: ${e}`));
        }
        return { msg: result.id, conv: convId, seq: result.seq, at: result.at, duplicate: result.duplicate };
      },
    },
    "group.create": {
      guard: loggedIn,
      async handle(conn, req) {
        const name = v.name(req, "group");
        const others = req.members === undefined ? [] : v.names(req, "members", MAX_NAMES);
        const { message, recipients } = await ctx.groups.create(name, conn.state.user!, others);
        announce(message, recipients);
        return { group: name, conv: message.conv };
      },
    },
    "group.add": { guard: loggedIn, handle: (conn, req) => change(conn, req, { op: "add", users: v.names(req, "users", MAX_NAMES) }) },
    "group.remove": { guard: loggedIn, handle: (conn, req) => change(conn, req, { op: "remove", users: v.names(req, "users", MAX_NAMES) }) },
    "group.promote": { guard: loggedIn, handle: (conn, req) => change(conn, req, { op: "promote", user: v.name(req, "user") }) },
    "group.leave": { guard: loggedIn, handle: (conn, req) => change(conn, req, { op: "leave" }) },
    "group.members": {
      guard: loggedIn,
      async handle(conn, req) {
        return ctx.groups.members(v.name(req, "group"), conn.state.user!.id);
      },
    },
    groups: {
      guard: loggedIn,
      async handle(conn) {
        return { groups: await ctx.groups.of(conn.state.user!.id) };
      },
    },
    sync: {
      guard: loggedIn,
      async handle(conn) {
        return { count: await replay(ctx, conn) };
      },
    },
    fetch: {
      guard: loggedIn,
      async handle(conn, req) {
        const conv = v.int(req, "conv", 1);
        const after = v.int(req, "after", 0);
        const limit = v.optionalInt(req, "limit", 1, 1000) ?? 500;
        return { messages: await ctx.reads.after(conn.state.user!.id, conv, after, limit) };
      },
    },
    history: {
      guard: loggedIn,
      async handle(conn, req) {
        const me = conn.state.user!;
        const group = v.optionalName(req, "group");
        const before = v.optionalInt(req, "before", 1);
        const limit = v.optionalInt(req, "limit", 1, 1000) ?? 50;
        const convId = group !== undefined ? await ctx.groups.conversation(group, me.id) : (await directory.direct(me.id, v.name(req, "with"))).convId;
        return { conv: convId, messages: await ctx.reads.history(me.id, convId, before, limit) };
      },
    },
    ...userRoutes(ctx, directory, acks, loggedIn),
    ...fileRoutes(ctx, directory, loggedIn),
    ...mlsRoutes(ctx.keyPackages, loggedIn),
    ping: { handle: () => ({}) },
  };
}

/**
 * Sends every message past this device's cursors, page by page (each bounded in
 * bytes), each message only once the outbox has room: a backlog of any size
 * completes at the pace of a slow link, and nothing is cut off. Live messages
 * that came meanwhile were left in the database (server/flow.ts): they follow.
 */
async function replay(ctx: ServerContext, conn: Conn): Promise<number> {
  const userId = conn.state.user!.id;
  const flow = ctx.delivery.flow;
  flow.startReplay(conn);
  let count = 0;
  let from = { conv: 0, seq: 0 };
  try {
    for (;;) {
      const page = await ctx.store.pending(userId, conn.state.device!.id, from);
      for (const m of page) {
        if (await flow.send(conn, m)) count++;
        if (conn.closed) return count;
      }
      if (page.length === 0) break;
      const last = page[page.length - 1]!;
      from = { conv: last.conv, seq: last.seq };
    }
  } finally {
    conn.state.held = undefined;
    conn.state.heldBytes = 0;
    await flow.endReplay(conn, userId);
  }
  return count;
}

export type { Request };
