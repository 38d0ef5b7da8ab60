/**
 * How an MLS message rides in a message body, beside envelope v1 (whose first
 * byte is 0x01): `0x4D` ('M'), a type byte, then the MLS bytes (a commit: u64 length, the
 * commit, then the welcome or nothing). A commit
 * carries its welcome (if it adds devices) in the same body, so that the
 * server orders both as one message. An application message's plaintext is
 * `str8(cmid) ‖ content`, binding the server's record of the cmid to what
 * the sender encrypted.
 */
import { Reader, Writer } from "../../crypto/bytes.ts";
import { ChatError } from "../../protocol/errors";

const MAGIC = 0x4d;
const APPLICATION = 1;
const COMMIT = 2;

export type MlsBody = { type: "application"; message: Uint8Array } | { type: "commit"; commit: Uint8Array; welcome?: Uint8Array };

export function isMlsBody(body: Uint8Array): boolean {
  return body.length > 1 && body[0] === MAGIC;
}

export function isCommit(body: Uint8Array): boolean {
  return isMlsBody(body) && body[1] === COMMIT;
}

export function applicationBody(message: Uint8Array): Uint8Array {
  const out = new Uint8Array(2 + message.length);
  out.set([MAGIC, APPLICATION]);
  out.set(message, 2);
  return out;
}

export function commitBody(commit: Uint8Array, welcome?: Uint8Array): Uint8Array {
  return new Writer().bytes(Uint8Array.of(MAGIC, COMMIT)).u64(commit.length).bytes(commit).bytes(welcome ?? new Uint8Array()).finish();
}

export function parseMlsBody(body: Uint8Array): MlsBody {
  try {
    if (body[1] === APPLICATION) return { type: "application", message: body.subarray(2) };
    if (body[1] === COMMIT) {
      const r = new Reader(body.subarray(2));
      const commit = r.bytes(r.u64());
      const welcome = r.left > 0 ? r.bytes(r.left) : undefined;
      return { type: "commit", commit, ...(welcome ? { welcome } : {}) };
    }
  } catch {
    // falls through to the refusal
  }
  throw new ChatError("E_BAD_REQUEST", "Not an MLS message body");
}

export function applicationPlaintext(cmid: string, content: Uint8Array): Uint8Array {
  return new Writer().str8(cmid).bytes(content).finish();
}

export function parseApplicationPlaintext(plaintext: Uint8Array): { cmid: string; content: Uint8Array } {
  const r = new Reader(plaintext);
  const cmid = r.str8();
  return { cmid, content: r.bytes(r.left) };
}
