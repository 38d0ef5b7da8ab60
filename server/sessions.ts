/**
 * The users logged in on this server, and the rules for taking a session: the
 * row lock in ChatDB decides, the displaced connection is told why and closed
 * (here, or on its server over the peer link), and a periodic audit closes any
 * connection whose session the database no longer gives it.
 */
import { ChatError } from "../protocol/errors";
import type { Conn, ServerContext } from "./context";

export class Sessions {
  private readonly byUser = new Map<number, Conn>();
  private readonly claims = new Map<number, Promise<void>>();
  private auditTimer?: Timer;

  constructor(private readonly ctx: () => ServerContext) {}

  get count(): number {
    return this.byUser.size;
  }

  local(userId: number): Conn | undefined {
    return this.byUser.get(userId);
  }

  users(): number[] {
    return [...this.byUser.keys()];
  }

  /**
   * Claims the user's session for this connection; displaces any earlier one.
   * Claims of one user on this server run one after another, so the local order
   * matches the order in which the row lock granted them.
   */
  start(conn: Conn, user: { id: number; name: string }, token?: { hash: Uint8Array; expires: Date }): Promise<void> {
    const before = this.claims.get(user.id) ?? Promise.resolve();
    const mine = before.then(() => this.claim(conn, user, token));
    const settled = mine.catch(() => {});
    this.claims.set(user.id, settled);
    void settled.then(() => {
      if (this.claims.get(user.id) === settled) this.claims.delete(user.id);
    });
    return mine;
  }

  private async claim(conn: Conn, user: { id: number; name: string }, token?: { hash: Uint8Array; expires: Date }): Promise<void> {
    const ctx = this.ctx();
    if (conn.closed) throw new ChatError("E_CLOSED", "The connection closed during the login");
    const previous = await ctx.store.claimSession(user.id, ctx.id, conn.id, token);
    // The claim took the record from the previous session: it is displaced even
    // if this connection has gone meanwhile, never left live but off the record.
    const displaced = this.byUser.get(user.id);
    if (displaced && displaced !== conn) this.kick(displaced);
    if (previous.serverId && previous.serverId !== ctx.id && previous.connId !== null) {
      ctx.peers.send(previous.serverId, "kick", { user: user.id, conn: previous.connId });
    }
    if (conn.closed) {
      await ctx.store.releaseSession(user.id, ctx.id, conn.id);
      return;
    }
    conn.state.user = user;
    conn.state.role = "client";
    this.byUser.set(user.id, conn);
    ctx.delivery.located(user.id, ctx.id);
    ctx.peers.broadcast("located", { user: user.id, server: ctx.id });
  }

  /** Called when a connection closes. */
  async end(conn: Conn): Promise<void> {
    const user = conn.state.user;
    if (!user || this.byUser.get(user.id) !== conn) return;
    this.byUser.delete(user.id);
    const ctx = this.ctx();
    ctx.delivery.located(user.id, null);
    ctx.peers.broadcast("located", { user: user.id, server: null });
    await ctx.store.releaseSession(user.id, ctx.id, conn.id).catch((e) => ctx.log(`release session: ${e}`));
  }

  /** A peer says a login elsewhere displaced this connection. */
  kickRemote(userId: number, connId: number): void {
    const conn = this.byUser.get(userId);
    if (conn && conn.id === connId) this.kick(conn);
  }

  private kick(conn: Conn): void {
    const user = conn.state.user;
    if (user && this.byUser.get(user.id) === conn) this.byUser.delete(user.id);
    conn.state.user = undefined;
    conn.bye("E_SESSION_REPLACED", "Logged in elsewhere: this session was closed by a newer login");
  }

  startAudit(intervalMs = 2000): void {
    this.auditTimer = setInterval(() => void this.audit(), intervalMs);
  }

  stop(): void {
    clearInterval(this.auditTimer);
  }

  /** The database is the record: close local connections whose session moved. */
  async audit(): Promise<void> {
    const ctx = this.ctx();
    const ids = this.users();
    if (ids.length === 0) return;
    // Only connections that held their place across the query: a claim that
    // landed meanwhile is newer than the rows read.
    const before = new Map(ids.map((id) => [id, this.byUser.get(id)]));
    try {
      const rows = await ctx.store.sessionsOf(ids);
      for (const id of ids) {
        const conn = this.byUser.get(id);
        const row = rows.get(id);
        if (!conn || conn !== before.get(id) || !row || row.serverId === null) continue;
        if (row.serverId !== ctx.id || row.connId !== conn.id) this.kick(conn);
      }
    } catch (error) {
      ctx.log(`session audit: ${error}`);
    }
  }

  /** Every connection, for shutdown. */
  all(): Conn[] {
    return [...this.byUser.values()];
  }
}
