/**
 * The send path's one MLS check: an application message from an epoch older
 * than the conversation's (the server learns each conversation's epoch at
 * mls.commit) is refused with E_MLS_STALE_EPOCH, since a member the newer
 * commit added cannot read it and one it removed could. The epoch is read from
 * the message's clear header. A conversation's MLS sends are checked and
 * handed on in the order they came, so a connection's order is kept; anything
 * else goes straight on. The check and the append are not one transaction:
 * a send checked just before a commit is stored can land just after it
 * (PROTOCOL.md, "the race between a send and a commit").
 */
import { clearEpoch } from "../crypto/mls/wire.ts";
import { ChatError } from "../protocol/errors";

/** client/mls/body.ts: 0x4D ('M'), then 1 for an application message. */
const MLS_MAGIC = 0x4d;
const APPLICATION = 1;
/** RFC 9420 ContentType application(1). */
const CONTENT_APPLICATION = 1;

/** The MLS epoch of a body that is an MLS application message, else undefined. */
export function applicationEpoch(body: Uint8Array): bigint | undefined {
  if (body.length < 3 || body[0] !== MLS_MAGIC || body[1] !== APPLICATION) return undefined;
  const header = clearEpoch(body.subarray(2));
  return header?.contentType === CONTENT_APPLICATION ? header.epoch : undefined;
}

/** What the gate asks of the cluster around it. */
export interface EpochSources {
  /** The database's word: what a cold or uncertain cache reads. */
  epochOf(convId: number): Promise<number>;
  /** Told of every commit this server stores: the other servers hear it (a peer event) and update their cache. */
  announce?(convId: number, epoch: number): void;
  /**
   * Whether every server that could store a commit is linked to this one, so that
   * its announcements arrive; while not, every MLS send reads the database.
   */
  linked?(): boolean;
}

export class EpochGate {
  private readonly tails = new Map<number, Promise<unknown>>();
  /** One read of a conversation's epoch at a time, shared by the sends that wait on it. */
  private readonly reading = new Map<number, Promise<number>>();
  /**
   * Each conversation's epoch as this server knows it for certain: read once
   * from the database, then moved by this server's commits and by the peers'
   * announcements of theirs. Emptied whenever an announcement may have been
   * lost (a peer's link opened or closed), so a cold or uncertain entry is read again.
   */
  private readonly known = new Map<number, number>();
  /** Grows at every forget(): a read that started before it must not fill the cache. */
  private generation = 0;
  /** Database reads made, for the tests and the bench. */
  reads = 0;

  constructor(private readonly sources: EpochSources) {}

  /** A commit this server stored moved the conversation to `epoch`: kept, and announced to the peers. */
  moved(convId: number, epoch: number): void {
    this.heard(convId, epoch);
    this.sources.announce?.(convId, epoch);
  }

  /** A peer stored a commit that moved the conversation to `epoch` (its announcement). */
  heard(convId: number, epoch: number): void {
    if (!Number.isSafeInteger(convId) || !Number.isSafeInteger(epoch)) return;
    if ((this.known.get(convId) ?? -1) < epoch) this.known.set(convId, epoch);
    if (this.known.size > 100_000) this.known.delete(this.known.keys().next().value!);
  }

  /** An announcement may have been missed (a peer linked or unlinked): read the database again. */
  forget(): void {
    this.generation++;
    this.known.clear();
  }

  /** Runs `append` once the body's epoch is found current; at once for a body that is no MLS application message. */
  admit<T>(convId: number, body: Uint8Array, append: () => Promise<T>): Promise<T> {
    const epoch = applicationEpoch(body);
    const tail = this.tails.get(convId);
    if (epoch === undefined && tail === undefined) return append();
    const known = epoch === undefined ? undefined : this.current(convId);
    // The next send waits only until this one is handed to the committer, not until it is stored (boxed, so
    // that the promise of the append is not adopted): the group commit still takes many sends at once.
    const handed = (tail ?? Promise.resolve()).then(async () => {
      if (known !== undefined && epoch !== undefined) {
        const current = Math.max(await known, this.known.get(convId) ?? 0);
        if (epoch < BigInt(current))
          throw new ChatError("E_MLS_STALE_EPOCH", `The conversation's MLS group is at epoch ${current}, not ${epoch}: take in its newer commits, then send again`);
      }
      return { appended: append() };
    });
    const run = handed.then((h) => h.appended);
    const settled = handed.then(
      () => {},
      () => {},
    );
    this.tails.set(convId, settled);
    void settled.then(() => {
      if (this.tails.get(convId) === settled) this.tails.delete(convId);
    });
    return run;
  }

  /** The conversation's epoch: from the cache when it is certain, else one read of the database (shared by the sends waiting on it). */
  private current(convId: number): number | Promise<number> {
    const cached = this.known.get(convId);
    if (cached !== undefined && (this.sources.linked?.() ?? true)) return cached;
    let read = this.reading.get(convId);
    if (!read) {
      const generation = this.generation;
      this.reads++;
      read = this.sources.epochOf(convId).then((epoch) => {
        // a peer linked or unlinked during the read: the value is the database's, but what followed it may be lost
        if (generation === this.generation && (this.sources.linked?.() ?? true)) this.heard(convId, epoch);
        return epoch;
      });
      this.reading.set(convId, read);
      const done = () => {
        if (this.reading.get(convId) === read) this.reading.delete(convId);
      };
      read.then(done, done);
    }
    return read;
  }
}
