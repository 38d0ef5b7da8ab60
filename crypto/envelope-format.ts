// The envelope's versioned binary layout, written by hand so that the bytes are deterministic
// (a test vector pins them) and compact. Layout is documented in PROTOCOL.md ("Envelope v1").
import { astring, Reader, Writer } from "./bytes.ts";
import { CryptoError } from "./errors.ts";

export const ENVELOPE_VERSION = 1;
export const SEALED_KEY_BYTES = 32 + 16;
export const SIGNATURE_BYTES = 64;

export interface EnvelopeHeader {
  v: 1;
  from: string;
  /** Conversation label chosen by the client, e.g. "dm:alice:bob" or "group:friends". */
  conv: string;
  /** Client message id: the sender's retry and dedup key. */
  cmid: string;
  /** Milliseconds since the Unix epoch, as the sender's clock says. */
  sentAt: number;
  /** "text", "file", "system"... */
  kind: string;
}

export interface KeyEntry {
  name: string;
  sealed: Uint8Array;
}

export interface ParsedEnvelope {
  header: EnvelopeHeader;
  /** The exact header bytes: the content's AAD. */
  headerBytes: Uint8Array;
  ephPub: Uint8Array;
  entries: KeyEntry[];
  nonce: Uint8Array;
  ciphertext: Uint8Array;
  /** Everything before the signature: what the signature covers. */
  body: Uint8Array;
  signature: Uint8Array;
}

export function encodeHeader(header: EnvelopeHeader): Uint8Array {
  if (header?.v !== ENVELOPE_VERSION) throw new TypeError(`header.v: expected ${ENVELOPE_VERSION}`);
  if (!Number.isSafeInteger(header.sentAt) || header.sentAt < 0)
    throw new TypeError("header.sentAt: expected a non-negative integer (ms since epoch)");
  return new Writer()
    .u8(header.v)
    .str8(astring(header.from, "header.from"))
    .str8(astring(header.conv, "header.conv"))
    .str8(astring(header.cmid, "header.cmid"))
    .u64(header.sentAt)
    .str8(astring(header.kind, "header.kind"))
    .finish();
}

function readHeader(r: Reader): EnvelopeHeader {
  const v = r.u8();
  if (v !== ENVELOPE_VERSION) throw new CryptoError("E_FORMAT", `Unknown envelope version ${v}`);
  const from = r.str8();
  const conv = r.str8();
  const cmid = r.str8();
  const sentAt = r.u64();
  const kind = r.str8();
  return { v: ENVELOPE_VERSION, from, conv, cmid, sentAt, kind };
}

export function parseHeader(envelope: Uint8Array): EnvelopeHeader {
  return readHeader(new Reader(envelope));
}

/**
 * Accepts exactly what seal() writes: sender's entry first, unique names, nothing left over.
 * open() calls it only once the signature has verified, so E_FORMAT means the signer wrote it so.
 */
export function parseEnvelope(envelope: Uint8Array): ParsedEnvelope {
  if (envelope.length < SIGNATURE_BYTES) throw new CryptoError("E_FORMAT", "The envelope is truncated");
  const body = envelope.subarray(0, envelope.length - SIGNATURE_BYTES);
  const r = new Reader(body);
  const header = readHeader(r);
  const headerBytes = body.subarray(0, r.pos);
  const ephPub = r.bytes(32);
  const count = r.u16();
  const entries: KeyEntry[] = [];
  const seen = new Set<string>();
  for (let i = 0; i < count; i++) {
    const name = r.str8();
    if (seen.has(name)) throw new CryptoError("E_FORMAT", `Recipient ${name} appears twice`);
    seen.add(name);
    entries.push({ name, sealed: r.bytes(SEALED_KEY_BYTES) });
  }
  if (entries[0]?.name !== header.from) throw new CryptoError("E_FORMAT", "The sender's own key entry is missing");
  const nonce = r.bytes(24);
  if (r.left < 16) throw new CryptoError("E_FORMAT", "The ciphertext is truncated");
  const ciphertext = r.bytes(r.left);
  const signature = envelope.subarray(body.length);
  return { header, headerBytes, ephPub, entries, nonce, ciphertext, body, signature };
}
