/**
 * How far this process has taken in each conversation, without a hole: every
 * message delivered to it (and shown, or found to be nothing to show) and
 * every one it stored itself. A device that made a commit makes no other
 * until the frontier reaches that commit: the messages stored just before it
 * were sent on the epoch it ended, and the group keeps that epoch's keys for
 * one epoch more only (crypto/mls/config.ts).
 */
export class Frontier {
  private readonly upTo = new Map<number, number>();
  private readonly ahead = new Map<number, Set<number>>();

  /** `start`: where the conversation stood for this device before this process saw it (its store's position). */
  constructor(private readonly start: (conv: number) => number) {}

  passed(conv: number, seq: number): void {
    let at = this.upTo.get(conv) ?? this.start(conv);
    if (seq <= at) {
      this.upTo.set(conv, at);
      return;
    }
    let ahead = this.ahead.get(conv);
    if (!ahead) this.ahead.set(conv, (ahead = new Set()));
    ahead.add(seq);
    while (ahead.delete(at + 1)) at++;
    this.upTo.set(conv, at);
    if (ahead.size === 0) this.ahead.delete(conv);
  }

  /** Whether every message of the conversation up to `seq` has been taken in. */
  reached(conv: number, seq: number): boolean {
    return (this.upTo.get(conv) ?? this.start(conv)) >= seq;
  }
}
