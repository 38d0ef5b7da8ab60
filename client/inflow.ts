/**
 * Messages coming in, before anyone reads them: each conversation's order is
 * restored (./sequencer.ts), a gap that delivery does not fill is fetched page
 * by page, and each message is handed on once, one at a time, in order. The
 * replay after a login is watched for silence: it has no deadline of its own,
 * since it takes as long as the backlog takes to cross the link.
 */
import { ChatError } from "../protocol/errors";
import type { WireMessage } from "../protocol/messages";
import type { LaneLink } from "./lanes";
import { Sequencer } from "./sequencer";
import { joinsMe } from "./system";

/** A replay with no message for this long is taken for a dead link. */
const SYNC_SILENCE_MS = 30_000;
/** Messages asked for at a time when a gap is filled. */
const FETCH_PAGE = 1000;
/** Refusals with a retry-after (a busy server's read admission) that one page waits out before the gap is left to the next replay. */
const PAGE_REFUSALS = 20;

/** What the inflow needs around it. */
export interface InflowParts {
  user: string;
  /** One message in order, seen for the first time. */
  deliver(message: WireMessage): Promise<void>;
  /** A request on the current link (a fetch that fails waits for the next replay). */
  request(op: string, args: Record<string, unknown>): Promise<Record<string, unknown>>;
  /** Where each conversation stood on this device at the start. */
  positions: Iterable<[number, { received: number }]>;
}

/** What the send lanes tell the ordering about one's own sends. */
export type OwnSends = Pick<LaneLink, "stored" | "sending" | "answered">;

export class Inflow {
  private readonly sequencer: Sequencer;
  /** The last message handed on: the next waits for it. */
  private reveals: Promise<void> = Promise.resolve();
  /** Messages received, on any link: a replay that goes quiet for too long is given up. */
  private arrivals = 0;
  readonly own: OwnSends;

  constructor(private readonly parts: InflowParts) {
    this.sequencer = new Sequencer({
      emit: (m) => (this.reveals = this.reveals.then(() => this.parts.deliver(m))),
      gap: (conv, after) => void this.fill(conv, after),
    });
    for (const [conv, { received }] of parts.positions) this.sequencer.position(conv, received);
    this.own = {
      stored: (conv, seq) => this.sequencer.ownSend(conv, seq),
      sending: (args) => this.sequencer.sending(args),
      answered: (token, args, conv) => this.sequencer.answered(token, args, conv),
    };
  }

  /** A message from the server, in whatever order it came. */
  receive(frame: WireMessage): void {
    this.arrivals++;
    const message = bytesOf(frame);
    // A group we were just added to starts at the system message that added us.
    // Anything else in a conversation new to us waits for that line (or a fetch).
    if (!this.sequencer.knows(message.conv) && joinsMe(message, this.parts.user)) this.sequencer.position(message.conv, message.seq - 1);
    this.sequencer.receive(message);
  }

  /** The server's cursors at a login: nothing at or before them is handed on again. */
  startAt(cursors: Record<string, number>): void {
    for (const [conv, seq] of Object.entries(cursors)) this.sequencer.position(Number(conv), seq);
  }

  /** The last position handed on in each conversation. */
  positions(): Record<number, number> {
    return this.sequencer.positions();
  }

  /** Resolves when every message received so far has been handed on (and its handling finished). */
  async idle(): Promise<void> {
    let seen: Promise<void>;
    do {
      seen = this.reveals;
      await seen;
    } while (seen !== this.reveals);
  }

  /**
   * Waits for a replay's answer; `drop` closes its link when no message came
   * for two checks in a row (after a SIGSTOP the first check may run before
   * the data waiting in the socket is read).
   */
  async replayed(sync: Promise<unknown>, drop: () => void): Promise<void> {
    let seen = this.arrivals;
    let silent = 0;
    const watchdog = setInterval(() => {
      silent = this.arrivals === seen ? silent + 1 : 0;
      seen = this.arrivals;
      if (silent >= 2) drop();
    }, SYNC_SILENCE_MS / 2);
    try {
      await sync;
    } finally {
      clearInterval(watchdog);
    }
  }

  /** After a replay: every gap still open is fetched. */
  async fillGaps(): Promise<void> {
    for (const { conv, after } of this.sequencer.gaps()) await this.fill(conv, after);
  }

  stop(): void {
    this.sequencer.stop();
  }

  /** Fetches everything after a gap, page by page, before the sequencer may move past what is missing. */
  private async fill(conv: number, after: number): Promise<void> {
    try {
      const all: WireMessage[] = [];
      for (let from = after; ; ) {
        const page = (await this.page(conv, from)).messages as WireMessage[];
        all.push(...page.map(bytesOf));
        // Pages are bounded in bytes too: only an empty one means the end.
        if (page.length === 0) break;
        from = page[page.length - 1]!.seq;
      }
      this.sequencer.filled(conv, all);
    } catch {
      // Not connected: the replay after the reconnect fills the gap.
    }
  }

  /** One page of a gap; a server that says "later" (E_RATE_LIMITED) is asked again when it said. */
  private async page(conv: number, after: number): Promise<Record<string, unknown>> {
    for (let refused = 0; ; refused++) {
      try {
        return await this.parts.request("fetch", { conv, after, limit: FETCH_PAGE });
      } catch (error) {
        if (!(error instanceof ChatError) || error.code !== "E_RATE_LIMITED" || refused >= PAGE_REFUSALS) throw error;
        await Bun.sleep(Math.min(error.retryAfterMs ?? 1000, 30_000));
      }
    }
  }
}

/** A message with a body of its own: a copy, not a view into the frame it came in. */
export function bytesOf(m: WireMessage): WireMessage {
  return { ...m, body: new Uint8Array(m.body) };
}
