// File chunks: each sealed on its own with the file's key, its nonce and associated data bound to
// the file id, its index and the number of chunks, so chunks cannot be reordered, dropped, swapped
// between files or cut short without the reader noticing.
import { xchacha20poly1305 } from "@noble/ciphers/chacha.js";
import { randomBytes } from "@noble/ciphers/utils.js";
import { abytes, astring, concat, utf8 } from "./bytes.ts";
import { CryptoError } from "./errors.ts";

const CONTEXT = utf8("chatterbox/v1/file-chunk");

export function fileKey(): Uint8Array {
  return randomBytes(32);
}

/** The key is fresh for every file, so a nonce made from the index alone never repeats under it. */
function nonce(index: number): Uint8Array {
  const n = new Uint8Array(24);
  new DataView(n.buffer).setUint32(20, index);
  return n;
}

function aad(fileId: string, index: number, total: number): Uint8Array {
  const numbers = new Uint8Array(8);
  const view = new DataView(numbers.buffer);
  view.setUint32(0, index);
  view.setUint32(4, total);
  return concat(CONTEXT, utf8(fileId), numbers);
}

function check(key: Uint8Array, fileId: string, index: number, total: number): void {
  abytes(key, "key", 32);
  astring(fileId, "fileId");
  if (!Number.isInteger(total) || total < 1 || total > 0xffffffff) throw new TypeError("total: expected a chunk count");
  if (!Number.isInteger(index) || index < 0 || index >= total) throw new TypeError("index: expected 0 <= index < total");
}

export function sealChunk(key: Uint8Array, fileId: string, index: number, total: number, plaintext: Uint8Array): Uint8Array {
  check(key, fileId, index, total);
  abytes(plaintext, "plaintext");
  return xchacha20poly1305(key, nonce(index), aad(fileId, index, total)).encrypt(plaintext);
}

export function openChunk(key: Uint8Array, fileId: string, index: number, total: number, sealed: Uint8Array): Uint8Array {
  check(key, fileId, index, total);
  abytes(sealed, "sealed");
  try {
    return xchacha20poly1305(key, nonce(index), aad(fileId, index, total)).decrypt(sealed);
  } catch {
    throw new CryptoError("E_DECRYPT", `Chunk ${index + 1} of ${total} failed its integrity check`);
  }
}
