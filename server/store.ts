/**
 * Everything a chat server asks of ChatDB, behind one narrow class. The hot
 * path (appendBatch, pending) is hand-written SQL; the rest is plain CRUD.
 */
import type { Sql } from "../db/connect";
import { ChatError, type ErrorCode } from "../protocol/errors";
import type { WireMessage } from "../protocol/messages";
import { appendBatch, type AppendItem, type AppendResult } from "./append";
import { DirectOpener } from "./direct-opener";

export type { AppendItem, AppendResult };

export interface StoredUser {
  id: number;
  name: string;
  authHash: string;
  failedLogins: number;
  lockedUntil: number | null;
  salt: Uint8Array;
  kdf: string;
  backup: Uint8Array;
}

/** What a client publishes at signup: how it derives its keys, its public keys, its wrapped private keys. */
export interface Identity {
  salt: Uint8Array;
  kdf: string;
  dh: Uint8Array;
  sign: Uint8Array;
  backup: Uint8Array;
}

export interface PublicKeys {
  dh: Uint8Array;
  sign: Uint8Array;
}

/** Columns of a WireMessage; the query joins messages m, their sender s and their conversation c. */
export const MESSAGE_COLUMNS = (sql: Sql) => sql`
  m.id, m.conversation_id as conv, m.seq, m.cmid, m.body, m.kind, c.name as "group",
  s.name as "from",
  (extract(epoch from m.created_at) * 1000)::float8 as at,
  coalesce(c.name, (select u.name from members o join users u on u.id = o.user_id
            where o.conversation_id = m.conversation_id and o.user_id <> m.sender_id limit 1), s.name) as "to"`;

/** About this much message body per replay or fetch page: a quarter of the default outbox. */
export const PAGE_BYTES = 2 * 1024 * 1024;

export class Store {
  private readonly opener: DirectOpener;

  constructor(readonly sql: Sql) {
    this.opener = new DirectOpener(sql);
  }

  async createUser(name: string, authHash: string, identity: Identity): Promise<number> {
    try {
      return await this.sql.begin(async (tx) => {
        const [user] = await tx`
          insert into users (name, auth_hash, salt, kdf, dh_public, sign_public, key_backup)
          values (${name}, ${authHash}, ${identity.salt}, ${identity.kdf}, ${identity.dh}, ${identity.sign}, ${identity.backup})
          returning id`;
        return user!.id as number;
      });
    } catch (error) {
      if ((error as { code?: string }).code === "23505") throw new ChatError("E_NAME_TAKEN", `The name "${name}" is taken`);
      throw error;
    }
  }

  async findUser(name: string): Promise<StoredUser | undefined> {
    const [row] = await this.sql`
      select id, name, auth_hash, failed_logins, (extract(epoch from locked_until) * 1000)::float8 as locked_until,
        salt, kdf, key_backup
      from users where name = ${name}`;
    if (!row) return undefined;
    return {
      id: row.id,
      name: row.name,
      authHash: row.auth_hash,
      failedLogins: row.failed_logins,
      lockedUntil: row.locked_until,
      salt: new Uint8Array(row.salt),
      kdf: row.kdf,
      backup: new Uint8Array(row.key_backup),
    };
  }

  async publicKeys(names: string[]): Promise<Map<string, PublicKeys>> {
    const rows = await this.sql`select name, dh_public, sign_public from users where name = any(${names})`;
    return new Map(rows.map((r) => [r.name as string, { dh: new Uint8Array(r.dh_public), sign: new Uint8Array(r.sign_public) }]));
  }

  /**
   * A new password: the new login secret's hash, salt and key backup replace the
   * old in one transaction, and every resume token dies with the old password.
   */
  async changePassword(userId: number, authHash: string, identity: Omit<Identity, "dh" | "sign">): Promise<void> {
    await this.sql.begin(async (tx) => {
      await tx`update users set auth_hash = ${authHash}, salt = ${identity.salt}, kdf = ${identity.kdf},
                 key_backup = ${identity.backup}, failed_logins = 0, locked_until = null where id = ${userId}`;
      await tx`delete from tokens where user_id = ${userId}`;
    });
  }

  async usersByName(names: string[]): Promise<Map<string, number>> {
    const rows = await this.sql`select id, name from users where name = any(${names})`;
    return new Map(rows.map((r) => [r.name as string, r.id as number]));
  }

  /** Counts a failed login; from the fifth on, the account is locked for a doubling time (capped at 5 minutes). */
  async recordLoginFailure(userId: number): Promise<void> {
    await this.sql`
      update users set failed_logins = failed_logins + 1,
        locked_until = case when failed_logins + 1 >= 5
          then now() + least(power(2, failed_logins + 1 - 5), 300) * interval '1 second' else locked_until end
      where id = ${userId}`;
  }

  async clearLoginFailures(userId: number): Promise<void> {
    await this.sql`update users set failed_logins = 0, locked_until = null where id = ${userId} and failed_logins > 0`;
  }

  /**
   * The people this user shares a current conversation with: whether any of
   * their devices is connected to a live server, and when one was last seen.
   */
  /** The people the user shares a conversation with: a page of up to `limit` in name order, after the name `after`. */
  async contacts(userId: number, liveWithinMs: number, after = "", limit = 1000): Promise<{ name: string; online: boolean; lastSeen: number | null }[]> {
    const rows = await this.sql`
      select u.name,
        exists(select 1 from connections c join servers v on v.id = c.server_id
               where c.user_id = u.id and v.heartbeat_at > now() - ${liveWithinMs} * interval '1 millisecond') as online,
        (select (extract(epoch from max(d.last_seen_at)) * 1000)::float8 from devices d where d.user_id = u.id) as last_seen
      from users u
      where u.id in (select o.user_id from members me join members o on o.conversation_id = me.conversation_id
                     where me.user_id = ${userId} and me.left_seq is null and o.left_seq is null and o.user_id <> ${userId})
        and u.name > ${after}
      order by u.name limit ${limit}`;
    return rows.map((r) => ({ name: r.name, online: r.online, lastSeen: r.last_seen }));
  }

  /** The user's settings, and their encrypted pins with the version that orders writes to them. */
  async settingsOf(userId: number): Promise<{ settings: { readReceipts: boolean }; pins: { blob: Uint8Array | null; version: number } }> {
    const [row] = await this.sql`select read_receipts, pins, pins_version from users where id = ${userId}`;
    return { settings: { readReceipts: row!.read_receipts }, pins: { blob: row!.pins ? new Uint8Array(row!.pins) : null, version: row!.pins_version } };
  }

  async setReadReceipts(userId: number, on: boolean): Promise<void> {
    await this.sql`update users set read_receipts = ${on} where id = ${userId}`;
  }

  /** Replaces the encrypted pins if nobody wrote since `version`; returns the new version, or undefined if someone did. */
  async putPins(userId: number, blob: Uint8Array, version: number): Promise<number | undefined> {
    const [row] = await this.sql`update users set pins = ${blob}, pins_version = pins_version + 1
                                 where id = ${userId} and pins_version = ${version} returning pins_version`;
    return row?.pins_version;
  }

  /** The direct conversation of two users, made on first use (with others asked for at the same time: server/direct-opener.ts). */
  directConversation(a: number, b: number): Promise<number> {
    return this.opener.open(a, b);
  }

  async groupConversation(name: string): Promise<number | undefined> {
    const [row] = await this.sql`select id from conversations where kind = 'group' and name = ${name}`;
    return row?.id;
  }

  async memberIds(convId: number): Promise<number[]> {
    const rows = await this.sql`select user_id from members where conversation_id = ${convId} order by user_id`;
    return rows.map((r) => r.user_id as number);
  }

  /** Group commit: see server/append.ts. */
  appendBatch(items: AppendItem[]): Promise<AppendResult[]> {
    return appendBatch(this.sql, items);
  }

  /**
   * Messages past this device's cursor in every conversation, ordered by
   * (conversation, seq); `from` pages through a long backlog. A page holds at
   * most `limit` messages and about `maxBytes` of bodies (always at least one
   * message), so a backlog of large messages never makes one huge page.
   */
  async pending(
    userId: number,
    deviceId: number,
    from: { conv: number; seq: number } = { conv: 0, seq: 0 },
    limit = 2000,
    maxBytes = PAGE_BYTES,
  ): Promise<WireMessage[]> {
    const rows = await this.sql`
      select * from (
        select ${MESSAGE_COLUMNS(this.sql)},
          sum(octet_length(m.body)) over (order by m.conversation_id, m.seq) - octet_length(m.body) as bytes_before
        from members me
        left join device_cursors dc on dc.device_id = ${deviceId} and dc.conversation_id = me.conversation_id
        -- Lateral, so that the index range starts past the cursor (and past the
        -- page already sent): a login reads what is pending, never the whole
        -- history of every conversation, which a plain join read and filtered.
        cross join lateral (
          select * from messages m where m.conversation_id = me.conversation_id
            and m.seq > greatest(coalesce(dc.seq, 0), me.joined_seq, case when me.conversation_id = ${from.conv}::int then ${from.seq}::bigint else 0 end)
            and (me.left_seq is null or m.seq <= me.left_seq)
          order by m.seq limit ${limit}) m
        join users s on s.id = m.sender_id
        join conversations c on c.id = m.conversation_id
        where me.user_id = ${userId} and me.conversation_id >= ${from.conv}::int
        order by m.conversation_id, m.seq
        limit ${limit}) page
      where bytes_before < ${maxBytes}
      order by conv, seq`;
    return rows.map(toWire);
  }

  /** Messages of one conversation after a sequence number, for filling a gap; bounded in bytes like pending(). */
  async after(userId: number, convId: number, afterSeq: number, limit: number, maxBytes = PAGE_BYTES): Promise<WireMessage[]> {
    const rows = await this.sql`
      select * from (
        select ${MESSAGE_COLUMNS(this.sql)},
          sum(octet_length(m.body)) over (order by m.seq) - octet_length(m.body) as bytes_before
        from members me
        join messages m on m.conversation_id = me.conversation_id and m.seq > greatest(${afterSeq}, me.joined_seq)
          and (me.left_seq is null or m.seq <= me.left_seq)
        join users s on s.id = m.sender_id
        join conversations c on c.id = m.conversation_id
        where me.user_id = ${userId} and me.conversation_id = ${convId} and m.seq > ${afterSeq}::bigint
        order by m.seq limit ${limit}) page
      where bytes_before < ${maxBytes}
      order by seq`;
    return rows.map(toWire);
  }

  /** The last `limit` messages before a sequence number, returned oldest first; at most about `maxBytes` of bodies (at least one message). */
  async history(userId: number, convId: number, beforeSeq: number | undefined, limit: number, maxBytes = PAGE_BYTES): Promise<WireMessage[]> {
    // Membership is part of the query: a non-member, or a removed one, reads nothing.
    const rows = await this.sql`
      select * from (
        select *, sum(octet_length(newest.body)) over (order by newest.seq desc) - octet_length(newest.body) as bytes_before from (
        select ${MESSAGE_COLUMNS(this.sql)}
        from members me
        join messages m on m.conversation_id = me.conversation_id and m.seq > me.joined_seq
          and (me.left_seq is null or m.seq <= me.left_seq)
        join users s on s.id = m.sender_id
        join conversations c on c.id = m.conversation_id
        where me.user_id = ${userId} and me.conversation_id = ${convId}
          -- A bound on m.seq alone (no "or null"), so that it bounds the index range.
          and m.seq < ${beforeSeq ?? Number.MAX_SAFE_INTEGER}::bigint
        order by m.seq desc limit ${limit}) newest) page
      where bytes_before < ${maxBytes}
      order by seq desc`;
    return rows.map(toWire).reverse();
  }

  async registerServer(id: string, addr: string): Promise<void> {
    await this.sql`insert into servers (id, addr) values (${id}, ${addr})
                   on conflict (id) do update set addr = excluded.addr, heartbeat_at = now()`;
  }

  async heartbeatServer(id: string): Promise<void> {
    await this.sql`update servers set heartbeat_at = now() where id = ${id}`;
  }

  async liveServers(withinMs: number): Promise<{ id: string; addr: string }[]> {
    const rows = await this.sql`select id, addr from servers where heartbeat_at > now() - ${withinMs} * interval '1 millisecond'`;
    return rows.map((r) => ({ id: r.id, addr: r.addr }));
  }

  async removeServer(id: string): Promise<void> {
    await this.sql`delete from connections where server_id = ${id}`;
    await this.sql`delete from servers where id = ${id}`;
  }

  /** Forgets servers silent for a long time, so the table does not grow with every restart. */
  async pruneServers(olderThanMs: number): Promise<void> {
    await this.sql`delete from servers where heartbeat_at < now() - ${olderThanMs} * interval '1 millisecond'`;
  }

  /**
   * A random secret made once per cluster: "peer_secret", which servers show each
   * other on the peer link, or "salt_secret", which makes stable salts for unknown names.
   */
  async clusterSecret(key: "peer_secret" | "salt_secret" = "peer_secret"): Promise<Uint8Array> {
    const fresh = crypto.getRandomValues(new Uint8Array(32));
    await this.sql`insert into settings (key, value) values (${key}, ${fresh}) on conflict (key) do nothing`;
    const [row] = await this.sql`select value from settings where key = ${key}`;
    return new Uint8Array(row!.value);
  }
}

export function toWire(row: Record<string, any>): WireMessage {
  return {
    id: row.id,
    conv: row.conv,
    seq: row.seq,
    from: row.from,
    to: row.to,
    kind: row.kind,
    ...(row.group ? { group: row.group } : {}),
    at: row.at,
    cmid: row.cmid,
    body: new Uint8Array(row.body),
  };
}
