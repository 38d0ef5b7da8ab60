/**
 * The server's part of MLS beyond key packages: each account's signed device
 * list (stored only if the account's identity signed it and its version is
 * higher than the one held), and the one-commit-per-epoch rule. A commit is
 * appended as a message of its conversation, under the conversation's row
 * lock, only if it was made from the epoch the server holds for that
 * conversation; the epoch then moves on by one. Commits are rare, so they go
 * here, in a transaction of their own, and not through the group commit.
 */
import type { Sql } from "../db/connect";
import { verifyDeviceList } from "../crypto/mls/device-list.ts";
import { ChatError } from "../protocol/errors";
import { equalBytes } from "../crypto/bytes.ts";
import { commitHeader, EpochGate, type EpochSources, type GroupEpoch } from "./mls-epochs";

export interface StoredCommit {
  id: number;
  seq: number;
  at: number;
  duplicate: boolean;
  /** Who else receives it (every member but the sender). */
  recipients: number[];
  /** The epoch the conversation's MLS group is at now. */
  epoch: number;
  /** Its group id (null while no commit named one). */
  groupId: Uint8Array | null;
}

export class MlsStore {
  /** What the send route checks an MLS application message's epoch with (server/mls-epochs.ts). */
  readonly epochs: EpochGate;

  /** `cluster`: how the gate hears of the other servers' commits (none: every MLS send reads the database, as with one server). */
  constructor(
    private readonly sql: Sql,
    cluster: Omit<EpochSources, "epochOf"> = { linked: () => false },
  ) {
    this.epochs = new EpochGate({ ...cluster, epochOf: (convId) => this.groupOf(convId) });
  }

  /** Keeps a user's signed device list if it is signed by their identity key and newer than the one held; returns its version. */
  async putDeviceList(userId: number, userName: string, signed: Uint8Array): Promise<number> {
    return this.sql.begin(async (tx) => {
      const [user] = await tx`select sign_public from users where id = ${userId} for update`;
      let version: number;
      try {
        version = verifyDeviceList(signed, new Uint8Array(user!.sign_public), userName).version;
      } catch (error) {
        throw new ChatError("E_MLS_DEVICE_LIST", (error as Error).message);
      }
      const [held] = await tx`select version from device_lists where user_id = ${userId}`;
      if (held && Number(held.version) >= version)
        throw new ChatError("E_MLS_DEVICE_LIST", `The device list held is version ${held.version}; a new one must be higher than that, not ${version}`);
      await tx`insert into device_lists (user_id, version, data) values (${userId}, ${version}, ${signed})
               on conflict (user_id) do update set version = excluded.version, data = excluded.data, updated_at = now()`;
      return version;
    });
  }

  /** The signed lists of the named users who have one (clients verify them against the keys they pinned). */
  async deviceLists(names: string[]): Promise<Record<string, Uint8Array>> {
    const rows = await this.sql`select u.name, l.data from device_lists l join users u on u.id = l.user_id where u.name = any(${names})`;
    return Object.fromEntries(rows.map((r) => [r.name as string, new Uint8Array(r.data)]));
  }

  /** The epoch the next commit of a conversation must be made from (0: no MLS group yet). */
  async epochOf(convId: number): Promise<number> {
    return (await this.groupOf(convId)).epoch;
  }

  /** That epoch and the group's id. */
  async groupOf(convId: number): Promise<GroupEpoch> {
    const [row] = await this.sql`select epoch, group_id from mls_groups where conversation_id = ${convId}`;
    return row ? { epoch: Number(row.epoch), groupId: row.group_id ? new Uint8Array(row.group_id) : null } : { epoch: 0, groupId: null };
  }

  /**
   * Appends a commit made from `epoch` as the conversation's next message, if
   * the conversation is at that epoch; E_MLS_STALE_COMMIT if another commit
   * of the epoch came first. A retry with the same cmid finds its first copy.
   * `replaces` (a reset): the commit makes a new MLS group for the
   * conversation (its first commit, from the new group's epoch 0), replacing
   * the group of that id, which must be the conversation's group now (one
   * reset of a group wins; its epoch does not matter, since the resetter
   * stopped at a commit it could not take in). The epoch starts again at 1
   * under the new group id, and anything made for the old group is stale from then on.
   */
  async appendCommit(convId: number, sender: number, cmid: string, epoch: number, body: Uint8Array, replaces?: Uint8Array): Promise<StoredCommit> {
    const stored = await this.appendCommitNow(convId, sender, cmid, epoch, body, replaces);
    if (!stored.duplicate) this.epochs.moved(convId, stored.seq, { epoch: stored.epoch, groupId: stored.groupId });
    return stored;
  }

  private appendCommitNow(convId: number, sender: number, cmid: string, epoch: number, body: Uint8Array, replaces: Uint8Array | undefined): Promise<StoredCommit> {
    const reset = replaces !== undefined;
    const header = commitHeader(body);
    if (reset && (header === undefined || header.epoch !== 0n)) throw new ChatError("E_BAD_REQUEST", "A reset carries the first commit of a new MLS group (from its epoch 0)");
    return this.sql.begin(async (tx) => {
      // the same lock the group commit takes: the sequence stays gapless and ordered
      const [conv] = await tx`select kind, last_seq from conversations where id = ${convId} for update`;
      if (!conv) throw new ChatError("E_NO_SUCH_USER", "That conversation no longer exists");
      const members = await tx`select user_id from members where conversation_id = ${convId} and left_seq is null`;
      const ids = members.map((m) => m.user_id as number);
      if (!ids.includes(sender)) throw new ChatError("E_NOT_MEMBER");
      const [group] = await tx`select epoch, group_id from mls_groups where conversation_id = ${convId}`;
      const current = group ? Number(group.epoch) : 0;
      const groupId: Uint8Array | null = group?.group_id ? new Uint8Array(group.group_id) : null;
      const [dup] = await tx`select id, seq, conversation_id, (extract(epoch from created_at) * 1000)::float8 as at from messages
                             where sender_id = ${sender} and cmid = ${cmid}`;
      if (dup) {
        if (dup.conversation_id !== convId) throw new ChatError("E_DUPLICATE");
        return { id: Number(dup.id), seq: Number(dup.seq), at: dup.at, duplicate: true, recipients: [], epoch: current, groupId };
      }
      if (reset) {
        if (current === 0) throw new ChatError("E_MLS_STALE_COMMIT", "The conversation has no MLS group to make again");
        // a group stored before group ids were kept (null) is replaced by the first reset, which names one from then on
        if (groupId && !equalBytes(groupId, replaces)) throw new ChatError("E_MLS_STALE_COMMIT", "The group this reset replaces was made again already, by another reset");
      } else if (epoch !== current) throw new ChatError("E_MLS_STALE_COMMIT", `The conversation's MLS group is at epoch ${current}, not ${epoch}`);
      // a commit of a group the conversation no longer uses (a reset replaced it) would count an epoch of the new one
      if (!reset && header && groupId && !equalBytes(header.groupId, groupId))
        throw new ChatError("E_MLS_STALE_COMMIT", "The commit is for an MLS group of the conversation that a reset replaced");
      const next = reset ? 1 : epoch + 1;
      const nextGroup = header?.groupId ?? groupId;
      const seq = Number(conv.last_seq) + 1;
      await tx`update conversations set last_seq = ${seq} where id = ${convId}`;
      const [row] = await tx`insert into messages (conversation_id, seq, sender_id, cmid, body)
                             values (${convId}, ${seq}, ${sender}, ${cmid}, ${body})
                             returning id, (extract(epoch from created_at) * 1000)::float8 as at`;
      await tx`insert into mls_groups (conversation_id, epoch, group_id) values (${convId}, ${next}, ${nextGroup})
               on conflict (conversation_id) do update set epoch = excluded.epoch, group_id = excluded.group_id, updated_at = now()`;
      return { id: Number(row!.id), seq, at: row!.at, duplicate: false, recipients: ids.filter((u) => u !== sender), epoch: next, groupId: nextGroup };
    });
  }

  /** Adds a sealed batch to a user's history backup; at most MAX_HISTORY_BATCHES are kept (the oldest go). */
  async putHistory(userId: number, data: Uint8Array): Promise<number> {
    return this.sql.begin(async (tx) => {
      const [row] = await tx`insert into history_backups (user_id, data) values (${userId}, ${data}) returning id`;
      await tx`delete from history_backups where user_id = ${userId} and id not in (
                 select id from history_backups where user_id = ${userId} order by id desc limit ${MAX_HISTORY_BATCHES})`;
      return Number(row!.id);
    });
  }

  /** A user's sealed batches after `after`, oldest first, up to `maxBytes` in all (at least one). */
  async history(userId: number, after: number, maxBytes: number): Promise<{ id: number; data: Uint8Array }[]> {
    const rows = await this.sql`select id, data from history_backups where user_id = ${userId} and id > ${after} order by id limit 64`;
    const out: { id: number; data: Uint8Array }[] = [];
    let bytes = 0;
    for (const r of rows) {
      const data = new Uint8Array(r.data);
      if (out.length > 0 && bytes + data.length > maxBytes) break;
      out.push({ id: Number(r.id), data });
      bytes += data.length;
    }
    return out;
  }
}

/** About 50 messages a batch: room for the latest ~500,000 messages. */
export const MAX_HISTORY_BATCHES = 10_000;
