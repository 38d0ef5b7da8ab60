/**
 * The live-server table. Each entry remembers the connection that registered it
 * (its owner), so a stale connection closing after its server re-registered on a
 * new one cannot remove the fresh entry. Pure data: the role does the I/O.
 */
import type { LiveServer } from "./strategy";

export const DEFAULT_HEARTBEAT_TIMEOUT_MS = 3000;

export interface Entry<C> extends LiveServer {
  owner: C;
}

export class Registry<C> {
  private readonly entries = new Map<string, Entry<C>>();

  constructor(
    readonly timeoutMs = DEFAULT_HEARTBEAT_TIMEOUT_MS,
    private readonly now: () => number = Date.now,
  ) {}

  /** Adds or replaces a server; returns the entry it replaced, if any. */
  register(id: string, addr: string, load: number, owner: C): Entry<C> | undefined {
    const previous = this.entries.get(id);
    // Delete first so a replaced server moves to the end, as a new one would.
    this.entries.delete(id);
    this.entries.set(id, { id, addr, load, assigned: 0, lastSeen: this.now(), owner });
    return previous;
  }

  /** Records a heartbeat; false when the owner no longer holds this id. */
  heartbeat(id: string, load: number, owner?: C): boolean {
    const entry = this.entries.get(id);
    if (!entry || (owner !== undefined && entry.owner !== owner)) return false;
    entry.load = load;
    // The new load counts the clients assigned so far, so start counting again.
    entry.assigned = 0;
    entry.lastSeen = this.now();
    return true;
  }

  /** Counts a client sent to this server until its next heartbeat. */
  assign(id: string): void {
    const entry = this.entries.get(id);
    if (entry) entry.assigned++;
  }

  /** Removes a server; with an owner, only if that owner still holds it. */
  remove(id: string, owner?: C): Entry<C> | undefined {
    const entry = this.entries.get(id);
    if (!entry || (owner !== undefined && entry.owner !== owner)) return undefined;
    this.entries.delete(id);
    return entry;
  }

  /** Removes every server silent for more than timeoutMs and returns them. */
  expire(now = this.now()): Entry<C>[] {
    const expired: Entry<C>[] = [];
    for (const entry of this.entries.values()) {
      if (now - entry.lastSeen > this.timeoutMs) expired.push(entry);
    }
    for (const entry of expired) this.entries.delete(entry.id);
    return expired;
  }

  get(id: string): Entry<C> | undefined {
    return this.entries.get(id);
  }

  /** The live entries, in registration order; strategies read them as they are. */
  list(): readonly Entry<C>[] {
    return [...this.entries.values()];
  }

  get size(): number {
    return this.entries.size;
  }
}
