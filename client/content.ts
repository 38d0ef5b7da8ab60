/**
 * What a message body holds, as the client sees it: text, or a file's
 * description with the key to its chunks. The server treats bodies as opaque
 * bytes; the encryption layer wraps this encoding.
 */
import { pack, unpack } from "msgpackr";

export interface FileMeta {
  id: string;
  name: string;
  size: number;
  type: string;
  /** SHA-256 of the whole plaintext, hex: checked before the file is moved into downloads/. */
  sha256: string;
  key: Uint8Array;
  chunkSize: number;
  chunks: number;
  width?: number;
  height?: number;
}

export type Content = { kind: "text"; text: string } | { kind: "file"; file: FileMeta };

export function encodeContent(content: Content): Uint8Array {
  return pack(content);
}

export function decodeContent(body: Uint8Array): Content {
  try {
    const value = unpack(body) as Content;
    if (value?.kind === "text" && typeof value.text === "string") return value;
    if (value?.kind === "file" && isFileMeta(value.file)) return { kind: "file", file: { ...value.file, key: new Uint8Array(value.file.key) } };
  } catch {}
  return { kind: "text", text: "[unreadable message]" };
}

function isFileMeta(f: any): f is FileMeta {
  return (
    f &&
    typeof f.id === "string" &&
    typeof f.name === "string" &&
    Number.isSafeInteger(f.size) &&
    typeof f.type === "string" &&
    typeof f.sha256 === "string" &&
    f.key instanceof Uint8Array &&
    f.key.length === 32 &&
    Number.isSafeInteger(f.chunkSize) &&
    Number.isSafeInteger(f.chunks) &&
    (f.width === undefined || Number.isSafeInteger(f.width)) &&
    (f.height === undefined || Number.isSafeInteger(f.height))
  );
}
