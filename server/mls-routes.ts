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
import type { WireMessage } from "../protocol/messages";
import * as v from "../protocol/validate";
import type { ClientState, Conn } from "./context";
import type { Destination, Target } from "./directory";
import { MAX_ONE_TIME_PACKAGES, type KeyPackageStore } from "./keypackage-store";
import type { MlsStore } from "./mls-store";

const MAX_KEY_PACKAGE_BYTES = 16 * 1024;
/** One sealed batch of the history backup; a reply carries at most this much too, so it fits a frame. */
const MAX_HISTORY_BATCH_BYTES = 256 * 1024;
/** A signed list of 1024 devices is about 70 KiB. */
const MAX_DEVICE_LIST_BYTES = 128 * 1024;

/** What the MLS requests use of the server, and no more. */
export interface MlsDeps {
  keyPackages: KeyPackageStore;
  mls: MlsStore;
  directory: { destination(me: number, target: Target): Promise<Destination> };
  delivery: { deliver(message: WireMessage, recipients: number[], except?: Conn): Promise<unknown> };
  maxBody: number;
  log(line: string): void;
}

export function mlsRoutes(deps: MlsDeps, loggedIn: Route<ClientState>["guard"]): Record<string, Route<ClientState>> {
  const { keyPackages, mls, directory } = deps;
  const target = (req: Record<string, unknown>): Target => {
    const group = v.optionalName(req, "group");
    return group !== undefined ? { group } : { to: v.name(req, "to") };
  };
  return {
    "mls.keypackages.count": {
      guard: loggedIn,
      async handle(conn) {
        return keyPackages.held(conn.state.device!.id);
      },
    },
    "mls.devicelist.put": {
      guard: loggedIn,
      async handle(conn, req) {
        const me = conn.state.user!;
        return { version: await mls.putDeviceList(me.id, me.name, v.bytes(req, "list", MAX_DEVICE_LIST_BYTES)) };
      },
    },
    "mls.devicelist.get": {
      guard: loggedIn,
      async handle(_conn, req) {
        return { lists: await mls.deviceLists(v.names(req, "users", 1024)) };
      },
    },
    "mls.epoch": {
      guard: loggedIn,
      async handle(conn, req) {
        const { convId } = await directory.destination(conn.state.user!.id, target(req));
        const { epoch, groupId } = await mls.groupOf(convId);
        return { conv: convId, epoch, ...(groupId ? { groupId } : {}) };
      },
    },
    "history.backup.put": {
      guard: loggedIn,
      async handle(conn, req) {
        return { id: await mls.putHistory(conn.state.user!.id, v.bytes(req, "data", MAX_HISTORY_BATCH_BYTES)) };
      },
    },
    "history.backup.get": {
      guard: loggedIn,
      async handle(conn, req) {
        return { batches: await mls.history(conn.state.user!.id, v.int(req, "after", 0), MAX_HISTORY_BATCH_BYTES) };
      },
    },
    "mls.commit": {
      guard: loggedIn,
      async handle(conn, req) {
        const me = conn.state.user!;
        const to = target(req);
        const cmid = v.string(req, "cmid", 64);
        const epoch = v.int(req, "epoch", 0);
        const body = v.bytes(req, "body", deps.maxBody);
        const { convId } = await directory.destination(me.id, to);
        const replaces = req.reset === true ? v.bytes(req, "replaces", 255) : undefined;
        const r = await mls.appendCommit(convId, me.id, cmid, epoch, body, replaces);
        if (!r.duplicate) {
          const name = "group" in to ? to.group : to.to;
          const message: WireMessage = { id: r.id, conv: convId, seq: r.seq, from: me.name, to: name, ...("group" in to ? { group: to.group } : {}), kind: "chat", at: r.at, cmid, body };
          // to the committing connection too: the server's order is what every device follows, its author's included, so a
          // device whose own commit it cannot take in (a patched client's) stops on it like every other member
          void deps.delivery.deliver(message, [...r.recipients, me.id]).catch((e) => deps.log(`deliver ${r.id}: ${e}`));
        }
        return { msg: r.id, conv: convId, seq: r.seq, at: r.at, duplicate: r.duplicate, epoch: r.epoch };
      },
    },
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
        return { oneTime: await keyPackages.put(device.id, oneTime, lastResort, req.replace === true) };
      },
    },
    "mls.keypackages.claim": {
      guard: loggedIn,
      async handle(_conn, req) {
        const only = req.devices === undefined ? undefined : deviceIds(req.devices);
        return keyPackages.claim(v.name(req, "user"), req.complete === true, only);
      },
    },
  };
}

function deviceIds(value: unknown): string[] {
  if (!Array.isArray(value) || value.length > 1024 || !value.every((d) => typeof d === "string" && d.length <= 64))
    throw new ChatError("E_BAD_REQUEST", "devices: expected at most 1024 device ids");
  return value as string[];
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
