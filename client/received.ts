/**
 * A message as its reader sees it, and the conversions between that and the
 * device's stored copy; the warning shown while a contact's new key waits.
 */
import type { WireMessage } from "../protocol/messages";
import type { FileMeta } from "./content";
import { bytes } from "./progress";
import { safeName } from "./safe-name";
import type { StoredMessage } from "./store";

const CONTROL = /[\u0000-\u001f\u007f-\u009f]/g;

/** A message as its reader sees it: what it says, and whether it could be verified. */
export interface Received extends WireMessage {
  text: string;
  /** For a file message: what the file is, and the key to fetch and open it. */
  file?: FileMeta;
  verified: boolean;
  /** An MLS commit or welcome: keys changed, nothing to show. */
  control?: boolean;
  /** Why it could not be verified or read; the text is then not shown. */
  problem?: string;
  code?: string;
}

/**
 * A message of a conversation's MLS group sent before this device joined it:
 * no key here opens it, by design (forward secrecy), so it is told as a quiet
 * line, not a warning, and it is not unread on this device.
 */
export function beforeJoin(m: Pick<Received, "verified" | "code">): boolean {
  return !m.verified && m.code === "E_MLS_BEFORE_JOIN";
}

/** A message from the local store, as a reader sees it. */
export function fromStored(m: StoredMessage): Received {
  const { file, ...rest } = m;
  const meta = file ? (JSON.parse(file) as FileMeta & { key: string }) : undefined;
  return { ...rest, body: new Uint8Array(0), ...(meta ? { file: { ...meta, key: new Uint8Array(Buffer.from(meta.key, "base64")) } } : {}) };
}

/** The device's copy of a message: the body is not kept, a file's key is (as base64, in JSON). */
export function toStored(m: Received): StoredMessage {
  const { file, ...rest } = m;
  return { ...rest, ...(file ? { file: JSON.stringify({ ...file, key: Buffer.from(file.key).toString("base64") }) } : {}) } as StoredMessage;
}

export function describeFile(file: FileMeta): string {
  const size = file.width !== undefined ? `, ${file.width}×${file.height}` : "";
  // Name and type come from the sender: nothing in them may drive the terminal or fake a line.
  return `[file] ${safeName(file.name)} (${bytes(file.size)}, ${file.type.replace(CONTROL, "")}${size})`;
}

export function keyChangedWarning(user: string): string {
  return (
    `WARNING: the identity key of ${user} has changed. Their messages are held and nothing is sent to them ` +
    `until you accept the new key. Compare safety numbers with them in person or on a call (/verify ${user}, ` +
    `or \`chatterbox verify --with ${user}\`), then /trust ${user}.`
  );
}
