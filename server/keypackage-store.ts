/**
 * MLS key packages in ChatDB (table key_packages). A device keeps a supply of
 * one-time packages and one last-resort package here; a claim hands out one
 * package per live device of the named user, a one-time package at most once
 * (deleted in the claiming transaction, SKIP LOCKED so concurrent claims take
 * different ones), and the last-resort package when the supply is empty.
 * The server cannot read or forge them: each is signed by its device's MLS key,
 * which the account's identity vouches for in its device list (crypto/mls).
 */
import type { Sql } from "../db/connect";
import { ChatError } from "../protocol/errors";

/** A device's one-time supply is capped, so one device cannot fill the database. */
export const MAX_ONE_TIME_PACKAGES = 100;

export interface ClaimedPackage {
  device: string;
  keyPackage: Uint8Array;
  lastResort: boolean;
}

export class KeyPackageStore {
  constructor(private readonly sql: Sql) {}

  /**
   * Adds one-time packages and replaces the last-resort one; returns how many
   * one-time packages are held. `replace`: the device's earlier packages go
   * first (it lost their private halves: a new MLS key, or a store in memory).
   */
  async put(deviceId: number, oneTime: Uint8Array[], lastResort: Uint8Array | undefined, replace = false): Promise<number> {
    return this.sql.begin(async (tx) => {
      // the device row serialises two uploads from one device, so the cap holds
      await tx`select id from devices where id = ${deviceId} for update`;
      if (replace) await tx`delete from key_packages where device_id = ${deviceId}`;
      const [{ n }] = (await tx`select count(*)::int as n from key_packages where device_id = ${deviceId} and not last_resort`) as unknown as [{ n: number }];
      if (n + oneTime.length > MAX_ONE_TIME_PACKAGES)
        throw new ChatError("E_BAD_REQUEST", `A device holds at most ${MAX_ONE_TIME_PACKAGES} one-time key packages; it has ${n}`);
      for (const data of oneTime) await tx`insert into key_packages (device_id, data) values (${deviceId}, ${data})`;
      if (lastResort) {
        await tx`delete from key_packages where device_id = ${deviceId} and last_resort`;
        await tx`insert into key_packages (device_id, data, last_resort) values (${deviceId}, ${lastResort}, true)`;
      }
      return n + oneTime.length;
    });
  }

  /** How many one-time packages a device holds, and whether it has a last-resort one. */
  async held(deviceId: number): Promise<{ oneTime: number; lastResort: boolean }> {
    const [row] = await this.sql`select count(*) filter (where not last_resort)::int as once, bool_or(last_resort) as last
                                 from key_packages where device_id = ${deviceId}`;
    return { oneTime: row?.once ?? 0, lastResort: row?.last === true };
  }

  /**
   * One package for each of the user's devices that is not revoked and has any.
   * With `complete`, nothing is handed out unless every such device has one:
   * the claimer then knows which devices to wait for (`missing`) without using
   * up the others' one-time packages. With `only`, just those devices (by id).
   */
  async claim(userName: string, complete = false, only?: string[]): Promise<{ packages: ClaimedPackage[]; missing: string[] }> {
    return this.sql.begin(async (tx) => {
      const [user] = await tx`select id from users where name = ${userName}`;
      if (!user) throw new ChatError("E_NO_SUCH_USER");
      const all = await tx`select d.id, d.key, exists (select 1 from key_packages k where k.device_id = d.id) as has
                               from devices d where d.user_id = ${user.id} and d.revoked_at is null order by d.id`;
      // `only`: the devices a group is missing, so that those already in it keep their one-time packages
      const devices = only ? all.filter((d) => only.includes(d.key as string)) : all;
      const missing = devices.filter((d) => !d.has).map((d) => d.key as string);
      if (complete && missing.length > 0) return { packages: [], missing };
      const out: ClaimedPackage[] = [];
      for (const d of devices) {
        const [once] = await tx`delete from key_packages where id = (
                                  select id from key_packages where device_id = ${d.id} and not last_resort
                                  order by id limit 1 for update skip locked)
                                returning data`;
        if (once) {
          out.push({ device: d.key as string, keyPackage: new Uint8Array(once.data), lastResort: false });
          continue;
        }
        const [reused] = await tx`select data from key_packages where device_id = ${d.id} and last_resort`;
        if (reused) out.push({ device: d.key as string, keyPackage: new Uint8Array(reused.data), lastResort: true });
      }
      return { packages: out, missing };
    });
  }
}
