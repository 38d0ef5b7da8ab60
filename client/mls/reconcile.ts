/**
 * How a conversation's MLS leaves should change to match its members' signed
 * device lists: which leaves to remove (a key its owner no longer lists, or a
 * user no longer in the conversation) and which listed devices to add, of the
 * users `mayAdd` allows (in a group chat only members who already have a leaf:
 * a new member comes in by an admin's commit, never because the server lists
 * them; and a non-admin adds its own account's devices only). Only an admin's
 * device removes a user who left (`removeUsers`).
 */
import type { DeviceList, Member } from "../../crypto/mls/index.ts";

export interface LeafPlan {
  remove: number[];
  /** Device ids to claim a key package for, by user. */
  add: Map<string, string[]>;
}

const hex = (b: Uint8Array) => Buffer.from(b).toString("hex");

/**
 * `lists`: the newest verified list of each user, where this device has one (a
 * user without one keeps their leaves). `skip`: devices not to try now.
 */
export function planLeaves(
  leaves: Member[],
  ownLeaf: number,
  users: string[],
  lists: (user: string) => DeviceList | undefined,
  options: { mayAdd(user: string, hasLeaf: boolean): boolean; removeUsers: boolean; skip(user: string, deviceId: string): boolean },
): LeafPlan {
  const listedKeys = new Map<string, Set<string>>();
  const keysOf = (user: string) => {
    let set = listedKeys.get(user);
    if (!set) listedKeys.set(user, (set = new Set((lists(user)?.devices ?? []).map((d) => `${d.deviceId}/${hex(d.mlsKey)}`))));
    return set;
  };
  const members = new Set(users);
  const remove: number[] = [];
  const present = new Set<string>();
  for (const m of leaves) {
    const entry = `${m.deviceId}/${hex(m.signatureKey)}`;
    present.add(`${m.user}/${entry}`);
    if (m.leaf === ownLeaf) continue;
    // a user who left goes only by an admin's commit (the others would refuse anyone else's); a key its owner no longer lists, by anyone's
    const unlisted = lists(m.user) !== undefined && !keysOf(m.user).has(entry);
    if ((options.removeUsers && !members.has(m.user)) || unlisted) remove.push(m.leaf);
  }
  const withLeaf = new Set(leaves.map((m) => m.user));
  const add = new Map<string, string[]>();
  for (const user of users) {
    if (!options.mayAdd(user, withLeaf.has(user))) continue;
    for (const d of lists(user)?.devices ?? []) {
      if (present.has(`${user}/${d.deviceId}/${hex(d.mlsKey)}`) || options.skip(user, d.deviceId)) continue;
      add.set(user, [...(add.get(user) ?? []), d.deviceId]);
    }
  }
  return { remove, add };
}
