/**
 * What moved cursors tell others: a read marker that moved goes to the user's
 * own connections (so every device shows the same unread counts) and, as a
 * read receipt, to the other members; a device that received something gives
 * a delivery receipt. Read receipts follow the rule of Signal: a user who
 * turned them off sends none and is shown none.
 *
 * Receipts are gathered for a moment and go out as one `receipts` event per
 * person, with only the latest position of each: sent one by one, they were
 * one more event per message delivered, and doubled the server's work.
 */
import { ClockCache } from "./clock-cache";
import type { CursorStore, Moved } from "./cursor-store";
import { encodeReceipts, type WireReceipt } from "../protocol/receipts-frame";

export interface ReceiptDeps {
  cursors: Pick<CursorStore, "audience" | "readReceiptsOf">;
  send(users: number[], frame: Record<string, unknown>): Promise<void>;
  /** A frame already encoded (the `receipts` event, protocol/receipts-frame.ts). */
  sendEncoded(users: number[], bytes: Uint8Array): Promise<void>;
  log(line: string): void;
  /** How long receipts gather before they go out (default 250 ms). */
  delayMs?: number;
  /** Conversations whose members are kept (those not used lately go first). */
  maxEntries?: number;
}

interface Position {
  delivered: number;
  read: number;
}

type Member = { userId: number; name: string; receipts: boolean };

/**
 * How long a conversation's members are taken as known. Asked for every flush,
 * they were most of the receipts' cost (every member of every conversation
 * acknowledged in the last moment). A membership change made through this
 * server forgets its conversation at once; one made through another is seen
 * within this long: until then a receipt may still reach a member just removed.
 */
const AUDIENCE_TTL_MS = 10_000;

export class Receipts {
  /** conv -> user -> the highest positions moved since the last flush. */
  private pending = new Map<number, Map<number, Position>>();
  private timer?: Timer;
  private readonly audiences: ClockCache<number, { members: Member[]; at: number }>;

  constructor(private readonly deps: ReceiptDeps) {
    this.audiences = new ClockCache(deps.maxEntries ?? 100_000);
  }

  /** Positions that moved (from server/acks.ts). Read markers go to the user's own connections at once. */
  moved(delivered: Moved[], read: Moved[]): void {
    for (const m of read) void this.deps.send([m.userId], { t: "ev", ev: "read", conv: m.convId, seq: m.seq });
    for (const [moves, kind] of [
      [delivered, "delivered"],
      [read, "read"],
    ] as const) {
      for (const m of moves) {
        let conv = this.pending.get(m.convId);
        if (!conv) this.pending.set(m.convId, (conv = new Map()));
        const at = conv.get(m.userId) ?? { delivered: 0, read: 0 };
        at[kind] = Math.max(at[kind], m.seq);
        conv.set(m.userId, at);
      }
    }
    this.timer ??= setTimeout(() => void this.flush(), this.deps.delayMs ?? 250);
  }

  /** Sends what gathered: to each other member, one event with every position they may see. */
  async flush(): Promise<void> {
    clearTimeout(this.timer);
    this.timer = undefined;
    const pending = this.pending;
    this.pending = new Map();
    if (pending.size === 0) return;
    try {
      const audience = await this.audience([...pending.keys()]);
      // Whether those who read send read receipts, asked now: a user who just turned them off sends none.
      let readers: Set<number> | undefined;
      for (const movers of pending.values()) for (const [user, at] of movers) if (at.read > 0) (readers ??= new Set()).add(user);
      const sends = readers !== undefined ? await this.deps.cursors.readReceiptsOf([...readers]) : new Map<number, boolean>();
      const out = new Map<number, WireReceipt[]>();
      for (const [convId, movers] of pending) {
        const members = audience.get(convId);
        if (members === undefined) continue;
        for (const [userId, at] of movers) {
          let mover: Member | undefined;
          for (const x of members) if (x.userId === userId) { mover = x; break; }
          if (mover === undefined) continue;
          const shareRead = at.read > 0 && sends.get(userId) === true;
          const delivered = at.delivered > 0 ? at.delivered : null;
          for (const member of members) {
            if (member.userId === userId) continue;
            // A read position is shared only where both sides have read receipts on.
            const read = shareRead && member.receipts ? at.read : null;
            if (read === null && delivered === null) continue;
            let list = out.get(member.userId);
            if (!list) out.set(member.userId, (list = []));
            list.push([convId, mover.name, delivered, read]);
          }
        }
      }
      for (const [userId, r] of out) void this.deps.sendEncoded([userId], encodeReceipts(r));
    } catch (error) {
      this.deps.log(`receipts: ${error}`);
    }
  }

  stop(): void {
    clearTimeout(this.timer);
  }

  /** A membership change: its conversation's members are asked again. */
  forget(convId: number): void {
    this.audiences.delete(convId);
  }

  private async audience(convIds: number[]): Promise<Map<number, Member[]>> {
    const now = Date.now();
    const out = new Map<number, Member[]>();
    const missing: number[] = [];
    for (const conv of convIds) {
      const known = this.audiences.get(conv);
      if (known && now - known.at < AUDIENCE_TTL_MS) out.set(conv, known.members);
      else missing.push(conv);
    }
    if (missing.length > 0) {
      const fresh = await this.deps.cursors.audience(missing);
      for (const conv of missing) {
        const members = fresh.get(conv) ?? [];
        this.audiences.set(conv, { members, at: now });
        out.set(conv, members);
      }
    }
    return out;
  }
}
