/**
 * Two positions per conversation, kept apart: what each device has received
 * (device_cursors, for replay to that device) and what the person has read
 * (members.read_seq, one marker for all their devices). Both only move
 * forward. Receipts are read off them: delivered when one of the recipient's
 * devices is past a message, read when their marker is.
 */
import type { Sql } from "../db/connect";
import { retryOnConflict } from "../db/retry";

export interface Moved {
  userId: number;
  convId: number;
  seq: number;
}

export interface Receipt {
  user: string;
  /** Highest sequence number any of their devices has. */
  delivered: number;
  /** Their read marker; absent where read receipts are off on either side. */
  read?: number;
}

export class CursorStore {
  constructor(private readonly sql: Sql) {}

  /** This device's position in every conversation of its user: replay starts past it. */
  async deviceCursors(userId: number, deviceId: number): Promise<Record<number, number>> {
    const rows = await this.sql`
      select me.conversation_id, greatest(coalesce(dc.seq, 0), me.joined_seq) as seq
      from members me left join device_cursors dc on dc.device_id = ${deviceId} and dc.conversation_id = me.conversation_id
      where me.user_id = ${userId}`;
    return Object.fromEntries(rows.map((r) => [r.conversation_id, r.seq]));
  }

  async readMarkers(userId: number): Promise<Record<number, number>> {
    const rows = await this.sql`select conversation_id, greatest(read_seq, joined_seq) as seq from members where user_id = ${userId}`;
    return Object.fromEntries(rows.map((r) => [r.conversation_id, r.seq]));
  }

  /**
   * Both at once, in one statement and so one commit (one fsync, where two
   * statements were two): device cursors moved forward (only in conversations
   * the user is in), read markers moved forward; returns those that moved.
   * Markers are updated in (conversation, user) order, so that two servers'
   * acknowledgements of one person lock the rows in one order.
   */
  async acknowledge(received: (Moved & { deviceId: number })[], read: Moved[]): Promise<{ delivered: Moved[]; read: Moved[] }> {
    if (received.length === 0 && read.length === 0) return { delivered: [], read: [] };
    const marks = [...read].sort((x, y) => x.convId - y.convId || x.userId - y.userId);
    const rows = await retryOnConflict(
      () => this.sql`
        with cursors as (
          insert into device_cursors as dc (device_id, conversation_id, seq)
          select a.device_id, a.conv, a.seq
          from unnest(${received.map((r) => r.deviceId)}::int[], ${received.map((r) => r.userId)}::int[], ${received.map((r) => r.convId)}::int[], ${received.map((r) => r.seq)}::bigint[])
            as a(device_id, user_id, conv, seq)
          where exists (select 1 from members m where m.conversation_id = a.conv and m.user_id = a.user_id)
          on conflict (device_id, conversation_id) do update set seq = excluded.seq where dc.seq < excluded.seq
          returning dc.device_id, dc.conversation_id, dc.seq
        ), markers as (
          update members m set read_seq = a.seq
          from unnest(${marks.map((r) => r.userId)}::int[], ${marks.map((r) => r.convId)}::int[], ${marks.map((r) => r.seq)}::bigint[])
            as a(user_id, conv, seq)
          where m.user_id = a.user_id and m.conversation_id = a.conv and m.read_seq < a.seq
          returning m.user_id, m.conversation_id, m.read_seq
        )
        select false as read, device_id as who, conversation_id as conv, seq from cursors
        union all
        select true, user_id, conversation_id, read_seq from markers`,
    );
    const userOf = new Map(received.map((r) => [r.deviceId, r.userId]));
    const out = { delivered: [] as Moved[], read: [] as Moved[] };
    for (const r of rows) {
      if (r.read) out.read.push({ userId: r.who, convId: r.conv, seq: r.seq });
      else out.delivered.push({ userId: userOf.get(r.who)!, convId: r.conv, seq: r.seq });
    }
    return out;
  }

  /**
   * Who should hear that these positions moved: the other current members of
   * each conversation, with whether each sends and sees read receipts.
   */
  async audience(convIds: number[]): Promise<Map<number, { userId: number; name: string; receipts: boolean }[]>> {
    const rows = await this.sql`
      select m.conversation_id, m.user_id, u.name, u.read_receipts from members m join users u on u.id = m.user_id
      where m.conversation_id = any(${convIds}) and m.left_seq is null`;
    const out = new Map<number, { userId: number; name: string; receipts: boolean }[]>();
    for (const r of rows) {
      const list = out.get(r.conversation_id) ?? [];
      list.push({ userId: r.user_id, name: r.name, receipts: r.read_receipts });
      out.set(r.conversation_id, list);
    }
    return out;
  }

  /** Whether each of these users sends (and sees) read receipts. */
  async readReceiptsOf(userIds: number[]): Promise<Map<number, boolean>> {
    const rows = await this.sql`select id, read_receipts from users where id = any(${userIds})`;
    return new Map(rows.map((r) => [r.id as number, r.read_receipts as boolean]));
  }

  /** Every other member's positions in a conversation, as `asker` may see them. */
  async receipts(convId: number, asker: number): Promise<Receipt[]> {
    const rows = await this.sql`
      select u.name, u.read_receipts, greatest(m.read_seq, m.joined_seq) as read,
        coalesce((select max(dc.seq) from device_cursors dc join devices d on d.id = dc.device_id
                  where d.user_id = m.user_id and dc.conversation_id = m.conversation_id), m.joined_seq) as delivered,
        (select read_receipts from users where id = ${asker}) as mine
      from members m join users u on u.id = m.user_id
      where m.conversation_id = ${convId} and m.user_id <> ${asker} and m.left_seq is null
        and exists (select 1 from members x where x.conversation_id = ${convId} and x.user_id = ${asker})
      order by u.name`;
    return rows.map((r) => ({ user: r.name, delivered: Math.max(r.delivered, r.read), ...(r.read_receipts && r.mine ? { read: r.read } : {}) }));
  }
}
