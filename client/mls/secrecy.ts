/**
 * Whether each conversation's messages are forward secret: told to the view
 * once per conversation when a message to it goes as an envelope (sealed to
 * long-term keys: whoever later gets a recipient's identity key reads it), with
 * the reason, and again whenever that changes (another reason, or MLS at last).
 * A conversation first seen on MLS is not mentioned: that is the normal case.
 */
export interface SecrecyNotice {
  target: { to: string } | { group: string };
  forwardSecret: boolean;
  /** Why not, for a conversation on envelopes: whose device has no MLS keys, or what else keeps it there. */
  reason?: string;
  /** For a group this device joined by a welcome it does not trust: who added it, and why that is no admin's word. */
  doubt?: string;
}

export class SecrecyWatch {
  /** Per conversation label, what was last said: the reason, or "" for MLS. */
  private readonly said = new Map<string, string>();

  constructor(private readonly tell: (notice: SecrecyNotice) => void) {}

  /** A message to the conversation was sealed: on MLS (`reason` undefined) or as an envelope, for `reason`. */
  sealed(label: string, target: SecrecyNotice["target"], reason: string | undefined): void {
    const now = reason ?? "";
    const before = this.said.get(label);
    if (before === now) return;
    this.said.set(label, now);
    if (before === undefined && reason === undefined) return;
    this.tell({ target, forwardSecret: reason === undefined, ...(reason !== undefined ? { reason } : {}) });
  }
}
