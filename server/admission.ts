/**
 * Server-wide admission of sends (issue 14). Each user's allowance
 * (server/limits.ts) bounds one account, but a hundred accounts each within
 * theirs are more than one server stores while leaving its other users a core.
 * So while the server is past what it can carry, a send from a user taking
 * more than their fair share is refused with E_RATE_LIMITED and a retry-after
 * (server/limits.ts; the listener holds the connection to it); someone sending
 * at a person's pace is never refused here.
 *
 * "Past what it can carry" is any of the signals configured: the event loop
 * running late (what every neighbour's message waits behind), the committer's
 * queue (sends waiting for a group commit), the time sends lately took from
 * the committer to their commit (what a neighbour's send waits, seen before
 * the loop itself is late), or the admitted rate over a fixed server-wide
 * budget. It holds for a moment after the last signal, so that refusing does
 * not switch on and off with each sample.
 *
 * Large reads (history, fetch, file chunks) are admitted under the same
 * pressure: a user reading more than a person does (READ_LIGHT_RATE pages a
 * second) is refused until their rate falls to it, while the server is past
 * what it can carry or its read slots are all taken (`readsWaiting`).
 *
 * The fair share is max-min: a level such that the users below it keep their
 * whole rate and those above get the level, within a capacity. The capacity is
 * the fixed budget, or, without one, half the rate admitted when the pressure
 * began, cut further for every moment the pressure lasts: the heavy senders come
 * down until the server keeps up, the light ones are never brought below
 * their own rate by the heavy ones.
 */

/** What admission reads about the server's load; each is cheap to ask at every send. */
export interface Pressure {
  /** How late the event loop ran lately, in milliseconds. */
  lagMs(): number;
  /** Sends waiting for a group commit. */
  queued(): number;
  /** Large reads waiting for a server-wide slot, or 1 if every slot is taken and none waits yet (server/limits.ts); 0 when not told. */
  readsWaiting?(): number;
}

export interface AdmissionConfig {
  /** Sends a second the server admits from everyone before the heaviest wait (0: no fixed budget). */
  admissionRate: number;
  /** A loop running later than this means the server is past what it can carry (0: not a signal). */
  admissionLagMs: number;
  /** More sends than this waiting for a commit means the same (0: not a signal). */
  admissionQueue: number;
  /** A send that lately waited longer than this from the committer to its commit means the same (0: not a signal). */
  admissionCommitMs: number;
}

/** How long a rate estimate remembers: a send counts e^(-age/τ), so the sum is about a rate a second. */
const TAU_MS = 1000;
/**
 * At or below this many sends a second a user is light: never refused here,
 * whatever the share. The default per-user rate: under pressure, what is cut
 * is bursts and raised allowances (bots), never a pace the server allows
 * everyone (a squeeze down to 5 a second refused the bench's neighbours, who
 * send 10 a second, on a loaded machine).
 */
export const LIGHT_RATE = 10;
/**
 * Large read pages a second that a person's client does not pass: a screen of
 * history, or a gap filled page after page. Above it, under pressure, reads wait.
 */
export const READ_LIGHT_RATE = 10;
/** How long the slowest commit wait counts: the signal reads the worst of the last two windows of this length. */
const COMMIT_WINDOW_MS = 100;
/** A refused user waits until their rate has fallen to the level, within these bounds. */
const MIN_RETRY_MS = 250;
const MAX_RETRY_MS = 5000;
/** Users not seen for this long are forgotten: a send's weight is e^-3 (5%) by then, no longer "active". */
const FORGET_MS = 3 * TAU_MS;
/** The level is worked out again this often (it sorts the active users' rates). */
const RECOMPUTE_MS = 100;
/** While no pressure is known, a queue past its depth is looked at again this soon, not RECOMPUTE_MS later. */
const QUICK_RECOMPUTE_MS = 2;
/** Refusing goes on this long after the last signal. */
const HOLD_MS = 1000;
/**
 * A new episode starts from this share of what was being admitted (the load
 * that caused the pressure is often a burst), and while a signal lasts the
 * capacity falls by SQUEEZE at each recompute (to a third in a second): with a
 * gentler 3% a step, 300 accounts spent their 500-message bursts before the
 * level came down to them (bench/hostile.ts --only sender).
 */
const FIRST_CUT = 0.5;
const SQUEEZE = 0.9;

/** An exponentially decaying count of events: its value is about the events of the last τ. */
interface Rate {
  value: number;
  at: number;
}

function decayed(r: Rate, now: number): number {
  return r.value * Math.exp(-(now - r.at) / TAU_MS);
}

function bump(r: Rate, now: number): void {
  r.value = decayed(r, now) + 1000 / TAU_MS;
  r.at = now;
}

/** One more for this user in `rates`, from now. */
function count(rates: Map<number, Rate>, userId: number, now: number): void {
  const mine = rates.get(userId);
  if (mine) return bump(mine, now);
  const r = { value: 0, at: now };
  bump(r, now);
  rates.set(userId, r);
}

/** Milliseconds until a rate decays to `level` (rate · e^(-t/τ) = level), within the bounds a refusal names. */
function waitUntil(rate: number, level: number): number {
  return Math.ceil(Math.min(MAX_RETRY_MS, Math.max(MIN_RETRY_MS, TAU_MS * Math.log(rate / level))));
}

/** The max-min fair level: users below it keep their rate, those above get it, and the sum is `capacity`. */
export function waterLevel(rates: number[], capacity: number): number {
  const sorted = [...rates].sort((a, b) => a - b);
  let left = capacity;
  for (let i = 0; i < sorted.length; i++) {
    const even = left / (sorted.length - i);
    if (sorted[i]! >= even) return even;
    left -= sorted[i]!;
  }
  // Everyone fits: nobody is above the level.
  return Infinity;
}

export class Admission {
  private readonly users = new Map<number, Rate>();
  private readonly readers = new Map<number, Rate>();
  /** The slowest commit wait seen in this window and the one before (COMMIT_WINDOW_MS each). */
  private commitWait = { now: 0, before: 0, windowAt: -Infinity };
  private readonly total: Rate = { value: 0, at: 0 };
  private sweptAt = -Infinity;
  private computedAt = -Infinity;
  private lastSignalAt = -Infinity;
  /** The capacity learned when the pressure began (without a fixed budget). */
  private capacity = Infinity;
  private cachedLevel = Infinity;
  /** Refusals so far. */
  refused = 0;

  constructor(
    private readonly config: AdmissionConfig,
    private readonly pressure: Pressure,
    private readonly now: () => number = () => performance.now(),
  ) {}

  private signal(now: number): boolean {
    const { admissionRate, admissionLagMs, admissionCommitMs } = this.config;
    return (
      (admissionRate > 0 && decayed(this.total, now) > admissionRate) ||
      (admissionLagMs > 0 && this.pressure.lagMs() > admissionLagMs) ||
      this.queueSignal() ||
      (admissionCommitMs > 0 && this.slowestCommit(now) > admissionCommitMs)
    );
  }

  private queueSignal(): boolean {
    return this.config.admissionQueue > 0 && this.pressure.queued() > this.config.admissionQueue;
  }

  /** A send took this long from the committer to its commit (the send route tells every one: a comparison and a store). */
  committed(waitMs: number, now = this.now()): void {
    const w = this.commitWait;
    if (now - w.windowAt >= COMMIT_WINDOW_MS) {
      // A window with no sends at all since counts as nothing.
      w.before = now - w.windowAt < 2 * COMMIT_WINDOW_MS ? w.now : 0;
      w.now = 0;
      w.windowAt = now;
    }
    if (waitMs > w.now) w.now = waitMs;
  }

  private slowestCommit(now: number): number {
    const w = this.commitWait;
    if (now - w.windowAt >= 2 * COMMIT_WINDOW_MS) return 0;
    return now - w.windowAt >= COMMIT_WINDOW_MS ? w.now : Math.max(w.now, w.before);
  }

  /** The rate above which a user is refused now (Infinity while the server keeps up). */
  level(now = this.now()): number {
    // A backlog that forms within one turn of the loop (a thousand pipelines read at once) is seen at
    // once rather than at the next recompute: the queue's depth is cheap to read at every send.
    const backlog = this.cachedLevel === Infinity && now - this.computedAt >= QUICK_RECOMPUTE_MS && this.queueSignal();
    if (now - this.computedAt < RECOMPUTE_MS && !backlog) return this.cachedLevel;
    this.computedAt = now;
    this.sweep(now);
    const signal = this.signal(now);
    const total = decayed(this.total, now);
    if (signal) {
      // A new episode learns what was being admitted; a lasting one squeezes it.
      this.capacity = now - this.lastSignalAt > HOLD_MS ? total * FIRST_CUT : Math.min(this.capacity, total) * SQUEEZE;
      this.lastSignalAt = now;
    }
    if (now - this.lastSignalAt > HOLD_MS) return (this.cachedLevel = Infinity);
    const capacity = this.config.admissionRate > 0 ? this.config.admissionRate : this.capacity;
    const rates = [...this.users.values()].map((r) => decayed(r, now));
    return (this.cachedLevel = Math.max(LIGHT_RATE, waterLevel(rates, capacity)));
  }

  /** Whether the server is past what it can carry now (a signal lately, within the hold). */
  pressed(now = this.now()): boolean {
    this.level(now);
    return now - this.lastSignalAt <= HOLD_MS;
  }

  /** Admits one send of this user (0), or returns how many milliseconds they are to wait. */
  admit(userId: number): number {
    const now = this.now();
    const mine = this.users.get(userId);
    const rate = mine ? decayed(mine, now) : 0;
    if (rate > LIGHT_RATE && this.enabled) {
      const level = this.level(now);
      if (rate > level) {
        this.refused++;
        return waitUntil(rate, level);
      }
    }
    count(this.users, userId, now);
    bump(this.total, now);
    return 0;
  }

  /**
   * Admits one large read of this user (0), or returns how many milliseconds
   * they are to wait: refused only above READ_LIGHT_RATE, and only while the
   * server is past what it can carry or every read slot is taken.
   */
  admitRead(userId: number): number {
    const now = this.now();
    const mine = this.readers.get(userId);
    const rate = mine ? decayed(mine, now) : 0;
    this.sweep(now);
    if (rate > READ_LIGHT_RATE && this.enabled) {
      const busy = this.pressed(now) || (this.pressure.readsWaiting?.() ?? 0) > 0;
      if (busy) {
        this.refusedReads++;
        return waitUntil(rate, READ_LIGHT_RATE);
      }
    }
    count(this.readers, userId, now);
    return 0;
  }

  /** Reads refused so far. */
  refusedReads = 0;

  private get enabled(): boolean {
    const c = this.config;
    return c.admissionRate > 0 || c.admissionLagMs > 0 || c.admissionQueue > 0 || c.admissionCommitMs > 0;
  }

  /** Users who sent lately. */
  get active(): number {
    this.sweep(this.now());
    return this.users.size;
  }

  /** Forgets users whose rate has decayed to nothing, at most once a τ. */
  private sweep(now: number): void {
    if (now - this.sweptAt < TAU_MS) return;
    this.sweptAt = now;
    for (const [id, r] of this.users) if (now - r.at > FORGET_MS) this.users.delete(id);
    for (const [id, r] of this.readers) if (now - r.at > FORGET_MS) this.readers.delete(id);
  }
}
