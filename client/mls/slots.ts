/**
 * Each conversation's MLS group as this process holds it, kept in step with
 * store.db, which other processes of the same device share: a group is loaded
 * again when another process saved a newer version, saved only if none did
 * meanwhile (or, for what the server delivered, over it), and used by one
 * operation at a time, since each ts-mls operation replaces the state.
 */
import { DeviceGroup, MlsError, type MemberTrust } from "../../crypto/mls/index.ts";
import type { MlsLocal } from "./local";

export interface Held {
  group: DeviceGroup;
  version: number;
  /** Messages this device sent since its last leaf update, and when that was. */
  sent: number;
  since: number;
  /** Where this process's last own commit was stored: until everything below it is taken in, it makes no other (see MlsConversations.behind). */
  ownAt?: { conv: number; seq: number };
  /** The epoch and lists the leaves were last found to match. */
  checked?: string;
}

export class GroupSlots {
  private readonly groups = new Map<string, Held>();
  private readonly lanes = new Map<string, Promise<unknown>>();

  constructor(
    private readonly local: MlsLocal,
    private readonly trust: MemberTrust,
  ) {}

  /** What this process holds, without looking at the store. */
  peek(label: string): Held | undefined {
    return this.groups.get(label);
  }

  /** The group as last saved by any process of the device (`force`: read again from the store). */
  async loaded(label: string, force = false): Promise<Held | undefined> {
    const held = this.groups.get(label);
    const version = this.local.version(label);
    if (version === undefined) return undefined;
    if (held && held.version === version && !force) return held;
    const saved = this.local.group(label)!;
    const group = await DeviceGroup.restore(saved.state, this.trust);
    const fresh: Held = { group, version: saved.version, sent: saved.sent, since: saved.updatedAt };
    this.groups.set(label, fresh);
    return fresh;
  }

  /** The conversation position the saved state has taken in. */
  seq(label: string): number {
    return this.local.group(label)?.seq ?? 0;
  }

  /** Saves if no other process saved since this one loaded; true when it did. */
  save(label: string, held: Held, seq: number): boolean {
    const expected = held.version === 0 ? undefined : held.version;
    if (!this.local.saveGroup(label, held.group.save(), expected, seq, { sent: held.sent, updatedAt: held.since })) return false;
    held.version = this.local.version(label)!;
    this.groups.set(label, held);
    return true;
  }

  /** Received in the server's order: this state is the newest, whatever another process saved. */
  saveOver(label: string, held: Held, seq: number): void {
    if (this.save(label, held, seq)) return;
    held.version = this.local.version(label) ?? 0;
    if (!this.save(label, held, seq)) throw new MlsError("E_MLS_FORMAT", "The group could not be saved");
  }

  /** Runs `op` after every operation already queued for the conversation. */
  serial<T>(label: string, op: () => Promise<T>): Promise<T> {
    const run = (this.lanes.get(label) ?? Promise.resolve()).then(op, op);
    const tail = run.catch(() => undefined);
    this.lanes.set(label, tail);
    void tail.then(() => {
      if (this.lanes.get(label) === tail) this.lanes.delete(label);
    });
    return run;
  }
}
