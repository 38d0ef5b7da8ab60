/**
 * The requests for MLS key packages: a device uploads its own supply, and
 * anyone logged in claims one package per device of a user, to add them to a
 * conversation. The server checks only what it can: that each upload is a key
 * package, for this user and this device, in the slot it claims to be. Whether
 * a package's device belongs to its user is for clients to check, against the
 * device list the user's identity signs.
 */
import { isLastResort, parseCredential, decodeKeyPackage } from "../crypto/mls/index.ts";
import type { Route } from "../net/listener";
import { ChatError } from "../protocol/errors";
import * as v from "../protocol/validate";
import type { ClientState } from "./context";
import { MAX_ONE_TIME_PACKAGES, type KeyPackageStore } from "./keypackage-store";

const MAX_KEY_PACKAGE_BYTES = 16 * 1024;

export function mlsRoutes(keyPackages: KeyPackageStore, loggedIn: Route<ClientState>["guard"]): Record<string, Route<ClientState>> {
  return {
    "mls.keypackages.put": {
      guard: loggedIn,
      async handle(conn, req) {
        const me = conn.state.user!;
        const device = conn.state.device!;
        const oneTime = req.oneTime === undefined ? [] : bytesList(req.oneTime, "oneTime", MAX_ONE_TIME_PACKAGES);
        const lastResort = req.lastResort === undefined ? undefined : v.bytes(req, "lastResort", MAX_KEY_PACKAGE_BYTES);
        if (oneTime.length === 0 && !lastResort) throw new ChatError("E_BAD_REQUEST", "oneTime or lastResort: expected key packages");
        for (const [i, data] of oneTime.entries()) check(data, `oneTime[${i}]`, false, me.name, device.key);
        if (lastResort) check(lastResort, "lastResort", true, me.name, device.key);
        return { oneTime: await keyPackages.put(device.id, oneTime, lastResort) };
      },
    },
    "mls.keypackages.claim": {
      guard: loggedIn,
      async handle(_conn, req) {
        return { packages: await keyPackages.claim(v.name(req, "user")) };
      },
    },
  };
}

function bytesList(value: unknown, field: string, max: number): Uint8Array[] {
  if (!Array.isArray(value) || value.length > max) throw new ChatError("E_BAD_REQUEST", `${field}: expected at most ${max} key packages`);
  return value.map((item, i) => v.bytes({ [`${field}[${i}]`]: item }, `${field}[${i}]`, MAX_KEY_PACKAGE_BYTES));
}

/** Refuses what would only waste the database or mislead a claimer: not a key package, someone else's, the wrong slot. */
function check(data: Uint8Array, field: string, lastResort: boolean, user: string, deviceKey: string): void {
  let claimed: { user: string; deviceId: string };
  let marked: boolean;
  try {
    const kp = decodeKeyPackage(data);
    claimed = parseCredential(kp.leafNode.credential);
    marked = isLastResort(kp);
  } catch {
    throw new ChatError("E_BAD_REQUEST", `${field}: not an MLS key package`);
  }
  if (claimed.user !== user || claimed.deviceId !== deviceKey)
    throw new ChatError("E_BAD_REQUEST", `${field}: the key package is for ${claimed.user}/${claimed.deviceId}, not this device (${user}/${deviceKey})`);
  if (marked !== lastResort) throw new ChatError("E_BAD_REQUEST", `${field}: ${lastResort ? "expected" : "did not expect"} the last_resort extension`);
}
