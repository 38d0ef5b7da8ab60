// A device's MLS signing key and the key packages others use to add it to a conversation: a supply of
// one-time packages (the server hands each out once) and one last-resort package (handed out when the
// supply is empty, so a device can always be added, at the cost of reusing that package's init key).
import { ed25519 } from "@noble/curves/ed25519.js";
import {
  decodeMlsMessage,
  defaultCapabilities,
  encodeMlsMessage,
  generateKeyPackageWithKey,
  type Capabilities,
  type KeyPackage,
  type PrivateKeyPackage,
} from "ts-mls";
import { abytes } from "../bytes.ts";
import { deviceCredential, type DeviceRef } from "./credential.ts";
import { MlsError } from "./errors.ts";
import { ROLES_EXTENSION } from "./roles.ts";
import { mlsSuite } from "./suite.ts";

/** RFC 9420's extension registry entry `last_resort` (0x000A): marks a package meant to be reused. */
export const LAST_RESORT_EXTENSION = 0x000a;
/** Below ts-mls's one-month cap on a leaf's lifetime, so a package a device made is accepted for its whole life. */
const LIFETIME_SECONDS = 28n * 24n * 3600n;
const MAX_KEY_PACKAGE_BYTES = 16 * 1024;

export interface MlsDevice extends DeviceRef {
  /** Ed25519: the key the device's signed device-list entry names. */
  signKey: Uint8Array;
  publicKey: Uint8Array;
}

export interface OwnKeyPackage {
  publicPackage: KeyPackage;
  privatePackage: PrivateKeyPackage;
  lastResort: boolean;
  /** The MLSMessage bytes that go to the server. */
  encoded: Uint8Array;
}

export function newMlsDevice(ref: DeviceRef): MlsDevice {
  const signKey = ed25519.utils.randomSecretKey();
  return { user: ref.user, deviceId: ref.deviceId, signKey, publicKey: ed25519.getPublicKey(signKey) };
}

function capabilities(): Capabilities {
  const caps = defaultCapabilities();
  // a leaf must support every extension of the group context it joins: the roles one included
  return { ...caps, extensions: [...caps.extensions, LAST_RESORT_EXTENSION, ROLES_EXTENSION] };
}

export async function makeKeyPackage(device: MlsDevice, options: { lastResort?: boolean } = {}): Promise<OwnKeyPackage> {
  const lastResort = options.lastResort === true;
  const now = BigInt(Math.floor(Date.now() / 1000));
  // a little slack before now: a peer whose clock runs behind still accepts the package
  const lifetime = { notBefore: now - 3600n, notAfter: now + LIFETIME_SECONDS };
  const extensions = lastResort ? [{ extensionType: LAST_RESORT_EXTENSION, extensionData: new Uint8Array() }] : [];
  const { publicPackage, privatePackage } = await generateKeyPackageWithKey(
    deviceCredential(device),
    capabilities(),
    lifetime,
    extensions,
    { signKey: device.signKey, publicKey: device.publicKey },
    await mlsSuite(),
  );
  const encoded = encodeMlsMessage({ keyPackage: publicPackage, wireformat: "mls_key_package", version: "mls10" });
  return { publicPackage, privatePackage, lastResort, encoded };
}

/** `count` one-time packages and one last-resort package, the supply a device uploads. */
export async function makeKeyPackageSupply(device: MlsDevice, count: number): Promise<OwnKeyPackage[]> {
  const out: OwnKeyPackage[] = [];
  for (let i = 0; i < count; i++) out.push(await makeKeyPackage(device));
  out.push(await makeKeyPackage(device, { lastResort: true }));
  return out;
}

/** Parses a key package from the wire (its signature is checked when it is added, by ts-mls). */
export function decodeKeyPackage(bytes: Uint8Array): KeyPackage {
  abytes(bytes, "keyPackage");
  if (bytes.length > MAX_KEY_PACKAGE_BYTES) throw new MlsError("E_MLS_FORMAT", "The key package is too large");
  const decoded = safeDecode(bytes);
  if (!decoded || decoded[1] !== bytes.length || decoded[0].wireformat !== "mls_key_package")
    throw new MlsError("E_MLS_FORMAT", "Not an MLS key package");
  return decoded[0].keyPackage;
}

export function isLastResort(kp: KeyPackage): boolean {
  return kp.extensions.some((e) => e.extensionType === LAST_RESORT_EXTENSION);
}

function safeDecode(bytes: Uint8Array) {
  try {
    return decodeMlsMessage(bytes, 0);
  } catch {
    return undefined;
  }
}
