// MLS messages as bytes on the wire: the only place that parses what a peer or the server sent.
import { decodeMlsMessage, encodeMlsMessage, type MLSMessage, type PrivateMessage, type Welcome } from "ts-mls";
import { abytes } from "../bytes.ts";
import { MlsError } from "./errors.ts";

/** Far above a commit for a few hundred members; refused before parsing so a hostile size costs nothing. */
export const MAX_MLS_MESSAGE_BYTES = 4 * 1024 * 1024;

function decode(bytes: Uint8Array): MLSMessage {
  abytes(bytes, "message");
  if (bytes.length > MAX_MLS_MESSAGE_BYTES) throw new MlsError("E_MLS_FORMAT", "The MLS message is too large");
  let decoded: [MLSMessage, number] | undefined;
  try {
    decoded = decodeMlsMessage(bytes, 0);
  } catch {
    decoded = undefined;
  }
  if (!decoded || decoded[1] !== bytes.length) throw new MlsError("E_MLS_FORMAT", "Not an MLS message");
  return decoded[0];
}

export function decodePrivateMessage(bytes: Uint8Array): PrivateMessage {
  const m = decode(bytes);
  if (m.wireformat !== "mls_private_message") throw new MlsError("E_MLS_FORMAT", `Expected an MLS private message, got ${m.wireformat}`);
  return m.privateMessage;
}

export function decodeWelcome(bytes: Uint8Array): Welcome {
  const m = decode(bytes);
  if (m.wireformat !== "mls_welcome") throw new MlsError("E_MLS_FORMAT", `Expected an MLS welcome, got ${m.wireformat}`);
  return m.welcome;
}

export function encodePrivateMessage(privateMessage: PrivateMessage): Uint8Array {
  return encodeMlsMessage({ wireformat: "mls_private_message", version: "mls10", privateMessage });
}

export function encodeWelcome(welcome: Welcome): Uint8Array {
  return encodeMlsMessage({ wireformat: "mls_welcome", version: "mls10", welcome });
}

export const encodeMessage = (m: MLSMessage): Uint8Array => encodeMlsMessage(m);

/**
 * The group id and epoch in a PrivateMessage's clear header (RFC 9420 §6.3:
 * version, wire format, group_id<V>, epoch, content_type), read without
 * decrypting or decoding the rest: what the server checks a message's epoch
 * by. Undefined for anything else.
 */
export function clearHeader(bytes: Uint8Array): { groupId: Uint8Array; epoch: bigint; contentType: number } | undefined {
  // version mls10 (1), wire format mls_private_message (2)
  if (bytes.length < 4 || bytes[0] !== 0 || bytes[1] !== 1 || bytes[2] !== 0 || bytes[3] !== 2) return undefined;
  let at = 4;
  const first = bytes[at];
  if (first === undefined) return undefined;
  // a variable-length vector: the top two bits give the length of the length (1, 2 or 4 bytes)
  const size = 1 << (first >> 6);
  if (size > 4 || at + size > bytes.length) return undefined;
  let length = first & 0x3f;
  for (let i = 1; i < size; i++) length = length * 256 + bytes[at + i]!;
  const groupId = bytes.subarray(at + size, at + size + length);
  at += size + length;
  if (at + 9 > bytes.length) return undefined;
  const view = new DataView(bytes.buffer, bytes.byteOffset + at, 9);
  return { groupId, epoch: view.getBigUint64(0), contentType: view.getUint8(8) };
}

/** The epoch and content type of the clear header alone. */
export function clearEpoch(bytes: Uint8Array): { epoch: bigint; contentType: number } | undefined {
  const h = clearHeader(bytes);
  return h && { epoch: h.epoch, contentType: h.contentType };
}
