/**
 * How the protocol's sizes fit together. Every size a server permits must be
 * one the protocol can carry: a group of the largest size must be able to send
 * (its envelope, one wrapped key per member, fits a body), and every reply
 * (a message, a page of history, a chunk) must fit one frame. The server
 * checks these at start (assertLimits) rather than failing on the first big group.
 */
import { SEALED_KEY_BYTES, SIGNATURE_BYTES } from "../crypto/envelope-format";

/** Names are at most 32 bytes (protocol/validate.ts). */
export const MAX_NAME_BYTES = 32;
/** One key entry of an envelope: the name with its length byte, and the sealed message key. */
export const ENVELOPE_ENTRY_BYTES = 1 + MAX_NAME_BYTES + SEALED_KEY_BYTES;
/** The envelope's header (version, from, conv label, cmid, time, kind), ephemeral key, nonce, counts and signature, at most. */
export const ENVELOPE_FIXED_BYTES = 1 + 4 * 256 + 8 + 32 + 24 + 4 + SIGNATURE_BYTES;
/** Room in every body for what a person writes (and its encryption), past the key entries. */
export const TEXT_ROOM_BYTES = 64 * 1024;
/** What a stored message carries besides its body, encoded (ids, names, cmid, time), at most. */
export const MESSAGE_OVERHEAD_BYTES = 512;
/** A reply's own fields besides its messages or data. */
export const REPLY_OVERHEAD_BYTES = 4 * 1024;

/** The body a group of `members` needs: a key entry for each member and the sender, and room for the text. */
export function bodyFor(members: number): number {
  return ENVELOPE_FIXED_BYTES + (members + 1) * ENVELOPE_ENTRY_BYTES + TEXT_ROOM_BYTES;
}

export interface Limits {
  maxFrame: number;
  maxBody: number;
  maxGroupMembers: number;
}

/** Rows in one page of history or fetch. */
export const MAX_PAGE_ROWS = 1000;

/**
 * The message bytes one page of replies may carry: the frame less every row's
 * overhead. A page always holds at least one message, and one message fits.
 */
export function pageBytes(limits: Pick<Limits, "maxFrame">): number {
  return limits.maxFrame - REPLY_OVERHEAD_BYTES - MAX_PAGE_ROWS * MESSAGE_OVERHEAD_BYTES;
}

/**
 * Lists that grow with what others do (the groups one is in: anyone can add
 * anyone; the contacts one has: anyone can write to anyone) come in pages:
 * each entry is a name and a few numbers, at most this many bytes encoded.
 */
export const LIST_ENTRY_BYTES = 128;
/** A group member's entry (name, role, since) and a receipt (name, delivered, read), at most: lists bounded by the group limit. */
export const MEMBER_ENTRY_BYTES = 96;

/** Entries in one page of a list: as many as fit a frame, and at most MAX_PAGE_ROWS. */
export function listPageRows(limits: Pick<Limits, "maxFrame">): number {
  return Math.max(1, Math.min(MAX_PAGE_ROWS, Math.floor((limits.maxFrame - REPLY_OVERHEAD_BYTES) / LIST_ENTRY_BYTES)));
}

/**
 * One page of a list asked for with `after` (the last name of the page before):
 * fetch `rows + 1`, and the one past the page says there is more. `next` is
 * the name to ask after, absent on the last page.
 */
export function listPage<T>(fetched: T[], rows: number, nameOf: (entry: T) => string): { entries: T[]; next?: string } {
  if (fetched.length <= rows) return { entries: fetched };
  const entries = fetched.slice(0, rows);
  return { entries, next: nameOf(entries[entries.length - 1]!) };
}

/** Throws, naming the sizes, when a server's limits contradict each other. */
export function assertLimits(limits: Limits): void {
  const need = bodyFor(limits.maxGroupMembers);
  if (limits.maxBody < need) {
    throw new Error(`A group of ${limits.maxGroupMembers} members needs message bodies of ${need} bytes, but the body limit is ${limits.maxBody}`);
  }
  if (limits.maxBody + MESSAGE_OVERHEAD_BYTES + REPLY_OVERHEAD_BYTES > limits.maxFrame) {
    throw new Error(`A message body of ${limits.maxBody} bytes does not fit a frame of ${limits.maxFrame} bytes: fewer group members, or a larger frame`);
  }
  // group.members and receipts are not paged: the group limit bounds them, so they must fit a frame whole.
  if (REPLY_OVERHEAD_BYTES + limits.maxGroupMembers * MEMBER_ENTRY_BYTES > limits.maxFrame) {
    throw new Error(`The member list of a group of ${limits.maxGroupMembers} does not fit a frame of ${limits.maxFrame} bytes`);
  }
  if (pageBytes(limits) < limits.maxBody) {
    throw new Error(`A page of ${MAX_PAGE_ROWS} messages does not leave room for one body of ${limits.maxBody} bytes in a frame of ${limits.maxFrame}`);
  }
}
