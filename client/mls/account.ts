/**
 * This device's standing in MLS: at every login it makes sure the account's
 * signed device list names it with its MLS key (and no longer names revoked
 * devices), and that the server holds a supply of its key packages. It also
 * keeps the device lists of the people it talks to, each verified against the
 * identity key this device pinned for them: the only source of trust for a leaf.
 */
import { makeKeyPackageRef } from "ts-mls/keyPackage.js";
import type { IdentityKeys, PublicIdentity } from "../../crypto/keys";
import {
  DeviceListBook,
  makeKeyPackage,
  mlsSuite,
  ROLES_EXTENSION,
  signDeviceList,
  signOrigin,
  verifyDeviceList,
  type DeviceList,
  type GroupOrigin,
  type MlsDevice,
  type OriginPlace,
  type OwnKeyPackage,
} from "../../crypto/mls/index.ts";
import { ChatError } from "../../protocol/errors";
import type { MlsLocal } from "./local";

/** The one-time supply: topped up to TARGET at a login that finds fewer than LOW. */
export const KEY_PACKAGE_TARGET = 10;
export const KEY_PACKAGE_LOW = 5;
/** A device list asked for again after this long, when a conversation is checked against it (a new device waits at most this long to be added). */
const LIST_FRESH_MS = 10_000;

export type Call = (op: string, args: Record<string, unknown>) => Promise<Record<string, unknown>>;

export interface AccountDeps {
  user: string;
  deviceId: () => string;
  keys: () => IdentityKeys;
  /** The pinned identity key of a contact (pinned on first use), and whether the server now offers another. */
  keyOf(name: string): Promise<{ key: PublicIdentity; changed: boolean }>;
  call: Call;
  local: MlsLocal;
}

export class MlsAccount {
  readonly book = new DeviceListBook();
  private readonly fetched = new Map<string, number>();
  private bootstrapped?: Promise<void>;
  private own?: MlsDevice;

  constructor(private readonly deps: AccountDeps) {
    for (const kept of deps.local.deviceLists()) {
      try {
        this.book.accept(kept.user, kept.signed, kept.identity);
      } catch {
        // not readable any more: the server's copy is asked for instead
      }
    }
  }

  get device(): MlsDevice {
    this.own ??= this.deps.local.device(this.deps.user, this.deps.deviceId());
    return this.own;
  }

  /** Runs after each login; a failure leaves this device on envelopes until the next login, and is not the user's problem. */
  loggedIn(): Promise<void> {
    const run = this.publish().catch(() => {});
    this.bootstrapped = run;
    return run;
  }

  /** Resolves when the last login's publishing is done (tests, and the first send of a session). */
  ready(): Promise<void> {
    return this.bootstrapped ?? Promise.resolve();
  }

  private async publish(): Promise<void> {
    await this.publishList();
    await this.topUp();
  }

  /** Makes the account's list name this device (with its key) and only devices the server still counts as live. */
  private async publishList(): Promise<void> {
    const me = this.device;
    for (let attempt = 0; attempt < 5; attempt++) {
      const held = await this.ownList();
      const live = new Set(((await this.deps.call("devices", {})).devices as { id: string }[]).map((d) => d.id));
      live.add(me.deviceId);
      const listed = held?.devices.find((d) => d.deviceId === me.deviceId);
      const stale = held?.devices.some((d) => !live.has(d.deviceId)) ?? false;
      if (listed && Buffer.from(listed.mlsKey).equals(Buffer.from(me.publicKey)) && !stale) return;
      const devices = (held?.devices ?? []).filter((d) => d.deviceId !== me.deviceId && live.has(d.deviceId));
      devices.push({ deviceId: me.deviceId, mlsKey: me.publicKey });
      const list: DeviceList = { user: this.deps.user, version: (held?.version ?? 0) + 1, issuedAt: Date.now(), devices };
      try {
        await this.deps.call("mls.devicelist.put", { list: signDeviceList(list, this.deps.keys().signPrivate) });
        this.fetched.delete(this.deps.user);
        return;
      } catch (error) {
        // Another device of the account published first: read its list and add this device to it.
        if (!(error instanceof ChatError) || error.code !== "E_MLS_DEVICE_LIST") throw error;
      }
    }
  }

  private async ownList(): Promise<DeviceList | undefined> {
    const lists = (await this.deps.call("mls.devicelist.get", { users: [this.deps.user] })).lists as Record<string, Uint8Array>;
    const signed = lists[this.deps.user];
    return signed ? verifyDeviceList(new Uint8Array(signed), this.deps.keys().signPublic, this.deps.user) : undefined;
  }

  /** Keeps the private halves first: a package the server hands out must be one this device can join with. */
  private async topUp(): Promise<void> {
    const counted = (await this.deps.call("mls.keypackages.count", {})) as { oneTime: number; lastResort: boolean };
    // Packages on the server whose private halves this device does not hold (a store in memory, or one lost,
    // and so a new MLS key) are of no use: a welcome made for one could not be read. They are replaced.
    // So are packages made before the roles extension (crypto/mls/roles.ts): a group carrying it refuses to add them.
    const mine = this.packages();
    const old = mine.some((p) => !p.publicPackage.leafNode.capabilities.extensions.includes(ROLES_EXTENSION));
    const replace = (counted.oneTime > 0 || counted.lastResort) && (mine.length === 0 || old);
    const held = replace ? { oneTime: 0, lastResort: false } : counted;
    if (held.oneTime >= KEY_PACKAGE_LOW && held.lastResort) return;
    const oneTime: OwnKeyPackage[] = [];
    if (held.oneTime < KEY_PACKAGE_LOW) for (let i = held.oneTime; i < KEY_PACKAGE_TARGET; i++) oneTime.push(await makeKeyPackage(this.device));
    const lastResort = held.lastResort ? undefined : await makeKeyPackage(this.device, { lastResort: true });
    const all = lastResort ? [...oneTime, lastResort] : oneTime;
    const refs = new Map<OwnKeyPackage, string>();
    const cs = await mlsSuite();
    for (const p of all) refs.set(p, Buffer.from(await makeKeyPackageRef(p.publicPackage, cs.hash)).toString("hex"));
    this.deps.local.keepPackages(all, (p) => refs.get(p)!);
    await this.deps.call("mls.keypackages.put", {
      ...(replace ? { replace: true } : {}),
      ...(oneTime.length ? { oneTime: oneTime.map((p) => p.encoded) } : {}),
      ...(lastResort ? { lastResort: lastResort.encoded } : {}),
    });
    // the server dropped the packages it held: so does this device, for the old ones it still had
    if (replace) for (const p of mine) if (!p.publicPackage.leafNode.capabilities.extensions.includes(ROLES_EXTENSION)) this.deps.local.forgetPackage(p.ref);
  }

  /**
   * Brings the device lists of these users up to date (at most every 10 s each
   * unless `force`). False when one of them has no list, or their pinned
   * identity key changed: then the conversation stays on envelopes, whose
   * checks say why.
   */
  async refresh(users: string[], force = false): Promise<boolean> {
    const now = Date.now();
    const stale = users.filter((u) => force || !this.book.get(u) || now - (this.fetched.get(u) ?? 0) > LIST_FRESH_MS);
    if (stale.length > 0) {
      const lists = (await this.deps.call("mls.devicelist.get", { users: stale })).lists as Record<string, Uint8Array>;
      for (const u of stale) {
        const signed = lists[u];
        if (!signed) continue;
        const { key, changed } = await this.deps.keyOf(u);
        if (changed) return false;
        try {
          const list = this.book.accept(u, new Uint8Array(signed), key.sign);
          this.deps.local.keepDeviceList(u, new Uint8Array(signed), key.sign, list.version);
          this.fetched.set(u, now);
        } catch {
          // An older list replayed, or one not signed by the pinned key: the one held stays.
        }
      }
    }
    return users.every((u) => this.book.get(u) !== undefined);
  }

  /** The next refresh asks the server for these users' lists again, however recently it did. */
  forget(users: string[]): void {
    for (const u of users) this.fetched.delete(u);
  }

  /** This account's identity signs how a group chat's MLS group begins, as its creator (crypto/mls/origin.ts). */
  origin(place: OriginPlace, admins: string[]): GroupOrigin {
    return signOrigin(place, this.deps.user, [...admins, this.deps.user], this.deps.keys().signPrivate);
  }

  /** The identity signing key this device pinned for `user` (on first use, as for every contact). */
  async identityOf(user: string): Promise<Uint8Array> {
    return (await this.deps.keyOf(user)).key.sign;
  }

  /** The private key packages this device can join with. */
  packages(): (OwnKeyPackage & { ref: string })[] {
    return this.deps.local.packages(this.device.signKey);
  }
}
