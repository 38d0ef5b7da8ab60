// Who made a group chat's MLS group, in that person's own word: the identity key of the device's account
// signs the group's first admin list together with the group id, the conversation's label and the
// server's conversation id. It travels in the roles extension (roles.ts) and never changes; a device
// that joins checks it against the identity key it pinned for the creator, so a group the server made
// with an admin list of its choosing cannot pass for one the creator made.
import { ed25519 } from "@noble/curves/ed25519.js";
import { abytes, concat, equalBytes, Reader, utf8, Writer } from "../bytes.ts";
import { MlsError } from "./errors.ts";

const MAGIC = "chatterbox mls group origin v1";
const SIGNATURE_BYTES = 64;

export interface GroupOrigin {
  creator: string;
  /** The server's id of the conversation (ChatDB `conversations.id`). */
  conv: number;
  /** The admin list the group was made with, sorted, no repeats. */
  firstAdmins: string[];
  signature: Uint8Array;
}

/** Where the group is: what the signature binds besides the creator and the first admins. */
export interface OriginPlace {
  groupId: Uint8Array;
  label: string;
  conv: number;
}

function signedBody(place: OriginPlace, creator: string, firstAdmins: string[]): Uint8Array {
  const w = new Writer().str8(MAGIC).u8(place.groupId.length).bytes(place.groupId).str8(place.label).u64(place.conv).str8(creator).u16(firstAdmins.length);
  for (const a of firstAdmins) w.str8(a);
  return concat(utf8(MAGIC), w.finish());
}

export function signOrigin(place: OriginPlace, creator: string, admins: string[], identitySignPrivate: Uint8Array): GroupOrigin {
  abytes(identitySignPrivate, "identitySignPrivate", 32);
  const firstAdmins = [...new Set(admins)].sort();
  return { creator, conv: place.conv, firstAdmins, signature: ed25519.sign(signedBody(place, creator, firstAdmins), identitySignPrivate) };
}

/** Appended to the roles extension's data (kind 2). */
export function writeOrigin(w: Writer, origin: GroupOrigin): void {
  w.str8(origin.creator).u64(origin.conv).u16(origin.firstAdmins.length);
  for (const a of origin.firstAdmins) w.str8(a);
  w.bytes(abytes(origin.signature, "signature", SIGNATURE_BYTES));
}

export function readOrigin(r: Reader): GroupOrigin {
  const creator = r.str8();
  const conv = r.u64();
  const firstAdmins: string[] = [];
  for (let i = r.u16(); i > 0; i--) firstAdmins.push(r.str8());
  return { creator, conv, firstAdmins, signature: r.bytes(SIGNATURE_BYTES).slice() };
}

export function sameOrigin(a: GroupOrigin | undefined, b: GroupOrigin | undefined): boolean {
  if (a === undefined || b === undefined) return a === b;
  return a.creator === b.creator && a.conv === b.conv && a.firstAdmins.join("\u0000") === b.firstAdmins.join("\u0000") && equalBytes(a.signature, b.signature);
}

/**
 * Throws unless the origin was signed by `creatorKey` (the identity key this
 * device pinned for `origin.creator`) for this very group, conversation and
 * server conversation id, and names its creator among the first admins.
 */
export function verifyOrigin(origin: GroupOrigin, place: OriginPlace, creatorKey: Uint8Array): void {
  if (origin.conv !== place.conv) throw new MlsError("E_MLS_ORIGIN", `The group's origin is for conversation ${origin.conv}, not ${place.conv}`);
  if (!origin.firstAdmins.includes(origin.creator)) throw new MlsError("E_MLS_ORIGIN", `The group's first admin list does not name its creator ${origin.creator}`);
  let valid = false;
  try {
    valid = ed25519.verify(origin.signature, signedBody(place, origin.creator, origin.firstAdmins), creatorKey);
  } catch {
    valid = false;
  }
  if (!valid) throw new MlsError("E_MLS_ORIGIN", `The group's first admin list is not signed by ${origin.creator}'s identity key for this group`);
}
