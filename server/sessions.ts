/**
 * The connections logged in on this server. A user may hold many at once
 * (several devices, several processes of one device), and every one receives
 * every message. ChatDB keeps the record of each (server/device-store.ts);
 * peers learn when a user first appears here or last leaves, and a periodic
 * audit writes back any record a database outage lost and closes the
 * connections of revoked devices.
 */
import type { Conn } from "./context";
import type { DeviceSession, DeviceStore } from "./device-store";

export interface SessionsDeps {
  serverId: string;
  devices: Pick<DeviceStore, "end" | "audit">;
  /** Tells the location cache and the peers that a user is, or is no longer, connected here. */
  located(userId: number, here: boolean): void;
  log(line: string): void;
}

export class Sessions {
  private readonly byUser = new Map<number, Set<Conn>>();
  private connectionCount = 0;
  private auditTimer?: Timer;

  constructor(private readonly deps: SessionsDeps) {}

  /** Live client connections on this server. */
  get count(): number {
    return this.connectionCount;
  }

  /** Every local connection of the user. */
  local(userId: number): ReadonlySet<Conn> | undefined {
    return this.byUser.get(userId);
  }

  users(): number[] {
    return [...this.byUser.keys()];
  }

  /** A login or resume recorded in ChatDB: the connection joins the user's live set here. */
  add(conn: Conn, session: DeviceSession): void {
    conn.state.user = { id: session.userId, name: session.userName };
    conn.state.device = { id: session.deviceId, key: session.deviceKey };
    conn.state.role = "client";
    let mine = this.byUser.get(session.userId);
    const first = !mine;
    if (!mine) this.byUser.set(session.userId, (mine = new Set()));
    mine.add(conn);
    this.connectionCount++;
    if (first) this.deps.located(session.userId, true);
  }

  /** Called when a connection closes. */
  async end(conn: Conn): Promise<void> {
    const user = conn.state.user;
    const device = conn.state.device;
    if (!user || !device || !this.forget(conn)) return;
    await this.deps.devices.end({ serverId: this.deps.serverId, connId: conn.id }, device.id).catch((e) => this.deps.log(`end session: ${e}`));
  }

  /** Closes one connection of a user (its device was revoked), here or told by a peer. */
  close(userId: number, connId: number, code: "E_DEVICE_REVOKED" | "E_SHUTDOWN", message: string): void {
    for (const conn of this.byUser.get(userId) ?? []) {
      if (conn.id !== connId) continue;
      this.forget(conn);
      conn.bye(code, message);
    }
  }

  startAudit(intervalMs = 2000): void {
    this.auditTimer = setInterval(() => void this.audit(), intervalMs);
  }

  stop(): void {
    clearInterval(this.auditTimer);
  }

  /** The database is the record: restore what it lost, and close what it revoked. */
  async audit(): Promise<void> {
    const live = this.all().flatMap((conn) => (conn.state.user && conn.state.device ? [{ conn, connId: conn.id, userId: conn.state.user.id, deviceId: conn.state.device.id }] : []));
    try {
      const revoked = await this.deps.devices.audit(this.deps.serverId, live);
      for (const { conn, userId, deviceId } of live) {
        if (revoked.has(deviceId)) this.close(userId, conn.id, "E_DEVICE_REVOKED", "This device was revoked: log in again with the password");
      }
    } catch (error) {
      this.deps.log(`session audit: ${error}`);
    }
  }

  /** Every connection, for shutdown. */
  all(): Conn[] {
    return [...this.byUser.values()].flatMap((set) => [...set]);
  }

  private forget(conn: Conn): boolean {
    const user = conn.state.user;
    const mine = user && this.byUser.get(user.id);
    if (!mine?.delete(conn)) return false;
    this.connectionCount--;
    if (mine.size === 0) {
      this.byUser.delete(user!.id);
      this.deps.located(user!.id, false);
    }
    return true;
  }
}
