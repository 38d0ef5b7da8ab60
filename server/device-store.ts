/**
 * Devices, sessions and resume tokens in ChatDB. A user has up to a cap of
 * devices (one client home each) and any number of live connections from
 * them; a login or a resume records its connection in one transaction that
 * holds the user's row and the device's row under SELECT ... FOR UPDATE, so
 * the cap, a revocation and a password change are each seen whole.
 */
import type { Sql } from "../db/connect";
import { ChatError } from "../protocol/errors";

export interface DeviceSession {
  userId: number;
  userName: string;
  deviceId: number;
  deviceKey: string;
}

export interface DeviceInfo {
  id: string;
  name: string;
  created: number;
  lastSeen: number;
  online: boolean;
}

export interface Token {
  hash: Uint8Array;
  expires: Date;
}

export class DeviceStore {
  constructor(
    private readonly sql: Sql,
    private readonly maxDevices: number,
  ) {}

  /**
   * A password login from a device: the device is made on first use (within
   * the cap) and starts its cursors at the user's read markers; the connection
   * and a new token are recorded with it.
   */
  async login(userId: number, device: { key: string; name: string }, where: { serverId: string; connId: number }, token: Token): Promise<DeviceSession> {
    return this.sql.begin(async (tx) => {
      const [user] = await tx`select name from users where id = ${userId} for update`;
      if (!user) throw new ChatError("E_NO_SUCH_USER");
      let [row] = await tx`select id from devices where user_id = ${userId} and key = ${device.key} for update`;
      if (!row) {
        const [{ n }] = (await tx`select count(*)::int as n from devices where user_id = ${userId} and revoked_at is null`) as unknown as [{ n: number }];
        if (n >= this.maxDevices) {
          throw new ChatError("E_TOO_MANY_DEVICES", `${user.name} has ${n} devices, the most this server allows: revoke one first (chatterbox devices revoke ID)`);
        }
        [row] = await tx`insert into devices (user_id, key, name) values (${userId}, ${device.key}, ${device.name}) returning id`;
        // A new device gets what the person has not read yet, and everything after; older history on request.
        await tx`insert into device_cursors (device_id, conversation_id, seq)
                 select ${row!.id}, conversation_id, greatest(read_seq, joined_seq) from members where user_id = ${userId}`;
      }
      const deviceId = row!.id as number;
      // A password login brings a revoked device back: the password is the proof a revocation asks for.
      await tx`update devices set name = ${device.name}, last_seen_at = now(), revoked_at = null where id = ${deviceId}`;
      await tx`insert into tokens (hash, user_id, device_id, expires_at) values (${token.hash}, ${userId}, ${deviceId}, to_timestamp(${token.expires.getTime() / 1000}))`;
      await tx`insert into connections (server_id, conn_id, user_id, device_id) values (${where.serverId}, ${where.connId}, ${userId}, ${deviceId})`;
      return { userId, userName: user.name as string, deviceId, deviceKey: device.key };
    });
  }

  /**
   * A resume: the token is checked under the same locks as the connection is
   * recorded, so a password change or a revocation that lands first wins.
   */
  async resume(userName: string, tokenHash: Uint8Array, where: { serverId: string; connId: number }): Promise<DeviceSession> {
    return this.sql.begin(async (tx) => {
      const [user] = await tx`select id from users where name = ${userName} for update`;
      const [row] = user
        ? await tx`select t.device_id, d.key from tokens t join devices d on d.id = t.device_id
                   where t.hash = ${tokenHash} and t.user_id = ${user.id} and t.expires_at > now() and d.revoked_at is null
                   for update of d`
        : [];
      if (!row) throw new ChatError("E_TOKEN", "The resume token is not valid or has expired; log in with the password");
      await tx`update devices set last_seen_at = now() where id = ${row.device_id}`;
      await tx`insert into connections (server_id, conn_id, user_id, device_id) values (${where.serverId}, ${where.connId}, ${user!.id}, ${row.device_id})`;
      return { userId: user!.id as number, userName, deviceId: row.device_id as number, deviceKey: row.key as string };
    });
  }

  /** A connection closed: forget it, and note when the device was last seen. */
  async end(where: { serverId: string; connId: number }, deviceId: number): Promise<void> {
    await this.sql`delete from connections where server_id = ${where.serverId} and conn_id = ${where.connId}`;
    await this.sql`update devices set last_seen_at = now() where id = ${deviceId}`;
  }

  /**
   * The record for every connection this server holds, written again where it
   * is missing (after a database outage or restore); returns the devices among
   * them that were revoked meanwhile.
   */
  async audit(serverId: string, live: { connId: number; userId: number; deviceId: number }[]): Promise<Set<number>> {
    if (live.length === 0) return new Set();
    await this.sql`
      insert into connections (server_id, conn_id, user_id, device_id)
      select ${serverId}, * from unnest(${live.map((c) => c.connId)}::int[], ${live.map((c) => c.userId)}::int[], ${live.map((c) => c.deviceId)}::int[])
      on conflict do nothing`;
    const rows = await this.sql`select id from devices where id = any(${[...new Set(live.map((c) => c.deviceId))]}) and revoked_at is not null`;
    return new Set(rows.map((r) => r.id as number));
  }

  /** Which live servers hold connections of these users. */
  async locations(userIds: number[], liveWithinMs: number): Promise<Map<number, string[]>> {
    const rows = await this.sql`
      select c.user_id, array_agg(distinct c.server_id) as servers from connections c join servers v on v.id = c.server_id
      where c.user_id = any(${userIds}) and v.heartbeat_at > now() - ${liveWithinMs} * interval '1 millisecond'
      group by c.user_id`;
    return new Map(rows.map((r) => [r.user_id as number, r.servers as string[]]));
  }

  async list(userId: number, liveWithinMs: number): Promise<DeviceInfo[]> {
    const rows = await this.sql`
      select d.key, d.name, (extract(epoch from d.created_at) * 1000)::float8 as created,
        (extract(epoch from d.last_seen_at) * 1000)::float8 as last_seen,
        exists(select 1 from connections c join servers v on v.id = c.server_id
               where c.device_id = d.id and v.heartbeat_at > now() - ${liveWithinMs} * interval '1 millisecond') as online
      from devices d where d.user_id = ${userId} and d.revoked_at is null order by d.created_at, d.id`;
    return rows.map((r) => ({ id: r.key, name: r.name, created: r.created, lastSeen: r.last_seen, online: r.online }));
  }

  /**
   * Ends a device: its tokens go and it is marked revoked, in one transaction;
   * returns its live connections, for the caller to close.
   */
  async revoke(userId: number, deviceKey: string): Promise<{ serverId: string; connId: number }[]> {
    return this.sql.begin(async (tx) => {
      const [row] = await tx`select id from devices where user_id = ${userId} and key = ${deviceKey} and revoked_at is null for update`;
      if (!row) throw new ChatError("E_NO_SUCH_DEVICE", `No device of yours has the id ${deviceKey}`);
      await tx`update devices set revoked_at = now() where id = ${row.id}`;
      await tx`delete from tokens where device_id = ${row.id}`;
      const conns = await tx`delete from connections where device_id = ${row.id} returning server_id, conn_id`;
      return conns.map((c) => ({ serverId: c.server_id as string, connId: c.conn_id as number }));
    });
  }

  /** Forgets the connections of servers gone silent (a crashed server leaves its rows behind). */
  async pruneConnections(liveWithinMs: number): Promise<void> {
    await this.sql`delete from connections c where not exists (
                     select 1 from servers v where v.id = c.server_id and v.heartbeat_at > now() - ${liveWithinMs} * interval '1 millisecond')`;
  }

  async dropServer(serverId: string): Promise<void> {
    await this.sql`delete from connections where server_id = ${serverId}`;
  }
}
