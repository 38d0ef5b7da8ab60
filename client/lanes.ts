/**
 * Sends on their way to the server, one lane per conversation: only the
 * oldest send of a lane is on the wire, so a later send never overtakes an
 * earlier one that failed and is being retried, and one sender's messages are
 * stored in order. A send stays pending until the server stores it (or
 * refuses it for good) and goes out again, with the same client message id,
 * after a reconnect: a retry never makes a second message.
 */
import { ChatError, isTemporary } from "../protocol/errors";

export interface SendResult {
  msg: number;
  conv: number;
  seq: number;
  at: number;
  duplicate: boolean;
}

export interface PendingSend {
  args: { to?: string; group?: string; epoch?: number; cmid: string; body: Uint8Array };
  resolve(result: SendResult): void;
  reject(error: unknown): void;
  inFlight: boolean;
  /** The conversation it goes to, as the sender names it: sends in one lane go one at a time. */
  lane: string;
}

/** What the lanes need of the connection under them. */
export interface LaneLink {
  connected(): boolean;
  request(op: string, args: Record<string, unknown>): Promise<Record<string, unknown>>;
  /** The server stored a send at this position: the device's ordering may move past it. */
  stored(conv: number, seq: number): void;
  /** A send goes on the wire: the sequencer waits for its answer before it fetches a gap the send may explain. */
  sending(args: PendingSend["args"]): number;
  /** Its answer came (with the conversation it went to, when stored). */
  answered(token: number, args: PendingSend["args"], conv?: number): void;
}

function laneOf(args: PendingSend["args"]): string {
  return args.group !== undefined ? `g:${args.group}` : `u:${args.to}`;
}

export class SendLanes {
  private readonly pending = new Map<string, PendingSend>();
  /** Per conversation, the sends not yet settled, oldest first; only the first is on the wire. */
  private readonly lanes = new Map<string, PendingSend[]>();

  constructor(private readonly link: LaneLink) {}

  send(args: PendingSend["args"]): Promise<SendResult> {
    return new Promise((resolve, reject) => {
      const p: PendingSend = { args, resolve, reject, inFlight: false, lane: laneOf(args) };
      this.pending.set(args.cmid, p);
      const lane = this.lanes.get(p.lane);
      if (lane) {
        lane.push(p);
      } else {
        this.lanes.set(p.lane, [p]);
        this.transmit(p);
      }
    });
  }

  /** Sends not yet settled. */
  get size(): number {
    return this.pending.size;
  }

  /** Connected again: the first send of every lane goes out (again). */
  resume(): void {
    for (const lane of this.lanes.values()) this.transmit(lane[0]!);
  }

  /** The session ended for good: every send still pending fails with its reason. */
  fail(error: ChatError): void {
    for (const p of this.pending.values()) p.reject(error);
    this.pending.clear();
    this.lanes.clear();
  }

  /** A send is settled (stored, or refused for good): the next one of its conversation goes out. */
  private settle(p: PendingSend): void {
    this.pending.delete(p.args.cmid);
    const lane = this.lanes.get(p.lane);
    if (!lane) return;
    const at = lane.indexOf(p);
    if (at >= 0) lane.splice(at, 1);
    if (lane.length === 0) this.lanes.delete(p.lane);
    else if (at === 0) this.transmit(lane[0]!);
  }

  private transmit(p: PendingSend): void {
    if (!this.link.connected() || p.inFlight) return;
    p.inFlight = true;
    const token = this.link.sending(p.args);
    this.link.request("send", p.args).then(
      (reply) => {
        const result = reply as unknown as SendResult;
        this.link.stored(result.conv, result.seq);
        this.link.answered(token, p.args, result.conv);
        this.settle(p);
        p.resolve(result);
      },
      (error: ChatError) => {
        this.link.answered(token, p.args);
        p.inFlight = false;
        if (error instanceof ChatError && error.code === "E_RATE_LIMITED" && error.retryAfterMs !== undefined) {
          // The server's allowance for this user is spent: the same send, same id, once it says there is room (capped at a minute).
          setTimeout(() => this.transmit(p), Math.min(60_000, error.retryAfterMs));
          return;
        }
        if (error instanceof ChatError && isTemporary(error.code)) {
          // Stays pending, first in its lane: sent again, with the same id, once connected.
          if (this.link.connected()) setTimeout(() => this.transmit(p), 200);
          return;
        }
        this.settle(p);
        p.reject(error);
      },
    );
  }
}
