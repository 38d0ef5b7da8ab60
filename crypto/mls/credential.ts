// A leaf's MLS credential names one device of one account; what makes it true is the account's
// signed device list (device-list.ts), never the credential itself.
import type { Credential } from "ts-mls";
import { abytes, astring, Reader, Writer } from "../bytes.ts";
import { MlsError } from "./errors.ts";

export interface DeviceRef {
  user: string;
  deviceId: string;
}

export function deviceCredential(ref: DeviceRef): Credential {
  const identity = new Writer().str8(astring(ref.user, "user")).str8(astring(ref.deviceId, "deviceId")).finish();
  return { credentialType: "basic", identity };
}

/** Reads the device a credential claims; anything but our basic layout is E_MLS_FORMAT. */
export function parseCredential(credential: Credential): DeviceRef {
  if (credential.credentialType !== "basic") throw new MlsError("E_MLS_FORMAT", "Only basic device credentials are accepted");
  try {
    const r = new Reader(abytes(credential.identity, "identity"));
    const ref = { user: r.str8(), deviceId: r.str8() };
    if (r.left !== 0) throw new MlsError("E_MLS_FORMAT", "Trailing bytes after the device credential");
    return ref;
  } catch (err) {
    if (err instanceof MlsError) throw err;
    throw new MlsError("E_MLS_FORMAT", "The device credential is malformed");
  }
}
