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
import type { ClientState, Conn } from "./context";
import type { RouteDeps } from "./route-deps";
import type { Destination, Directory } from "./directory";
import type { GroupChange } from "./group-store";
import { fileRoutes } from "./files";
import { mlsRoutes } from "./mls-routes";
import { userRoutes } from "./user-routes";
import { listPage, listPageRows, MAX_PAGE_ROWS, pageBytes } from "../protocol/limits";

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

/** One password hash per connection at a time: a pipelined flood of signups waits on the connection, not the server. */
const notHashing = (conn: Conn) =>
  conn.state.hashing ? new ChatError("E_RATE_LIMITED", "A password request is already in progress on this connection", 1000) : undefined;

export function routes(ctx: RouteDeps, directory: Directory, acks: Acks): Record<string, Route<ClientState>> {
  // No request names more people than a group may hold (and a group is its members plus the one adding).
  const maxNames = ctx.config.maxGroupMembers;
  // What one page of history or fetch may carry so that the reply fits a frame (protocol/limits.ts).
  const replyPage = pageBytes({ maxFrame: ctx.config.maxFrame });
  /** Names for a group to hold: past the group limit is E_GROUP_FULL, before any of them is looked at. */
  const joining = (req: Request, field: string) => {
    const value = req[field];
    if (Array.isArray(value) && value.length > maxNames) throw new ChatError("E_GROUP_FULL", `A group holds at most ${maxNames} members; this names ${value.length}`);
    return v.names(req, field, maxNames);
  };
  /** Marks the connection as hashing for the length of `work`. */
  async function hashing<T>(conn: Conn, work: () => Promise<T>): Promise<T> {
    conn.state.hashing = true;
    try {
      return await work();
    } finally {
      conn.state.hashing = false;
    }
  }
  async function authenticate(conn: Conn, run: () => Promise<LoginResult>) {
    conn.state.authenticating = true;
    // Live messages wait until the client's sync has replayed the backlog, so that order holds.
    conn.state.held = [];
    conn.state.heldBytes = 0;
    try {
      const { user, device, token, backup } = await run();
      clearTimeout(conn.state.loginTimer);
      // The send burst is earned from the session's start (server/limits.ts).
      ctx.limits.session(user.id);
      // Logged in: frames up to the full limit from now on.
      conn.trust();
      const [cursors, read, me] = await Promise.all([ctx.cursors.deviceCursors(user.id, conn.state.device!.id), ctx.cursors.readMarkers(user.id), ctx.store.settingsOf(user.id)]);
      return { user: user.name, device, token, server: ctx.id, cursors, read, settings: me.settings, pins: me.pins, ...(backup ? { backup } : {}) };
    } catch (error) {
      conn.state.held = undefined;
      throw error;
    } finally {
      conn.state.authenticating = false;
    }
  }

  /**
   * A send whose destination must be looked up (or made): it waits for the
   * last such send of its lane (target) on this connection, and is the lane's
   * tail until it is placed, so that later sends to the same target wait for it.
   */
  function lookUp<T>(conn: Conn, waitFor: Promise<void> | undefined, lane: string, work: () => Promise<T>): Promise<T> {
    const mine = (conn.state.sendTails ??= new Map());
    const placed = (waitFor ?? Promise.resolve()).then(work);
    const tail: Promise<void> = placed.then(
      () => {},
      () => {},
    );
    mine.set(lane, tail);
    void tail.then(() => {
      if (mine.get(lane) === tail) mine.delete(lane);
    });
    return placed;
  }

  /** A membership change is a system message: delivered like any other, to members old and new. */
  function announce(message: WireMessage, recipients: number[]) {
    ctx.receipts.forget(message.conv);
    // Every peer forgets the old members too, before the change reaches anyone
    // over the same links: a receipt made there after a member saw the change
    // goes to the new members only (a removed one is told nothing more).
    ctx.peers.broadcast("members", { conv: message.conv });
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
      guard: (conn) => anonymous(conn) ?? notHashing(conn),
      async handle(conn, req) {
        const name = v.name(req, "user");
        const auth = v.exactBytes(req, "auth", AUTH_KEY_BYTES);
        const identity = {
          salt: v.exactBytes(req, "salt", 16),
          kdf: JSON.stringify(v.kdf(req, "kdf")),
          dh: v.exactBytes(req, "dh", 32),
          sign: v.exactBytes(req, "sign", 32),
          backup: v.bytes(req, "backup", 1024),
        };
        await hashing(conn, () => signup(ctx, conn, name, auth, identity));
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
      guard: (conn) => loggedIn(conn) ?? notHashing(conn),
      async handle(conn, req) {
        const oldAuth = v.exactBytes(req, "old", AUTH_KEY_BYTES);
        const auth = v.exactBytes(req, "auth", AUTH_KEY_BYTES);
        const next = {
          salt: v.exactBytes(req, "salt", 16),
          kdf: JSON.stringify(v.kdf(req, "kdf")),
          backup: v.bytes(req, "backup", 1024),
        };
        await hashing(conn, () => changePassword(ctx, conn, conn.state.user!.name, oldAuth, auth, next));
      },
    },
    keys: {
      guard: loggedIn,
      async handle(_conn, req) {
        const names = v.names(req, "users", maxNames + 1);
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
        // A spent allowance refuses before anything is stored; a retry with the same cmid after the wait is a new send.
        ctx.limits.send(me.id, conn.remote, conn);
        // (an MLS application message from an epoch the conversation has left is refused first: server/mls-epochs.ts)
        const place = ({ convId, recipients }: Destination) => ({ convId, recipients, commit: ctx.mls.epochs.admit(convId, body, () => ctx.committer.append({ senderId: me.id, convId, cmid, body, epoch })) });
        // One connection's sends to one conversation reach the committer in the
        // order they arrived: while one is being looked up (a cold lookup, or
        // a conversation made on first use), the next to the same target wait
        // for it. Sends to other targets do not wait behind it (no
        // head-of-line blocking, issue 15). With nothing waiting and the
        // destination cached (the common case), a send goes straight in.
        const target = group !== undefined ? { group } : { to: to! };
        // The key is made only when some lookup of this connection is under way (not per send).
        const tails = conn.state.sendTails;
        const waitFor = tails !== undefined && tails.size > 0 ? tails.get(group !== undefined ? `g${group}` : `u${to}`) : undefined;
        const cached = waitFor === undefined ? directory.cached(me.id, target) : undefined;
        // Cached: placed now, without a turn of the event loop for an await of what is already there.
        const { convId, recipients, commit } = cached !== undefined ? place(cached) : await lookUp(conn, waitFor, group !== undefined ? `g${group}` : `u${to}`, () => directory.destination(me.id, target).then(place));
        const queuedAt = performance.now();
        const result = await commit;
        // What this send waited for its commit is the admission's earliest sign of a backlog (server/admission.ts).
        ctx.limits.committed(performance.now() - queuedAt);
        if (!result.ok) throw new ChatError(result.code, result.message);
        if (!result.duplicate) {
          const message: WireMessage =
            group !== undefined
              ? { id: result.id, conv: convId, seq: result.seq, from: me.name, to: group, group, kind: "chat", at: result.at, cmid, body }
              : { id: result.id, conv: convId, seq: result.seq, from: me.name, to: to!, kind: "chat", at: result.at, cmid, body };
          // The sender's other connections (other devices, other processes) get it too; this one has its reply.
          const all = (result.recipients ?? recipients).slice();
          all.push(me.id);
          void ctx.delivery.deliver(message, all, conn).catch((e) => ctx.log(`deliver ${result.id}: ${e}`));
        }
        return { msg: result.id, conv: convId, seq: result.seq, at: result.at, duplicate: result.duplicate };
      },
    },
    "group.create": {
      guard: loggedIn,
      async handle(conn, req) {
        const name = v.name(req, "group");
        const others = req.members === undefined ? [] : joining(req, "members");
        const { message, recipients } = await ctx.groups.create(name, conn.state.user!, others);
        announce(message, recipients);
        return { group: name, conv: message.conv };
      },
    },
    "group.add": { guard: loggedIn, handle: (conn, req) => change(conn, req, { op: "add", users: joining(req, "users") }) },
    "group.remove": { guard: loggedIn, handle: (conn, req) => change(conn, req, { op: "remove", users: v.names(req, "users", maxNames) }) },
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
      async handle(conn, req) {
        // Paged (protocol/limits.ts): anyone can add anyone to groups, so the list has no bound of its own.
        const rows = listPageRows({ maxFrame: ctx.config.maxFrame });
        const page = listPage(await ctx.groups.of(conn.state.user!.id, v.optionalName(req, "after") ?? "", rows + 1), rows, (g) => g.name);
        return { groups: page.entries, ...(page.next !== undefined ? { next: page.next } : {}) };
      },
    },
    sync: {
      // One replay at a time: a second would page the same backlog again, and its messages twice.
      guard: (conn) => loggedIn(conn) ?? (conn.state.syncing ? new ChatError("E_BAD_REQUEST", "A sync is already in progress on this connection") : undefined),
      async handle(conn) {
        conn.state.syncing = true;
        try {
          return { count: await ctx.delivery.flow.replay(conn) };
        } finally {
          conn.state.syncing = false;
        }
      },
    },
    fetch: {
      guard: loggedIn,
      async handle(conn, req) {
        const conv = v.int(req, "conv", 1);
        const after = v.int(req, "after", 0);
        const limit = v.optionalInt(req, "limit", 1, MAX_PAGE_ROWS) ?? 500;
        // Paged by bytes too, so the reply fits one frame: the client asks again from the last seq.
        return { messages: await ctx.limits.read(conn, () => ctx.reads.after(conn.state.user!.id, conv, after, limit, replyPage), conn.state.user!.id) };
      },
    },
    history: {
      guard: loggedIn,
      async handle(conn, req) {
        const me = conn.state.user!;
        const group = v.optionalName(req, "group");
        const before = v.optionalInt(req, "before", 1);
        const limit = v.optionalInt(req, "limit", 1, MAX_PAGE_ROWS) ?? 50;
        const convId = group !== undefined ? await ctx.groups.conversation(group, me.id) : (await directory.direct(me.id, v.name(req, "with"))).convId;
        return { conv: convId, messages: await ctx.limits.read(conn, () => ctx.reads.history(me.id, convId, before, limit, replyPage), me.id) };
      },
    },
    ...userRoutes(ctx, directory, acks, loggedIn),
    ...fileRoutes(ctx, directory, loggedIn),
    ...mlsRoutes({ keyPackages: ctx.keyPackages, mls: ctx.mls, directory, delivery: ctx.delivery, maxBody: ctx.config.maxBody, log: (l) => ctx.log(l) }, loggedIn),
    ping: { handle: () => ({}) },
  };
}

export type { Request };
