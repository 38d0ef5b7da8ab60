/**
 * What a message body holds, as the client sees it. The server treats bodies as
 * opaque bytes; the encryption layer wraps this encoding.
 */
import { pack, unpack } from "msgpackr";

export interface Content {
  kind: "text";
  text: string;
}

export function encodeContent(content: Content): Uint8Array {
  return pack(content);
}

export function decodeContent(body: Uint8Array): Content {
  try {
    const value = unpack(body) as Content;
    if (value && value.kind === "text" && typeof value.text === "string") return value;
  } catch {}
  return { kind: "text", text: "[unreadable message]" };
}
