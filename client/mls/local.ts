/**
 * This device's MLS secrets in its store.db: its MLS signing key, the private
 * halves of the key packages it uploaded (to join from a welcome made for one
 * of them), each conversation's group state as ts-mls serializes it, and the
 * newest device list it verified for each user (so that after a restart an
 * older list, naming a device since revoked, is still refused). All
 * of it is as sensitive as the identity keys beside it (the file is 0600).
 * Several processes of one user share the file: each group row carries a
 * version, and a process that finds another version than the one it holds
 * loads the row again before it uses the group.
 */
import type { Database } from "bun:sqlite";
import { ed25519 } from "@noble/curves/ed25519.js";
import { decodeKeyPackage, newMlsDevice, type MlsDevice, type OwnKeyPackage } from "../../crypto/mls/index.ts";
import type { JoinPoint } from "./unreadable";

const SCHEMA = `
  create table if not exists mls_key_packages (ref text primary key, public blob not null, init blob not null, hpke blob not null,
    last_resort integer not null, created_at real not null);
  create table if not exists mls_device_lists (user text primary key, signed blob not null, identity blob not null, version integer not null);
  create table if not exists mls_groups (label text primary key, state blob not null, version integer not null, seq integer not null default 0,
    sent integer not null default 0, updated_at real not null default 0);
`;

export interface SavedGroup {
  state: Uint8Array;
  version: number;
  /** The conversation position of the last message the state has taken in (0 before any). */
  seq: number;
  /** Messages this device sent since its last leaf update, and when that was (ms): when to update again. */
  sent: number;
  updatedAt: number;
}

/** What a key value store gives (the LocalStore's kv table). */
export interface KeyValues {
  get(key: string): string | undefined;
  set(key: string, value: string | undefined): void;
}

export class MlsLocal {
  constructor(
    private readonly db: Database,
    private readonly kv: KeyValues,
  ) {
    db.exec(SCHEMA);
  }

  /** The device's MLS signing key, made the first time it is asked for. */
  device(user: string, deviceId: string): MlsDevice {
    const saved = this.kv.get("mls.sign");
    if (saved) {
      const signKey = new Uint8Array(Buffer.from(saved, "base64"));
      return { user, deviceId, signKey, publicKey: ed25519.getPublicKey(signKey) };
    }
    const made = newMlsDevice({ user, deviceId });
    this.kv.set("mls.sign", Buffer.from(made.signKey).toString("base64"));
    return made;
  }

  /**
   * Why this device does not trust the membership of the conversation's group
   * (it was added by a commit no honest member takes in, crypto/mls/roles.ts
   * joinDoubt: it is in a fork of the group), for as long as it holds that
   * group; shared by the device's processes.
   */
  joinDoubt(label: string): string | undefined {
    return this.kv.get(`mls.doubt.${label}`);
  }

  setJoinDoubt(label: string, why: string | undefined): void {
    this.kv.set(`mls.doubt.${label}`, why);
  }

  /**
   * Where the conversation's group stopped: the position of a commit the
   * server stored that this device refused (no honest member could take it
   * in), and the MLS group id the server moved to with it, which a reset
   * replaces. Until an admin's device makes the group again.
   */
  stopped(label: string): { seq: number; groupId: Uint8Array } | undefined {
    const at = this.kv.get(`mls.stopped.${label}`);
    if (at === undefined) return undefined;
    const { seq, group } = JSON.parse(at) as { seq: number; group: string };
    return { seq, groupId: new Uint8Array(Buffer.from(group, "hex")) };
  }

  setStopped(label: string, at: { seq: number; groupId: Uint8Array } | undefined): void {
    this.kv.set(`mls.stopped.${label}`, at === undefined ? undefined : JSON.stringify({ seq: at.seq, group: Buffer.from(at.groupId).toString("hex") }));
  }

  /**
   * Users who had a leaf in the group this device's reset replaced and none of
   * whose devices it could add (no key package): this admin's device adds them
   * again, as if they had a leaf, once they have one.
   */
  leftOut(label: string): string[] {
    const saved = this.kv.get(`mls.leftout.${label}`);
    return saved === undefined ? [] : (JSON.parse(saved) as string[]);
  }

  setLeftOut(label: string, users: string[]): void {
    this.kv.set(`mls.leftout.${label}`, users.length === 0 ? undefined : JSON.stringify(users));
  }

  /** The group this device's own reset replaced (its secrets: as sensitive as the group itself), for messages stored just before it. */
  replaced(label: string): Uint8Array | undefined {
    const saved = this.kv.get(`mls.replaced.${label}`);
    return saved === undefined ? undefined : new Uint8Array(Buffer.from(saved, "base64"));
  }

  setReplaced(label: string, state: Uint8Array | undefined): void {
    this.kv.set(`mls.replaced.${label}`, state === undefined ? undefined : Buffer.from(state).toString("base64"));
  }

  /**
   * Where this device stands in the conversation's MLS group: the position at
   * which it joined (undefined for a group joined before this was kept, or
   * none joined), the position of a first welcome it refused, and whether it
   * holds a group. What tells a message from before its join apart from one
   * it should have read (client/mls/unreadable.ts).
   */
  joinPoint(label: string): JoinPoint {
    const joined = this.kv.get(`mls.joined.${label}`);
    const refused = this.kv.get(`mls.refused.${label}`);
    return {
      ...(joined !== undefined ? { joined: Number(joined) } : {}),
      ...(refused !== undefined ? { refused: Number(refused) } : {}),
      held: this.version(label) !== undefined,
    };
  }

  /** A welcome into a conversation whose group this device does not hold was refused, at `seq`: what it misses after that is a warning. */
  refusedAt(label: string, seq: number): void {
    if (this.joinPoint(label).refused === undefined) this.kv.set(`mls.refused.${label}`, String(seq));
  }

  keepPackages(packages: OwnKeyPackage[], ref: (p: OwnKeyPackage) => string): void {
    const insert = this.db.query("insert or replace into mls_key_packages (ref, public, init, hpke, last_resort, created_at) values (?, ?, ?, ?, ?, ?)");
    this.db.transaction(() => {
      for (const p of packages) insert.run(ref(p), p.encoded, p.privatePackage.initPrivateKey, p.privatePackage.hpkePrivateKey, p.lastResort ? 1 : 0, Date.now());
    })();
  }

  /** Every key package this device still holds the private half of. */
  packages(signKey: Uint8Array): (OwnKeyPackage & { ref: string })[] {
    const rows = this.db.query("select ref, public, init, hpke, last_resort from mls_key_packages").all() as { ref: string; public: Uint8Array; init: Uint8Array; hpke: Uint8Array; last_resort: number }[];
    return rows.map((r) => ({
      ref: r.ref,
      publicPackage: decodeKeyPackage(new Uint8Array(r.public)),
      privatePackage: { initPrivateKey: new Uint8Array(r.init), hpkePrivateKey: new Uint8Array(r.hpke), signaturePrivateKey: signKey },
      lastResort: r.last_resort === 1,
      encoded: new Uint8Array(r.public),
    }));
  }

  /** A one-time package, once used: its private key goes (forward secrecy of the welcome). */
  dropPackage(ref: string): void {
    this.db.query("delete from mls_key_packages where ref = ? and last_resort = 0").run(ref);
  }

  /** A package the server no longer holds (replaced): its private half goes too. */
  forgetPackage(ref: string): void {
    this.db.query("delete from mls_key_packages where ref = ?").run(ref);
  }

  /** Last-resort packages older than the one just uploaded are no longer handed out. */
  dropOldLastResort(keep: string): void {
    this.db.query("delete from mls_key_packages where last_resort = 1 and ref <> ? and created_at < ?").run(keep, Date.now() - 7 * 24 * 3600_000);
  }

  /** The newest device list this device verified for each user, with the identity key it verified it under. */
  deviceLists(): { user: string; signed: Uint8Array; identity: Uint8Array }[] {
    return (this.db.query("select user, signed, identity from mls_device_lists").all() as { user: string; signed: Uint8Array; identity: Uint8Array }[]).map((r) => ({
      user: r.user,
      signed: new Uint8Array(r.signed),
      identity: new Uint8Array(r.identity),
    }));
  }

  keepDeviceList(user: string, signed: Uint8Array, identity: Uint8Array, version: number): void {
    this.db
      .query(
        `insert into mls_device_lists (user, signed, identity, version) values (?, ?, ?, ?)
         on conflict (user) do update set signed = excluded.signed, identity = excluded.identity, version = excluded.version where excluded.version > mls_device_lists.version`,
      )
      .run(user, signed, identity, version);
  }

  group(label: string): SavedGroup | undefined {
    const row = this.db.query("select state, version, seq, sent, updated_at from mls_groups where label = ?").get(label) as
      | { state: Uint8Array; version: number; seq: number; sent: number; updated_at: number }
      | null;
    return row ? { state: new Uint8Array(row.state), version: row.version, seq: row.seq, sent: row.sent, updatedAt: row.updated_at } : undefined;
  }

  version(label: string): number | undefined {
    const row = this.db.query("select version from mls_groups where label = ?").get(label) as { version: number } | null;
    return row?.version;
  }

  /** Saves a group's state if the row is still at `expected` (undefined: no row yet); false if another process moved it. */
  saveGroup(label: string, state: Uint8Array, expected: number | undefined, seq: number, counters: { sent: number; updatedAt: number }): boolean {
    if (expected === undefined) {
      const r = this.db
        .query("insert into mls_groups (label, state, version, seq, sent, updated_at) values (?, ?, 1, ?, ?, ?) on conflict do nothing")
        .run(label, state, seq, counters.sent, counters.updatedAt);
      // The row's first save is this device's join: the welcome it took in, or the commit that made the group.
      // Its seq moves on with every message; the join point stays, for telling history from before it.
      if (r.changes === 1 && this.joinPoint(label).joined === undefined) this.kv.set(`mls.joined.${label}`, String(seq));
      return r.changes === 1;
    }
    const r = this.db
      .query("update mls_groups set state = ?, version = version + 1, seq = max(seq, ?), sent = ?, updated_at = ? where label = ? and version = ?")
      .run(state, seq, counters.sent, counters.updatedAt, label, expected);
    return r.changes === 1;
  }

  dropGroup(label: string): void {
    this.db.query("delete from mls_groups where label = ?").run(label);
  }
}
