/**
 * Joining a conversation's MLS group from a welcome: only with one of this
 * device's own key packages, only after every leaf checked out against its
 * owner's signed device list (asked for afresh), and only into the group of
 * this conversation, holding devices of its people and no one else's.
 */
import { sha256 } from "@noble/hashes/sha2.js";
import { makeKeyPackageRef } from "ts-mls/keyPackage.js";
import { utf8 } from "../../crypto/bytes.ts";
import { DeviceGroup, joinDoubt, MlsError, mlsSuite, verifyOrigin } from "../../crypto/mls/index.ts";
import { decodeWelcome } from "../../crypto/mls/wire.ts";
import type { MlsAccount } from "./account";

/** How many times a conversation's MLS group may be made again (a reset) and still be recognised as its own. */
export const MAX_RESETS = 1024;

/**
 * Both sides of a conversation derive the same group id; a welcome into any
 * other group is refused. `generation`: how many resets made the group again
 * (0: the first group, whose id is what it always was).
 */
export function groupIdOf(label: string, generation = 0): Uint8Array {
  const name = generation === 0 ? `chatterbox mls group v1\u0000${label}` : `chatterbox mls group v1\u0000${label}\u0000reset ${generation}`;
  return sha256(utf8(name)).subarray(0, 16);
}

/** Which generation of the conversation's group this id is, or undefined for a group of another conversation. */
export function generationOf(label: string, groupId: Uint8Array): number | undefined {
  for (let g = 0; g <= MAX_RESETS; g++) if (Buffer.from(groupIdOf(label, g)).equals(Buffer.from(groupId))) return g;
  return undefined;
}

/**
 * Undefined when the welcome is for other devices. `used`: the refs of this
 * device's packages it consumed. `doubt`: why the membership is not to be
 * trusted (the add was committed by someone with no right to it), if so.
 */
export async function joinFromWelcome(
  welcome: Uint8Array,
  place: { label: string; users: string[]; target: { to: string } | { group: string } },
  conv: number,
  account: MlsAccount,
): Promise<{ group: DeviceGroup; used: string[]; doubt?: string } | undefined> {
  const cs = await mlsSuite();
  const refs = new Set(decodeWelcome(welcome).secrets.map((s) => Buffer.from(s.newMember).toString("hex")));
  const mine = [];
  for (const p of account.packages()) if (refs.has(Buffer.from(await makeKeyPackageRef(p.publicPackage, cs.hash)).toString("hex"))) mine.push(p);
  if (mine.length === 0) return undefined;
  // the welcome may list a device added since this device last asked
  await account.refresh(place.users, true);
  const group = await DeviceGroup.join(welcome, mine, account.book);
  if (generationOf(place.label, group.groupId) === undefined) throw new MlsError("E_MLS_FORMAT", "The welcome is for another conversation's group");
  const stranger = group.members().find((m) => !place.users.includes(m.user));
  if (stranger) throw new MlsError("E_MLS_UNTRUSTED_MEMBER", `${stranger.user}/${stranger.deviceId} is not in this conversation`);
  const doubt = joinDoubt(group.roles, group.joinedBy!, account.device.user) ?? (await originDoubt(group, place, conv, account));
  return { group, used: mine.map((p) => p.ref), ...(doubt ? { doubt } : {}) };
}

/**
 * A group chat's MLS group says who made it, signed by that account's
 * identity over the first admin list, the group id and the conversation
 * (crypto/mls/origin.ts): checked against the identity key this device pinned
 * for the creator. A forged origin is refused; a group with none (made before
 * origins were kept, or by the server, or without any admin list) is doubted.
 */
async function originDoubt(group: DeviceGroup, place: { label: string; target: { to: string } | { group: string } }, conv: number, account: MlsAccount): Promise<string | undefined> {
  if (!("group" in place.target)) return undefined;
  const roles = group.roles;
  if (roles?.kind !== "admins") return "added to a group chat's MLS group that carries no admin list: one the server could have made";
  if (!roles.origin) return "added to a group whose admin list is not signed by whoever made it: a group made before this version, or one the server made";
  verifyOrigin(roles.origin, { groupId: group.groupId, label: place.label, conv }, await account.identityOf(roles.origin.creator));
  return undefined;
}
