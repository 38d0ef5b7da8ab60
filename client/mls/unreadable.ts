/**
 * Why an MLS message of a conversation cannot be read on this device, from
 * where the device stands in the conversation's group. Sent before it joined
 * is forward secrecy at work, the same for every new device (the views draw a
 * run of them as one quiet line); a message it should have read is a warning:
 * one from while it was in the group that it kept no copy of, or one after a
 * welcome it refused.
 */
import type { MlsReason } from "../../crypto/mls/index.ts";

/** Where a device stands in a conversation's MLS group (client/mls/local.ts keeps it). */
export interface JoinPoint {
  /** The position of the welcome it took in, or of the commit that made the group; undefined where it never joined, or joined before this was kept. */
  joined?: number;
  /** The position of the first welcome it refused while it held no group. */
  refused?: number;
  /** Whether it holds a group for the conversation. */
  held: boolean;
}

export interface Unreadable {
  status: "failed";
  code: MlsReason;
  reason: string;
}

const BEFORE_JOIN = "sent before this device joined the conversation's mls group: mls keys are not shared back in time (forward secrecy)";

/** A message at `seq` that no key this device holds opens, and that it kept no copy of. */
export function unreadable(seq: number, at: JoinPoint): Unreadable {
  if (at.joined !== undefined) {
    if (seq < at.joined) return failed("E_MLS_BEFORE_JOIN", BEFORE_JOIN);
    return at.held ? kept() : failed("E_MLS_NO_GROUP", "this device no longer holds the keys for this conversation");
  }
  // a group held with no join point kept (joined before it was): which side of the join is not known
  if (at.held) return kept();
  if (at.refused !== undefined && seq > at.refused) return failed("E_MLS_NO_GROUP", "this device was not given the keys for this conversation: it refused the welcome that would have brought it in (shown where it came)");
  return failed("E_MLS_BEFORE_JOIN", BEFORE_JOIN);
}

function kept(): Unreadable {
  return failed("E_MLS_EPOCH", "not readable on this device: mls keys are used once, and this device kept no copy (forward secrecy)");
}

function failed(code: MlsReason, reason: string): Unreadable {
  return { status: "failed", code, reason };
}
