// The binding between an account and its devices' MLS leaves: a list of (device id, MLS signature key)
// signed by the account's Ed25519 identity key. The server stores and serves it but cannot forge it,
// so a leaf whose key is not on its owner's current list is a device the owner never approved.
import { ed25519 } from "@noble/curves/ed25519.js";
import { abytes, astring, concat, Reader, utf8, Writer } from "../bytes.ts";
import { CryptoError } from "../errors.ts";
import { MlsError } from "./errors.ts";

const MAGIC = "chatterbox mls device list v1";
const CONTEXT = utf8(MAGIC);
const SIGNATURE_BYTES = 64;
const MAX_DEVICES = 1024;

export interface ListedDevice {
  deviceId: string;
  /** The Ed25519 public key the device signs its MLS leaf with. */
  mlsKey: Uint8Array;
}

export interface DeviceList {
  user: string;
  /** Grows with every change, so a client can refuse an older list replayed to resurrect a revoked device. */
  version: number;
  issuedAt: number;
  devices: ListedDevice[];
}

function encodeBody(list: DeviceList): Uint8Array {
  astring(list.user, "user");
  if (!Number.isSafeInteger(list.version) || list.version < 0) throw new TypeError("version: expected a non-negative integer");
  if (!Number.isSafeInteger(list.issuedAt) || list.issuedAt < 0) throw new TypeError("issuedAt: expected a non-negative integer");
  if (list.devices.length > MAX_DEVICES) throw new TypeError(`devices: at most ${MAX_DEVICES}`);
  const ids = new Set<string>();
  const w = new Writer().str8(MAGIC).str8(list.user).u64(list.version).u64(list.issuedAt).u16(list.devices.length);
  for (const d of list.devices) {
    if (ids.has(astring(d.deviceId, "deviceId"))) throw new TypeError(`devices: ${d.deviceId} is listed twice`);
    ids.add(d.deviceId);
    w.str8(d.deviceId).bytes(abytes(d.mlsKey, "mlsKey", 32));
  }
  return w.finish();
}

/** The list followed by the identity's signature over it; what the server stores for the account. */
export function signDeviceList(list: DeviceList, identitySignPrivate: Uint8Array): Uint8Array {
  abytes(identitySignPrivate, "identitySignPrivate", 32);
  const body = encodeBody(list);
  return concat(body, ed25519.sign(concat(CONTEXT, body), identitySignPrivate));
}

/** Checks the signature against the identity key the client pinned for `user`, and returns the list. */
export function verifyDeviceList(signed: Uint8Array, identitySignPublic: Uint8Array, user: string): DeviceList {
  abytes(signed, "signed");
  abytes(identitySignPublic, "identitySignPublic", 32);
  if (signed.length < SIGNATURE_BYTES) throw new MlsError("E_MLS_FORMAT", "The device list is truncated");
  const body = signed.subarray(0, signed.length - SIGNATURE_BYTES);
  const signature = signed.subarray(signed.length - SIGNATURE_BYTES);
  let valid = false;
  try {
    valid = ed25519.verify(signature, concat(CONTEXT, body), identitySignPublic);
  } catch {
    valid = false;
  }
  if (!valid) throw new MlsError("E_MLS_DEVICE_LIST", "The device list is not signed by the account's identity key");
  const list = decodeBody(body);
  if (list.user !== user) throw new MlsError("E_MLS_DEVICE_LIST", `The device list is for ${list.user}, not ${user}`);
  return list;
}

function decodeBody(body: Uint8Array): DeviceList {
  try {
    const r = new Reader(body);
    if (r.str8() !== MAGIC) throw new MlsError("E_MLS_FORMAT", "Not a device list");
    const user = r.str8();
    const version = r.u64();
    const issuedAt = r.u64();
    const count = r.u16();
    const devices: ListedDevice[] = [];
    for (let i = 0; i < count; i++) devices.push({ deviceId: r.str8(), mlsKey: r.bytes(32).slice() });
    if (r.left !== 0) throw new MlsError("E_MLS_FORMAT", "Trailing bytes after the device list");
    return { user, version, issuedAt, devices };
  } catch (err) {
    if (err instanceof CryptoError) throw new MlsError("E_MLS_FORMAT", err.message);
    throw err;
  }
}
