/**
 * Names to user ids and pairs of users to their direct conversation, cached:
 * neither ever changes once made, so the hot path asks the database once.
 * The caches are bounded and evict gradually (server/clock-cache.ts, an LRU
 * approximation): past the bound one entry not used lately goes for each new
 * one, where a wipe of the whole map at 200,000 entries sent every send of a
 * long-running server back to the database at once (issue 15).
 */
import { ClockCache } from "./clock-cache";
import { ChatError } from "../protocol/errors";
import type { Store } from "./store";

/** Entries in each cache by default (`serve --cache-entries`): ~100 bytes each. */
export const DEFAULT_CACHE_ENTRIES = 200_000;

/** A send names a group, or the other user of a direct conversation. */
export type Target = { group: string } | { to: string };

/** Where a send goes: its conversation, and for a direct message who receives it (a group's members come from the commit). */
export interface Destination {
  convId: number;
  recipients: number[];
}

/**
 * One number for a pair of user ids (lower first), not a key string made per
 * message; past 2^22 users a string, so that the number stays exact.
 */
function pairKey(low: number, high: number): number | string {
  return low < 4_194_304 ? low * 2_147_483_648 + high : `${low}:${high}`;
}

export class Directory {
  private readonly ids: ClockCache<string, number>;
  private readonly direct_: ClockCache<number | string, number>;
  private readonly groups: ClockCache<string, number>;
  /** Lookups under way, so that a burst of sends to one new pair asks the database once. */
  private readonly opening = new Map<number | string, Promise<number>>();

  constructor(
    private readonly store: Pick<Store, "findUser" | "groupConversation" | "directConversation">,
    maxEntries = DEFAULT_CACHE_ENTRIES,
  ) {
    this.ids = new ClockCache(maxEntries);
    this.direct_ = new ClockCache(maxEntries);
    this.groups = new ClockCache(maxEntries);
  }

  async userId(name: string): Promise<number> {
    const cached = this.ids.get(name);
    if (cached !== undefined) return cached;
    const user = await this.store.findUser(name);
    if (!user) throw new ChatError("E_NO_SUCH_USER", `No user is called "${name}"`);
    this.ids.set(name, user.id);
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
    this.groups.set(name, id);
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
    const convId = this.direct_.get(me < other ? pairKey(me, other) : pairKey(other, me));
    return convId === undefined ? undefined : { convId, recipients: [other] };
  }

  /** The direct conversation between a user and the named other, and who receives in it. */
  async direct(me: number, otherName: string): Promise<Destination> {
    const hit = this.cachedDirect(me, otherName);
    if (hit) return hit;
    const other = await this.userId(otherName);
    if (other === me) throw new ChatError("E_BAD_REQUEST", "A direct message needs another user than yourself");
    const key = me < other ? pairKey(me, other) : pairKey(other, me);
    let convId = this.direct_.get(key);
    if (convId === undefined) {
      let opening = this.opening.get(key);
      if (!opening) {
        opening = this.store.directConversation(me, other).finally(() => this.opening.delete(key));
        this.opening.set(key, opening);
      }
      convId = await opening;
      this.direct_.set(key, convId);
    }
    return { convId, recipients: [other] };
  }
}
