// What a client knows to be true about other accounts' devices: the newest signed device list it has
// verified for each. ts-mls asks it about every credential it meets (adds, joins, updates, commits).
import type { AuthenticationService, Credential } from "ts-mls";
import { equalBytes } from "../bytes.ts";
import { parseCredential, type DeviceRef } from "./credential.ts";
import { verifyDeviceList, type DeviceList } from "./device-list.ts";
import { MlsError } from "./errors.ts";

/** The one question a group asks about a leaf. */
export interface MemberTrust {
  isTrusted(device: DeviceRef, signatureKey: Uint8Array): boolean;
}

export class DeviceListBook implements MemberTrust {
  private readonly lists = new Map<string, DeviceList>();

  /**
   * Verifies a signed list against the identity key pinned for `user` and keeps it. A list older than
   * the one held is refused: replaying it would bring back a revoked device.
   */
  accept(user: string, signed: Uint8Array, identitySignPublic: Uint8Array): DeviceList {
    const list = verifyDeviceList(signed, identitySignPublic, user);
    const held = this.lists.get(user);
    if (held && list.version < held.version)
      throw new MlsError("E_MLS_DEVICE_LIST", `The device list for ${user} is older (${list.version}) than one already seen (${held.version})`);
    this.lists.set(user, list);
    return list;
  }

  get(user: string): DeviceList | undefined {
    return this.lists.get(user);
  }

  isTrusted(device: DeviceRef, signatureKey: Uint8Array): boolean {
    const entry = this.lists.get(device.user)?.devices.find((d) => d.deviceId === device.deviceId);
    return entry !== undefined && equalBytes(entry.mlsKey, signatureKey);
  }
}

/**
 * Adapts MemberTrust to ts-mls. ts-mls only learns "false" and throws its own error, so the refusal is
 * remembered here and the group turns it into E_MLS_UNTRUSTED_MEMBER naming the device.
 */
export class TrustGate implements AuthenticationService {
  refused: DeviceRef | undefined;
  constructor(private readonly trust: MemberTrust) {}

  async validateCredential(credential: Credential, signaturePublicKey: Uint8Array): Promise<boolean> {
    let device: DeviceRef;
    try {
      device = parseCredential(credential);
    } catch {
      this.refused = { user: "?", deviceId: "?" };
      return false;
    }
    if (this.trust.isTrusted(device, signaturePublicKey)) return true;
    this.refused = device;
    return false;
  }

  /** The same check, asked by our own code (before an add, on each sender) rather than by ts-mls. */
  trustedNow(device: DeviceRef, signatureKey: Uint8Array): boolean {
    return this.trust.isTrusted(device, signatureKey);
  }

  /** Runs one ts-mls operation and reports a credential refusal as our typed error. */
  async guard<T>(op: () => Promise<T>): Promise<T> {
    this.refused = undefined;
    try {
      return await op();
    } catch (err) {
      const refused = this.refused as DeviceRef | undefined; // set by validateCredential during op()
      if (refused) throw new MlsError("E_MLS_UNTRUSTED_MEMBER", `${refused.user}/${refused.deviceId} is not in ${refused.user}'s signed device list`);
      throw err;
    } finally {
      this.refused = undefined;
    }
  }
}
