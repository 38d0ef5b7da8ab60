// Who may change a conversation's membership, kept in the MLS group itself (a GroupContext extension),
// so that every member checks each commit against the group's own state and never against the server's
// word. A group chat lists its admins; a direct conversation has none, and no one in it adds a new user.
import type { Extension, ProposalWithSender } from "ts-mls";
import { Reader, Writer } from "../bytes.ts";
import { parseCredential, type DeviceRef } from "./credential.ts";
import { MlsError } from "./errors.ts";
import { readOrigin, sameOrigin, writeOrigin, type GroupOrigin } from "./origin.ts";

/** From RFC 9420's private-use range (0xF000-0xFFFF): ChatterBox's roles extension. */
export const ROLES_EXTENSION = 0xf0c8;
const MAX_ADMINS = 1024;

/** `origin`: the creator's signature over the first admin list (origin.ts); a group made before it was kept has none. */
export type GroupRoles = { kind: "admins"; admins: string[]; origin?: GroupOrigin } | { kind: "peers" };

export function rolesExtension(roles: GroupRoles): Extension {
  const w = new Writer().u8(roles.kind === "peers" ? 0 : roles.origin ? 2 : 1);
  if (roles.kind === "admins") {
    const names = [...new Set(roles.admins)].sort();
    if (names.length > MAX_ADMINS) throw new TypeError(`admins: at most ${MAX_ADMINS}`);
    w.u16(names.length);
    for (const n of names) w.str8(n);
    if (roles.origin) writeOrigin(w, roles.origin);
  }
  return { extensionType: ROLES_EXTENSION, extensionData: w.finish() };
}

/** The roles a group's context carries; undefined for a group made before roles were kept (anyone may commit anything). */
export function rolesOf(extensions: Extension[]): GroupRoles | undefined {
  const ext = extensions.find((e) => e.extensionType === ROLES_EXTENSION);
  if (!ext) return undefined;
  try {
    const r = new Reader(ext.extensionData);
    const kind = r.u8();
    if (kind === 0 && r.left === 0) return { kind: "peers" };
    if (kind !== 1 && kind !== 2) throw new Error("unknown kind");
    const admins: string[] = [];
    for (let i = r.u16(); i > 0; i--) admins.push(r.str8());
    const origin = kind === 2 ? readOrigin(r) : undefined;
    if (r.left !== 0) throw new Error("trailing bytes");
    return origin ? { kind: "admins", admins, origin } : { kind: "admins", admins };
  } catch {
    throw new MlsError("E_MLS_FORMAT", "The group's roles extension is malformed");
  }
}

/** What the check needs of the group: its leaves and roles before the commit, and whether a leaf's key is still listed by its owner. */
export interface RoleView {
  roles: GroupRoles | undefined;
  /** 0 before the first commit: the one that makes the group, by its creator, whom no other member sees (they join by its welcome). */
  epoch: bigint;
  leaf(index: number): { device: DeviceRef; signatureKey: Uint8Array } | undefined;
  users: Set<string>;
  trustedNow(device: DeviceRef, signatureKey: Uint8Array): boolean;
}

/**
 * Why the commit of `committer` with these proposals is not allowed, or
 * undefined when it is. An admin may add, remove and change the roles. Anyone
 * else may only follow the signed device lists: add a device of their own
 * account (in a direct conversation, of either person), and remove a leaf
 * whose key its owner no longer lists (a revoked device, or the old key of one
 * that lost its state); and update their own leaf. A non-admin adding another
 * member's device is refused: it is the one add a joiner could not tell from a
 * forgery (joinDoubt), so no honest client makes it, and no member takes it in.
 * The roles extension itself cannot be dropped.
 */
export function refusal(view: RoleView, committer: number | undefined, proposals: ProposalWithSender[]): string | undefined {
  if (!view.roles || view.epoch === 0n) return undefined;
  const by = committer === undefined ? undefined : view.leaf(committer);
  if (!by) return "the commit is not from a member of the group";
  const name = `${by.device.user}/${by.device.deviceId}`;
  for (const { proposal } of proposals) {
    if (proposal.proposalType !== "group_context_extensions") continue;
    const next = rolesOfSafe(proposal.groupContextExtensions.extensions);
    if (next === undefined) return `${name}'s commit drops the group's roles`;
    // the creator's signed word on how the group began stays as it is, whoever commits (admins included)
    const origin = (r: GroupRoles) => (r.kind === "admins" ? r.origin : undefined);
    if (!sameOrigin(origin(view.roles), origin(next))) return `${name}'s commit changes who the group says made it`;
  }
  if (view.roles.kind === "admins" && view.roles.admins.includes(by.device.user)) return undefined;
  const not = view.roles.kind === "admins" ? `${by.device.user} is not an admin of the group` : "no one in a direct conversation adds or removes people";
  for (const { proposal } of proposals) {
    switch (proposal.proposalType) {
      case "update":
        break;
      case "add": {
        const user = safeUser(() => parseCredential(proposal.add.keyPackage.leafNode.credential).user);
        if (user === undefined || !view.users.has(user)) return `${name} added ${user ?? "an unknown device"}, but ${not}`;
        // a group chat's non-admin adds devices of their own account only: what the joiner can check
        if (view.roles.kind === "admins" && user !== by.device.user) return `${name} added a device of ${user}, but only ${user}'s own devices or an admin's may, and ${not}`;
        break;
      }
      case "remove": {
        const leaf = view.leaf(proposal.remove.removed);
        if (leaf && view.trustedNow(leaf.device, leaf.signatureKey))
          return `${name} removed ${leaf.device.user}/${leaf.device.deviceId}, still in ${leaf.device.user}'s device list, but ${not}`;
        break;
      }
      case "group_context_extensions":
        return `${name} changed the group's admins, but ${not}`;
      default:
        return `${name} made a ${String(proposal.proposalType)} proposal, but ${not}`;
    }
  }
  return undefined;
}

function rolesOfSafe(extensions: Extension[]): GroupRoles | undefined {
  try {
    return rolesOf(extensions);
  } catch {
    return undefined;
  }
}

function safeUser(read: () => string): string | undefined {
  try {
    return read();
  } catch {
    return undefined;
  }
}

/**
 * Why a device that joined by a welcome should not trust the membership it
 * found, or undefined when it may. The welcome's GroupInfo is signed by the
 * committer's leaf, whose key ts-mls and the device list already bound to its
 * owner; what is left is whether that owner could add anyone. The joiner sees
 * only the group after the commit, so it trusts exactly the adds every member
 * accepts (refusal): an admin's of the group's own list; in a direct
 * conversation, either of its two people's; and a device of the joiner's own
 * account (its user was in the group already: the committer's leaf is). Anything
 * else no honest member takes in, so the joiner is in a fork of the group that
 * only the committer follows, and says so.
 */
export function joinDoubt(roles: GroupRoles | undefined, signer: DeviceRef, joiner: string): string | undefined {
  if (roles === undefined || roles.kind === "peers") return undefined;
  if (roles.admins.includes(signer.user) || signer.user === joiner) return undefined;
  return `added by ${signer.user}, who is not an admin of the group (the group's own admin list names ${roles.admins.join(", ") || "no one"}): a member's own commit, or one forged with the server's help`;
}
