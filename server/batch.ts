/**
 * What a group commit takes and gives, shared by its two ways of storing a
 * batch (server/append.ts and server/append-careful.ts).
 */
import type { ErrorCode } from "../protocol/errors";

export interface AppendItem {
  senderId: number;
  convId: number;
  cmid: string;
  body: Uint8Array;
  /** For a group: the membership epoch the client sealed the message for. */
  epoch?: number;
}

export type AppendResult =
  | {
      ok: true;
      id: number;
      seq: number;
      at: number;
      duplicate: boolean;
      /** For a group message: every member at commit time but the sender. */
      recipients?: number[];
    }
  | { ok: false; code: ErrorCode; message: string };

export const STALE = { ok: false, code: "E_STALE_MEMBERS", message: "The group's membership changed: seal the message again for the current members" } as const;
export const NOT_MEMBER = { ok: false, code: "E_NOT_MEMBER", message: "Only members send to a group" } as const;
export const OTHER_CONVERSATION = { ok: false, code: "E_DUPLICATE", message: "That client message id was used for another conversation" } as const;

/** A (sender, cmid) repeated within one batch takes its first copy's result, unless it names another conversation. */
export function repeatOf(items: AppendItem[], results: AppendResult[], first: number, index: number): AppendResult {
  const r = results[first]!;
  if (!r.ok) return r;
  if (items[first]!.convId !== items[index]!.convId) return OTHER_CONVERSATION;
  return { ...r, duplicate: true };
}
