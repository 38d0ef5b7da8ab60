/**
 * Every frame on every link: requests, replies and events. Requests carry an id
 * and get exactly one reply with the same id; events carry none.
 */
import type { ErrorCode } from "./errors";

/**
 * 3: devices. A login names its device; every connection of a user receives
 * every message; `ack` carries what this device received and what the person
 * read; receipts, typing and read markers arrive as events.
 */
export const PROTOCOL_VERSION = 3;

/** The most [conv, seq] pairs one `ack` may carry. */
export const MAX_ACKS = 1000;

/** `items` in runs of at most `size`, for requests with a limit on their lists. */
export function chunks<T>(items: T[], size: number): T[][] {
  const out: T[][] = [];
  for (let i = 0; i < items.length; i += size) out.push(items.slice(i, i + size));
  return out;
}

export type Request = { t: "req"; id: number; op: string; [arg: string]: unknown };
export type Reply =
  | { t: "res"; id: number; ok: true; [field: string]: unknown }
  | { t: "res"; id: number; ok: false; code: ErrorCode; message: string; retryAfterMs?: number };
export type Event = { t: "ev"; ev: string; [field: string]: unknown };
/** Sent just before the server closes a connection, saying why. */
export type Bye = { t: "bye"; code: ErrorCode; message: string };
export type Frame = Request | Reply | Event | Bye;

/** A stored message as the server hands it to a client. The body is opaque bytes. */
export interface WireMessage {
  id: number;
  conv: number;
  seq: number;
  /** Sender's name. */
  from: string;
  /** For a direct message, the recipient's name; for a group message, the group's name. */
  to: string;
  /** Set for a group message: the group's name. */
  group?: string;
  /** "chat": an envelope; "system": a membership change recorded by the server, a MessagePack map. */
  kind: "chat" | "system";
  /** Milliseconds since the epoch, when the server stored it. */
  at: number;
  cmid: string;
  body: Uint8Array;
}

export function ok(id: number, fields: Record<string, unknown> = {}): Reply {
  return { ...fields, t: "res", id, ok: true };
}

export function fail(id: number, code: ErrorCode, message: string, retryAfterMs?: number): Reply {
  return retryAfterMs === undefined ? { t: "res", id, ok: false, code, message } : { t: "res", id, ok: false, code, message, retryAfterMs };
}
