/**
 * The load one worker generates and what it observes. Open loop: message i is
 * due at start + i/rate whatever happened before, and its latency counts from
 * that moment, so a stall shows as the latency it caused rather than as a pause
 * in sending (no coordinated omission). Closed loop (--rate max): each client
 * keeps `window` messages in flight. Every message's client id carries the run,
 * the sender, its number and when it was due, so whichever worker receives it
 * can measure the delivery and tell a duplicate from a loss.
 */
import { pack } from "msgpackr";
import { seal, open } from "../crypto/envelope";
import type { PublicIdentity } from "../crypto/keys";
import { ChatError } from "../protocol/errors";
import type { WireMessage } from "../protocol/messages";
import { Bitmap, encodeMap } from "./bitmap";
import { nowMs, nowUs } from "./clock";
import { encodeHistogram, newHistogram } from "./hist";
import type { SimClient } from "./client";
import type { Tick, WorkerResult, WorkerSetup, WorkerStart } from "./messages";
import { groupMembers, groupName, groupOf, placementOf, sends, target, type Population } from "./patterns";

const TEXT = pack({ kind: "text", text: "x".repeat(100) });
const [ZERO, ONE, NINE, D] = ["0", "1", "9", "d"].map((ch) => ch.charCodeAt(0)) as [number, number, number, number];

export class Load {
  readonly clients = new Map<number, SimClient>();
  readonly epochs = new Map<number, number>();
  keys = new Map<string, PublicIdentity>();
  private pop: Population;
  private readonly body: Uint8Array;
  /** Messages sent so far, by client index: the next one's number. */
  private readonly counters: number[] = [];
  private readonly names: string[] = [];
  private readonly groupNames: string[] = [];
  private readonly groupSizes: number[] = [];
  private measureFrom = Infinity;
  private endAt = Infinity;
  private inflight = 0;
  // Over the measured window, and over the whole run.
  private sent = 0;
  private acked = 0;
  private delivered = 0;
  private sentAll = 0;
  private ackedAll = 0;
  private deliveredAll = 0;
  private duplicates = 0;
  private readonly errors: Record<string, number> = {};
  private readonly ackHist = newHistogram();
  private readonly deliveryHist = newHistogram();
  /** Due → handed to its connection, for each measured send. */
  private readonly lagHist = newHistogram();
  // This interval, for the time series.
  private tick = { sent: 0, acked: 0, delivered: 0, errors: 0, ackHist: newHistogram(), deliveryHist: newHistogram() };
  private readonly ackedDm = new Map<number, Bitmap>();
  private readonly ackedGroup = new Map<number, Bitmap>();
  private readonly recvDm = new Map<number, Bitmap>();
  private readonly recvGroup = new Map<string, Bitmap>();
  private expected = 0;

  constructor(readonly setup: WorkerSetup) {
    this.pop = { clients: setup.clients, groupSize: setup.groupSize, contacts: setup.contacts, partners: setup.partners };
    this.body = crypto.getRandomValues(new Uint8Array(setup.size));
  }

  /** Client i's name, made once: it is in every message sent to it. */
  name(i: number): string {
    return (this.names[i] ??= `${this.setup.prefix}${i}`);
  }

  /** Group g's name; with --mls, one made for this run (bench clients keep no MLS state between runs). */
  groupName(g: number): string {
    const cached = this.groupNames[g];
    if (cached !== undefined) return cached;
    const name = groupName(this.setup.prefix, g, this.setup.groupSize);
    return (this.groupNames[g] = this.setup.mls ? `${name}.${this.setup.run.slice(0, 6)}` : name);
  }

  /** Runs the load from start.at for warm-up plus duration; resolves when every send has its answer. */
  async run(start: WorkerStart, emit: (tick: Tick) => void): Promise<number> {
    this.pop = { ...this.pop, ...placementOf(this.setup.clients, start.placement) };
    this.measureFrom = start.at + start.warmupMs;
    this.endAt = this.measureFrom + start.durationMs;
    const senders = [...this.clients.values()].filter((c) => sends(this.setup.pattern, c.index, this.setup.clients));
    this.startTicks(start, emit);
    while (nowMs() < start.at) await Bun.sleep(Math.max(0, Math.min(5, start.at - nowMs())));
    if (senders.length > 0 && !this.setup.idle) {
      if (this.setup.rate === null) await this.closedLoop(senders);
      else await this.openLoop(senders, this.setup.rate, start.at);
    }
    const deadline = nowMs() + 35_000;
    while (this.inflight > 0 && nowMs() < deadline) await Bun.sleep(5);
    return this.expected;
  }

  private openLoop(senders: SimClient[], rate: number, at: number): Promise<void> {
    const interval = 1000 / rate;
    let next = 0;
    return new Promise((done) => {
      const pump = () => {
        const until = Math.min(nowMs(), this.endAt);
        for (;;) {
          const due = at + next * interval;
          if (due >= until) break;
          void this.fire(senders[next % senders.length]!, due);
          next++;
        }
        // Woken for the next one due, not every millisecond (a timer per worker either way): at
        // 200 msg/s the 1 ms poll was 2 of the load generator's 16% of a core.
        if (nowMs() < this.endAt) setTimeout(pump, Math.max(1, at + next * interval - nowMs()));
        else done();
      };
      pump();
    });
  }

  private async closedLoop(senders: SimClient[]): Promise<void> {
    const lane = async (client: SimClient) => {
      while (nowMs() < this.endAt && !client.link.closed) await this.fire(client, nowMs());
    };
    await Promise.all(senders.flatMap((c) => Array.from({ length: this.setup.window }, () => lane(c))));
  }

  private fire(client: SimClient, due: number): Promise<void> {
    const n = this.counters[client.index] ?? 0;
    this.counters[client.index] = n + 1;
    const t = target(this.setup.pattern, client.index, this.pop);
    const dueUs = Math.round(due * 1000);
    const measured = due >= this.measureFrom && due < this.endAt;
    // The sender decides what counts as measured, so that every worker agrees.
    const cmid = `${this.setup.run}.${t.kind}${client.index}.${n}.${dueUs}.${measured ? 1 : 0}`;
    const args: Record<string, unknown> =
      t.kind === "d"
        ? { to: this.name(t.to), cmid, body: this.setup.e2e ? this.sealFor(client, [t.to], `dm:${[client.name, this.name(t.to)].sort().join(":")}`, cmid) : this.body }
        : {
            group: this.groupName(t.group),
            cmid,
            epoch: this.epochs.get(t.group) ?? 0,
            body: this.setup.mls ? new Uint8Array() : this.setup.e2e ? this.sealFor(client, groupMembers(t.group, this.pop), `group:${this.groupName(t.group)}`, cmid) : this.body,
          };
    // with --mls the body is encrypted first (in order: the group's encryptions run one at a time, in the order asked)
    const sealed = this.setup.mls && t.kind === "g" ? client.mls!.seal(this.groupName(t.group), cmid, TEXT).then((body) => ({ ...args, body })) : undefined;
    this.sentAll++;
    this.tick.sent++;
    if (measured) {
      this.sent++;
      // How late this worker is in sending it: the load generator's own share of every latency it measures.
      this.lagHist.recordValue(Math.max(0, nowUs() - dueUs));
    }
    this.inflight++;
    return (sealed ? sealed.then((a) => client.send(a)) : client.send(args)).then(
      () => {
        this.inflight--;
        const latency = nowUs() - dueUs;
        this.ackedAll++;
        this.tick.acked++;
        this.tick.ackHist.recordValue(latency);
        if (measured) {
          this.acked++;
          this.ackHist.recordValue(latency);
        }
        if (t.kind === "d") {
          bitmap(this.ackedDm, client.index).set(n);
          this.expected++;
        } else {
          bitmap(this.ackedGroup, client.index).set(n);
          this.expected += this.groupSizeOf(t.group) - 1;
        }
      },
      (error) => {
        this.inflight--;
        const code = error instanceof ChatError ? error.code : "E_INTERNAL";
        this.errors[code] = (this.errors[code] ?? 0) + 1;
        this.tick.errors++;
      },
    );
  }

  /** Members of group g, counted once: a group send's expected deliveries. */
  private groupSizeOf(g: number): number {
    return (this.groupSizes[g] ??= groupMembers(g, this.pop).length);
  }

  /** With --e2e, the body is a real envelope sealed to every recipient and signed. */
  private sealFor(client: SimClient, members: number[], conv: string, cmid: string): Uint8Array {
    const recipients = members.filter((i) => i !== client.index).map((i) => ({ name: this.name(i), dh: this.keys.get(this.name(i))!.dh }));
    return seal({ header: { v: 1, from: client.name, conv, cmid, sentAt: Date.now(), kind: "text" }, plaintext: TEXT, sender: client.keys!, recipients });
  }

  /** A message reached one of our clients. */
  receive(client: SimClient, m: WireMessage): void {
    const cmid = m.cmid;
    if (this.setup.mls && client.mls && m.group !== undefined) {
      // every MLS message is taken in, in order (a commit brings the welcome); the run's are then counted
      void client.mls.open(m).then(
        (opened) => {
          if (opened === "control" || typeof cmid !== "string" || !cmid.startsWith(this.setup.run)) return;
          if (opened === "failed") this.errors.E_DECRYPT = (this.errors.E_DECRYPT ?? 0) + 1;
          else this.counted(client, m);
        },
        () => (this.errors.E_DECRYPT = (this.errors.E_DECRYPT ?? 0) + 1),
      );
      return;
    }
    if (typeof cmid !== "string" || !cmid.startsWith(this.setup.run)) return; // another run's, replayed at login
    if (this.setup.e2e) {
      const from = this.name(Number(cmid.split(".")[1]!.slice(1)));
      try {
        open({ envelope: new Uint8Array(m.body), me: { name: client.name, keys: client.keys! }, senderSign: this.keys.get(from)!.sign, expect: { from } });
      } catch {
        this.errors.E_DECRYPT = (this.errors.E_DECRYPT ?? 0) + 1;
        return;
      }
    }
    this.counted(client, m);
  }

  /** A message of this run, read: counted once (a duplicate is told apart), with its delivery latency. */
  private counted(client: SimClient, m: WireMessage): void {
    const now = nowUs();
    // The client message id, "run.<d|g><sender>.<n>.<due µs>.<measured>" (fire()), read in place: no split, no
    // strings. Each number ends at the first non-digit (its dot, or the end: a cut id cannot loop).
    const c = m.cmid!;
    let at = this.setup.run.length + 1;
    const kind = c.charCodeAt(at++);
    let sender = 0;
    for (let d = c.charCodeAt(at++); d >= ZERO && d <= NINE; d = c.charCodeAt(at++)) sender = sender * 10 + d - ZERO;
    let num = 0;
    for (let d = c.charCodeAt(at++); d >= ZERO && d <= NINE; d = c.charCodeAt(at++)) num = num * 10 + d - ZERO;
    let dueUs = 0;
    for (let d = c.charCodeAt(at++); d >= ZERO && d <= NINE; d = c.charCodeAt(at++)) dueUs = dueUs * 10 + d - ZERO;
    const measured = c.charCodeAt(at) === ONE;
    const fresh = kind === D ? bitmap(this.recvDm, sender).set(num) : bitmap(this.recvGroup, `${client.index}:${sender}`).set(num);
    if (!fresh) {
      this.duplicates++;
      return;
    }
    const latency = Math.max(0, now - dueUs);
    this.deliveredAll++;
    this.tick.delivered++;
    this.tick.deliveryHist.recordValue(latency);
    if (measured) {
      this.delivered++;
      this.deliveryHist.recordValue(latency);
    }
  }

  private startTicks(start: WorkerStart, emit: (tick: Tick) => void): void {
    let k = 0;
    const timer = setInterval(() => {
      const t = this.tick;
      this.tick = { sent: 0, acked: 0, delivered: 0, errors: 0, ackHist: newHistogram(), deliveryHist: newHistogram() };
      emit({
        type: "tick",
        worker: this.setup.worker,
        k: k++,
        sent: t.sent,
        acked: t.acked,
        delivered: t.delivered,
        errors: t.errors,
        deliveredTotal: this.deliveredAll,
        ackHist: encodeHistogram(t.ackHist),
        deliveryHist: encodeHistogram(t.deliveryHist),
      });
      t.ackHist.destroy();
      t.deliveryHist.destroy();
    }, start.tickMs);
    this.stopTicks = () => clearInterval(timer);
  }

  stopTicks = () => {};

  result(): WorkerResult {
    this.stopTicks();
    return {
      type: "result",
      worker: this.setup.worker,
      sent: this.sent,
      acked: this.acked,
      delivered: this.delivered,
      sentAll: this.sentAll,
      ackedAll: this.ackedAll,
      deliveredAll: this.deliveredAll,
      duplicates: this.duplicates,
      errors: this.errors,
      ackHist: encodeHistogram(this.ackHist),
      deliveryHist: encodeHistogram(this.deliveryHist),
      lagHist: encodeHistogram(this.lagHist),
      ackedDm: encodeMap(this.ackedDm),
      ackedGroup: encodeMap(this.ackedGroup),
      recvDm: encodeMap(this.recvDm),
      recvGroup: encodeMap(this.recvGroup),
    };
  }

  /** The groups this worker's clients belong to. */
  groups(): number[] {
    return [...new Set([...this.clients.keys()].map((i) => groupOf(i, this.setup.groupSize)))];
  }
}

function bitmap<K>(map: Map<K, Bitmap>, key: K): Bitmap {
  let b = map.get(key);
  if (!b) map.set(key, (b = new Bitmap()));
  return b;
}
