/**
 * Exactly-once, in-order display from at-least-once, possibly reordered
 * delivery: per conversation, the highest sequence number handed on so far.
 * A duplicate is dropped; a message past a gap waits until the gap is filled
 * (by delivery, by the user's own acknowledged send, or by asking the server).
 * A gap that the user's own unanswered sends can explain (their numbers are
 * not delivered back, only answered) is not fetched until those are answered.
 */
import type { WireMessage } from "../protocol/messages";

export interface SequencerHooks {
  /** A message in order, seen for the first time. */
  emit(message: WireMessage): void;
  /** A gap that delivery did not fill in time: fetch the conversation after `seq`. */
  gap(conv: number, after: number): void;
}

export class Sequencer {
  private readonly last = new Map<number, number>();
  private readonly waiting = new Map<number, Map<number, WireMessage>>();
  /** Sequence numbers taken by this user's own sends, which are not delivered back. */
  private readonly own = new Map<number, Set<number>>();
  private readonly timers = new Map<number, Timer>();
  /** Own sends not answered yet, by token: their conversation, where an earlier answer to the same target told it (else unknown). */
  private readonly unanswered = new Map<number, number | undefined>();
  private tokens = 0;
  /** Target ("g:" group or "u:" user) to its conversation, from answers to sends. */
  private readonly targets = new Map<string, number>();
  /** Gaps whose fetch waits for the answers to own sends up to this token. */
  private readonly deferred = new Map<number, number>();

  constructor(
    private readonly hooks: SequencerHooks,
    private readonly gapWaitMs = 300,
  ) {}

  /** Starts a conversation at a known position (the server's cursor, or local state). */
  position(conv: number, seq: number): void {
    if (seq > (this.last.get(conv) ?? 0)) this.last.set(conv, seq);
  }

  knows(conv: number): boolean {
    return this.last.has(conv);
  }

  positions(): Record<number, number> {
    return Object.fromEntries(this.last);
  }

  get waitingCount(): number {
    let n = 0;
    for (const w of this.waiting.values()) n += w.size;
    return n;
  }

  receive(message: WireMessage): void {
    const last = this.last.get(message.conv) ?? 0;
    if (message.seq <= last) return;
    if (message.seq === last + 1) {
      this.advance(message.conv, message);
      return;
    }
    let waiting = this.waiting.get(message.conv);
    if (!waiting) this.waiting.set(message.conv, (waiting = new Map()));
    waiting.set(message.seq, message);
    if (!this.timers.has(message.conv)) {
      this.timers.set(
        message.conv,
        setTimeout(() => {
          this.timers.delete(message.conv);
          this.gapTimedOut(message.conv);
        }, this.gapWaitMs),
      );
    }
  }

  /** An own send goes out; returns the token to give to `answered`. */
  sending(args: { to?: unknown; group?: unknown }): number {
    const token = ++this.tokens;
    this.unanswered.set(token, this.targets.get(targetOf(args)));
    return token;
  }

  /**
   * An own send was answered (after ownSend, for one that was stored) or
   * failed: a gap that waited on it is fetched now if it is still there.
   */
  answered(token: number, args: { to?: unknown; group?: unknown }, conv?: number): void {
    this.unanswered.delete(token);
    if (conv !== undefined) this.targets.set(targetOf(args), conv);
    for (const [c, upTo] of [...this.deferred]) {
      if (this.explaining(c, upTo) > 0) continue;
      this.deferred.delete(c);
      if (this.waiting.get(c)?.size) this.hooks.gap(c, this.last.get(c) ?? 0);
    }
  }

  /** This user's own send was stored at `seq`: that slot is filled. */
  ownSend(conv: number, seq: number): void {
    const last = this.last.get(conv) ?? 0;
    if (seq <= last) return;
    if (seq === last + 1) {
      this.last.set(conv, seq);
      this.drain(conv);
      return;
    }
    let own = this.own.get(conv);
    if (!own) this.own.set(conv, (own = new Set()));
    own.add(seq);
  }

  /**
   * The server's answer to a gap: everything it has after the gap. Whatever is
   * still missing afterwards does not exist, so the conversation moves past it.
   */
  filled(conv: number, messages: WireMessage[]): void {
    for (const m of messages) this.receive(m);
    const waiting = this.waiting.get(conv);
    while (waiting && waiting.size > 0) {
      const next = Math.min(...waiting.keys());
      this.last.set(conv, next - 1);
      this.drain(conv);
    }
  }

  /** Conversations with messages waiting behind a gap. */
  gaps(): { conv: number; after: number }[] {
    return [...this.waiting]
      .filter(([, w]) => w.size > 0)
      .map(([conv]) => ({ conv, after: this.last.get(conv) ?? 0 }));
  }

  stop(): void {
    for (const t of this.timers.values()) clearTimeout(t);
    this.timers.clear();
    this.deferred.clear();
  }

  /** The gap waited its time: fetched, unless own unanswered sends can account for every missing number. */
  private gapTimedOut(conv: number): void {
    const waiting = this.waiting.get(conv);
    if (!waiting?.size) return;
    const last = this.last.get(conv) ?? 0;
    const highest = Math.max(...waiting.keys());
    const own = this.own.get(conv);
    let ownInGap = 0;
    for (const seq of own ?? []) if (seq > last && seq < highest) ownInGap++;
    const missing = highest - last - waiting.size - ownInGap;
    const upTo = this.tokens;
    if (missing > 0 && this.explaining(conv, upTo) >= missing) {
      this.deferred.set(conv, upTo);
      return;
    }
    this.hooks.gap(conv, last);
  }

  /** Own unanswered sends, up to a token, that may have been stored in this conversation. */
  private explaining(conv: number, upTo: number): number {
    let n = 0;
    for (const [token, c] of this.unanswered) if (token <= upTo && (c === undefined || c === conv)) n++;
    return n;
  }

  private advance(conv: number, message: WireMessage): void {
    this.last.set(conv, message.seq);
    this.hooks.emit(message);
    this.drain(conv);
  }

  private drain(conv: number): void {
    const waiting = this.waiting.get(conv);
    const own = this.own.get(conv);
    for (;;) {
      const next = (this.last.get(conv) ?? 0) + 1;
      const message = waiting?.get(next);
      if (message) {
        waiting!.delete(next);
        this.last.set(conv, next);
        this.hooks.emit(message);
      } else if (own?.has(next)) {
        own.delete(next);
        this.last.set(conv, next);
      } else {
        return;
      }
    }
  }
}

function targetOf(args: { to?: unknown; group?: unknown }): string {
  return args.group !== undefined ? `g:${String(args.group)}` : `u:${String(args.to)}`;
}
