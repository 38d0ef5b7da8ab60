/**
 * What moved cursors tell others: a read marker that moved goes to the user's
 * own connections (so every device shows the same unread counts) and, as a
 * read receipt, to the other members; a device that received something gives
 * a delivery receipt. Read receipts follow the rule of Signal: a user who
 * turned them off sends none and is shown none.
 */
import type { CursorStore, Moved } from "./cursor-store";

export interface ReceiptDeps {
  cursors: Pick<CursorStore, "audience">;
  send(users: number[], frame: Record<string, unknown>): Promise<void>;
  log(line: string): void;
}

export function receiptsFor(deps: ReceiptDeps): (delivered: Moved[], read: Moved[]) => void {
  return (delivered, read) => {
    void (async () => {
      const audience = await deps.cursors.audience([...new Set([...delivered, ...read].map((m) => m.convId))]);
      for (const m of read) {
        void deps.send([m.userId], { t: "ev", ev: "read", conv: m.convId, seq: m.seq });
      }
      for (const [moves, kind] of [
        [delivered, "delivered"],
        [read, "read"],
      ] as const) {
        for (const m of moves) {
          const members = audience.get(m.convId) ?? [];
          const mover = members.find((x) => x.userId === m.userId);
          if (!mover || (kind === "read" && !mover.receipts)) continue;
          const to = members.filter((x) => x.userId !== m.userId && (kind === "delivered" || x.receipts)).map((x) => x.userId);
          if (to.length > 0) void deps.send(to, { t: "ev", ev: "receipt", conv: m.convId, user: mover.name, [kind]: m.seq });
        }
      }
    })().catch((e) => deps.log(`receipts: ${e}`));
  };
}
