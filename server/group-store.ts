/**
 * Groups in ChatDB. Every membership change runs under the group's
 * conversation row lock, the same lock message commits take, so concurrent
 * changes from several admins on several servers are serialised, and every
 * message is committed against exactly one membership. Each change is also a
 * system message in the conversation, so every member sees it in order.
 */
import { randomUUID } from "node:crypto";
import { pack } from "msgpackr";
import type postgres from "postgres";
import type { Sql } from "../db/connect";
import { retryOnConflict } from "../db/retry";
import { ChatError } from "../protocol/errors";
import type { WireMessage } from "../protocol/messages";

type Tx = postgres.TransactionSql;

export type GroupChange =
  | { op: "add"; users: string[] }
  | { op: "remove"; users: string[] }
  | { op: "promote"; user: string }
  | { op: "leave" };

export interface MemberInfo {
  name: string;
  role: "admin" | "member";
  since: number;
}

export interface SystemEvent {
  event: "created" | "added" | "removed" | "promoted" | "left" | "admin";
  actor: string;
  users: string[];
}

interface Member {
  id: number;
  name: string;
  role: string;
}

export class GroupStore {
  constructor(
    private readonly sql: Sql,
    private readonly maxMembers: number,
  ) {}

  async create(name: string, creator: { id: number; name: string }, others: string[]): Promise<{ message: WireMessage; recipients: number[] }> {
    const wanted = [...new Set(others.filter((n) => n !== creator.name))];
    if (wanted.length + 1 > this.maxMembers) throw full(this.maxMembers);
    try {
      return await this.sql.begin(async (tx) => {
        const ids = await userIds(tx, wanted);
        const [conv] = await tx`insert into conversations (kind, name) values ('group', ${name}) returning id`;
        const rows = [{ conversation_id: conv!.id, user_id: creator.id, role: "admin" }, ...wanted.map((n) => ({ conversation_id: conv!.id, user_id: ids.get(n)!, role: "member" }))];
        await tx`insert into members ${tx(rows, "conversation_id", "user_id", "role")}`;
        const message = await systemMessage(tx, conv!.id, name, creator, { event: "created", actor: creator.name, users: wanted });
        // The creator too: their own line fills its place in their sequence.
        return { message, recipients: rows.map((r) => r.user_id) };
      });
    } catch (error) {
      if ((error as { code?: string }).code === "23505") throw new ChatError("E_NAME_TAKEN", `A group called "${name}" exists`);
      throw error;
    }
  }

  /** Applies one change for `actor`; returns the system message and everyone who should see it. */
  async change(group: string, actor: { id: number; name: string }, change: GroupChange): Promise<{ message: WireMessage; recipients: number[] }> {
    return retryOnConflict(() => this.applyChange(group, actor, change));
  }

  private applyChange(group: string, actor: { id: number; name: string }, change: GroupChange): Promise<{ message: WireMessage; recipients: number[] }> {
    return this.sql.begin(async (tx) => {
      const [conv] = await tx`select id, last_seq from conversations where kind = 'group' and name = ${group} for update`;
      if (!conv) throw new ChatError("E_NO_SUCH_GROUP", `No group is called "${group}"`);
      const members = await membersOf(tx, conv.id);
      const me = members.find((m) => m.id === actor.id);
      if (!me) throw new ChatError("E_NOT_MEMBER", `You are not a member of ${group}`);
      if (change.op !== "leave" && me.role !== "admin") throw new ChatError("E_NOT_ADMIN", `Only admins of ${group} can do that`);
      const before = members.map((m) => m.id);
      // Sets, not lists searched in a loop: under the group's row lock, a change costs its length, not its square.
      const memberNames = new Set(members.map((m) => m.name));
      let event: SystemEvent;
      switch (change.op) {
        case "add": {
          const fresh = [...new Set(change.users)].filter((n) => !memberNames.has(n));
          if (fresh.length === 0) throw new ChatError("E_BAD_REQUEST", "They are all members already");
          if (members.length + fresh.length > this.maxMembers) throw full(this.maxMembers);
          const ids = await userIds(tx, fresh);
          // A new member reads from this change on, not before.
          const rows = fresh.map((n) => ({ conversation_id: conv.id, user_id: ids.get(n)!, read_seq: conv.last_seq, joined_seq: conv.last_seq }));
          // A former member comes back as a new one: nothing from the time away.
          await tx`insert into members ${tx(rows, "conversation_id", "user_id", "read_seq", "joined_seq")}
                   on conflict (conversation_id, user_id) do update set read_seq = excluded.read_seq, joined_seq = excluded.joined_seq,
                     left_seq = null, role = 'member', joined_at = now()`;
          await tx`update conversations set epoch = epoch + 1 where id = ${conv.id}`;
          event = { event: "added", actor: actor.name, users: fresh };
          break;
        }
        case "remove": {
          const named = new Set(change.users);
          const gone = members.filter((m) => named.has(m.name));
          const strangers = [...named].filter((n) => !memberNames.has(n));
          if (strangers.length > 0) throw new ChatError("E_NOT_MEMBER", `${strangers[0]} is not a member of ${group}`);
          // They keep what was sent while they were members, up to and including this change.
          await tx`update members set left_seq = ${conv.last_seq + 1}, role = 'member'
                   where conversation_id = ${conv.id} and user_id = any(${gone.map((m) => m.id)})`;
          await tx`update conversations set epoch = epoch + 1 where id = ${conv.id}`;
          event = { event: "removed", actor: actor.name, users: gone.map((m) => m.name) };
          await keepAnAdmin(tx, conv.id);
          break;
        }
        case "promote": {
          const target = members.find((m) => m.name === change.user);
          if (!target) throw new ChatError("E_NOT_MEMBER", `${change.user} is not a member of ${group}`);
          await tx`update members set role = 'admin' where conversation_id = ${conv.id} and user_id = ${target.id}`;
          event = { event: "promoted", actor: actor.name, users: [target.name] };
          break;
        }
        case "leave": {
          await tx`update members set left_seq = ${conv.last_seq + 1}, role = 'member'
                   where conversation_id = ${conv.id} and user_id = ${actor.id}`;
          await tx`update conversations set epoch = epoch + 1 where id = ${conv.id}`;
          event = { event: "left", actor: actor.name, users: [] };
          const promoted = await keepAnAdmin(tx, conv.id);
          if (promoted) event = { event: "left", actor: actor.name, users: [promoted] };
          break;
        }
      }
      const message = await systemMessage(tx, conv.id, group, actor, event);
      const after = (await membersOf(tx, conv.id)).map((m) => m.id);
      // The removed see their removal, nothing after it; the actor sees their own change.
      const recipients = [...new Set([...before, ...after])];
      return { message, recipients };
    });
  }

  async members(group: string, userId: number): Promise<{ conv: number; epoch: number; members: MemberInfo[] }> {
    const [conv] = await this.sql`select id, epoch from conversations where kind = 'group' and name = ${group}`;
    if (!conv) throw new ChatError("E_NO_SUCH_GROUP", `No group is called "${group}"`);
    const rows = await this.sql`
      select u.id, u.name, m.role, (extract(epoch from m.joined_at) * 1000)::float8 as since
      from members m join users u on u.id = m.user_id
      where m.conversation_id = ${conv.id} and m.left_seq is null order by m.joined_at, u.id`;
    if (!rows.some((r) => r.id === userId)) throw new ChatError("E_NOT_MEMBER", `You are not a member of ${group}`);
    return { conv: conv.id, epoch: conv.epoch, members: rows.map((r) => ({ name: r.name, role: r.role, since: r.since })) };
  }

  /**
   * The groups a user is in, with how many messages from others are past their
   * read marker: a page of up to `limit` in name order, after the name `after`
   * (anyone can add anyone to groups, so the list has no bound of its own).
   */
  async of(userId: number, after = "", limit = 1000): Promise<{ name: string; conv: number; role: string; members: number; unread: number }[]> {
    const rows = await this.sql`
      select c.name, c.id, m.role,
        (select count(*) from members y where y.conversation_id = c.id and y.left_seq is null)::int as members,
        (select count(*) from messages x where x.conversation_id = c.id and x.seq > greatest(m.read_seq, m.joined_seq) and x.sender_id <> ${userId})::int as unread
      from members m join conversations c on c.id = m.conversation_id
      where m.user_id = ${userId} and c.kind = 'group' and m.left_seq is null and c.name > ${after} order by c.name limit ${limit}`;
    return rows.map((r) => ({ name: r.name, conv: r.id, role: r.role, members: r.members, unread: r.unread }));
  }

  /** The group's conversation id, for a member; E_NO_SUCH_GROUP or E_NOT_MEMBER otherwise. */
  async conversation(group: string, userId: number): Promise<number> {
    const [row] = await this.sql`
      select c.id, exists(select 1 from members m where m.conversation_id = c.id and m.user_id = ${userId} and m.left_seq is null) as member
      from conversations c where c.kind = 'group' and c.name = ${group}`;
    if (!row) throw new ChatError("E_NO_SUCH_GROUP", `No group is called "${group}"`);
    if (!row.member) throw new ChatError("E_NOT_MEMBER", `You are not a member of ${group}`);
    return row.id;
  }
}

async function membersOf(tx: Tx, convId: number): Promise<Member[]> {
  const rows = await tx`select u.id, u.name, m.role from members m join users u on u.id = m.user_id
                        where m.conversation_id = ${convId} and m.left_seq is null order by m.joined_at, u.id`;
  return rows.map((r) => ({ id: r.id, name: r.name, role: r.role }));
}

/** No group is left without an admin: the longest-standing member becomes one. */
async function keepAnAdmin(tx: Tx, convId: number): Promise<string | undefined> {
  const members = await membersOf(tx, convId);
  if (members.length === 0 || members.some((m) => m.role === "admin")) return undefined;
  const eldest = members[0]!;
  await tx`update members set role = 'admin' where conversation_id = ${convId} and user_id = ${eldest.id}`;
  return eldest.name;
}

async function userIds(tx: Tx, names: string[]): Promise<Map<string, number>> {
  if (names.length === 0) return new Map();
  const rows = await tx`select id, name from users where name = any(${names})`;
  const ids = new Map(rows.map((r) => [r.name as string, r.id as number]));
  const missing = names.find((n) => !ids.has(n));
  if (missing) throw new ChatError("E_NO_SUCH_USER", `No user is called "${missing}"`);
  return ids;
}

async function systemMessage(tx: Tx, convId: number, group: string, actor: { id: number; name: string }, event: SystemEvent): Promise<WireMessage> {
  const [conv] = await tx`update conversations set last_seq = last_seq + 1 where id = ${convId} returning last_seq`;
  const body = pack(event);
  const cmid = `system:${randomUUID()}`;
  const [row] = await tx`
    insert into messages (conversation_id, seq, sender_id, cmid, kind, body)
    values (${convId}, ${conv!.last_seq}, ${actor.id}, ${cmid}, 'system', ${body})
    returning id, (extract(epoch from created_at) * 1000)::float8 as at`;
  return { id: row!.id, conv: convId, seq: conv!.last_seq, from: actor.name, to: group, group, kind: "system", at: row!.at, cmid, body };
}

function full(max: number): ChatError {
  return new ChatError("E_GROUP_FULL", `A group has at most ${max} members on this server`);
}
