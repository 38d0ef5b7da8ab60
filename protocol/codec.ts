/**
 * Frame payloads are MessagePack (msgpackr): binary-safe, so ciphertext travels
 * as bytes rather than base64, and compact for the small maps a chat sends.
 */
import { Packr } from "msgpackr";
import { ChatError } from "./errors";
import { frame } from "./frame";

const packr = new Packr({ useRecords: false, mapsAsObjects: true, int64AsType: "number" });

export function encode(value: unknown): Uint8Array {
  return frame(packr.pack(value));
}

export function decode(payload: Uint8Array): Record<string, unknown> {
  let value: unknown;
  try {
    value = packr.unpack(payload);
  } catch {
    throw new ChatError("E_BAD_FRAME", "The frame is not valid MessagePack");
  }
  // Plain maps only: not arrays, bytes, dates (MessagePack timestamps) or anything else msgpackr builds.
  if (value === null || typeof value !== "object" || Object.getPrototypeOf(value) !== Object.prototype) {
    throw new ChatError("E_BAD_FRAME", "A frame must hold a map");
  }
  return value as Record<string, unknown>;
}
