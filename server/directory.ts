/**
 * Names to user ids and pairs of users to their direct conversation, cached:
 * neither ever changes once made, so the hot path asks the database once.
 */
import { ChatError } from "../protocol/errors";
import type { Store } from "./store";

const MAX_ENTRIES = 200_000;

/** A send names a group, or the other user of a direct conversation. */
export type Target = { group: string } | { to: string };

/** Where a send goes: its conversation, and for a direct message who receives it (a group's members come from the commit). */
export interface Destination {
  convId: number;
  recipients: number[];
}

export class Directory {
  private readonly ids = new Map<string, number>();
  /** Lower user id, then higher, to the conversation: numbers, not a key string made per message. */
  private readonly direct_ = new Map<number, Map<number, number>>();
  private directCount = 0;
  private readonly groups = new Map<string, number>();

  constructor(private readonly store: Store) {}

  async userId(name: string): Promise<number> {
    const cached = this.ids.get(name);
    if (cached !== undefined) return cached;
    const user = await this.store.findUser(name);
    if (!user) throw new ChatError("E_NO_SUCH_USER", `No user is called "${name}"`);
    remember(this.ids, name, user.id);
    return user.id;
  }

  /**
   * A group's conversation id (never changes once made). Membership is not
   * checked here: the commit checks it under the group's lock.
   */
  async group(name: string): Promise<number> {
    const cached = this.groups.get(name);
    if (cached !== undefined) return cached;
    const id = await this.store.groupConversation(name);
    if (id === undefined) throw new ChatError("E_NO_SUCH_GROUP", `No group is called "${name}"`);
    remember(this.groups, name, id);
    return id;
  }

  /** Where a send goes, if every lookup it needs is cached: no waiting, the common case. */
  cached(me: number, target: Target): Destination | undefined {
    if ("group" in target) {
      const convId = this.groups.get(target.group);
      return convId === undefined ? undefined : { convId, recipients: [] };
    }
    return this.cachedDirect(me, target.to);
  }

  /** Where a send goes, looked up where it is not cached. */
  async destination(me: number, target: Target): Promise<Destination> {
    return "group" in target ? { convId: await this.group(target.group), recipients: [] } : this.direct(me, target.to);
  }

  private cachedDirect(me: number, otherName: string): Destination | undefined {
    const other = this.ids.get(otherName);
    if (other === undefined || other === me) return undefined;
    const convId = me < other ? this.direct_.get(me)?.get(other) : this.direct_.get(other)?.get(me);
    return convId === undefined ? undefined : { convId, recipients: [other] };
  }

  /** The direct conversation between a user and the named other, and who receives in it. */
  async direct(me: number, otherName: string): Promise<Destination> {
    const hit = this.cachedDirect(me, otherName);
    if (hit) return hit;
    const other = await this.userId(otherName);
    if (other === me) throw new ChatError("E_BAD_REQUEST", "A direct message needs another user than yourself");
    const [low, high] = me < other ? [me, other] : [other, me];
    let convId = this.direct_.get(low)?.get(high);
    if (convId === undefined) {
      convId = await this.store.directConversation(me, other);
      if (++this.directCount > MAX_ENTRIES) {
        this.direct_.clear();
        this.directCount = 1;
      }
      let row = this.direct_.get(low);
      if (!row) this.direct_.set(low, (row = new Map()));
      row.set(high, convId);
    }
    return { convId, recipients: [other] };
  }
}

function remember<K, V>(map: Map<K, V>, key: K, value: V): void {
  if (map.size >= MAX_ENTRIES) map.clear();
  map.set(key, value);
}
