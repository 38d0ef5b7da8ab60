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
import { equalBytes } from "../crypto/bytes.ts";
import { clearHeader } from "../crypto/mls/wire.ts";
import { ChatError } from "../protocol/errors";

/** client/mls/body.ts: 0x4D ('M'), then 1 for an application message. */
const MLS_MAGIC = 0x4d;
const APPLICATION = 1;
const COMMIT = 2;
/** RFC 9420 ContentType application(1), commit(3). */
const CONTENT_APPLICATION = 1;
const CONTENT_COMMIT = 3;

/** The MLS group and epoch of a body that is an MLS application message, else undefined. */
export function applicationHeader(body: Uint8Array): { groupId: Uint8Array; epoch: bigint } | undefined {
  if (body.length < 3 || body[0] !== MLS_MAGIC || body[1] !== APPLICATION) return undefined;
  const header = clearHeader(body.subarray(2));
  return header?.contentType === CONTENT_APPLICATION ? header : undefined;
}

export function applicationEpoch(body: Uint8Array): bigint | undefined {
  return applicationHeader(body)?.epoch;
}

/** The group and epoch a commit body's commit was made in (0x4D 0x02, u64 length, the commit, the welcome), else undefined. */
export function commitHeader(body: Uint8Array): { groupId: Uint8Array; epoch: bigint } | undefined {
  if (body.length < 10 || body[0] !== MLS_MAGIC || body[1] !== COMMIT) return undefined;
  const length = new DataView(body.buffer, body.byteOffset + 2, 8).getBigUint64(0);
  if (length > BigInt(body.length - 10)) return undefined;
  const header = clearHeader(body.subarray(10, 10 + Number(length)));
  return header?.contentType === CONTENT_COMMIT ? { groupId: header.groupId.slice(), epoch: header.epoch } : undefined;
}

/** A conversation's MLS group as the server orders it: the epoch the next commit must be made from, and the group's id (null before it is known). */
export interface GroupEpoch {
  epoch: number;
  groupId: Uint8Array | null;
}

/** What the gate asks of the cluster around it. */
export interface EpochSources {
  /** The database's word: what a cold or uncertain cache reads. */
  epochOf(convId: number): Promise<GroupEpoch>;
  /** Told of every commit this server stores (at `seq`): the other servers hear it (a peer event) and update their cache. */
  announce?(convId: number, seq: number, state: GroupEpoch): void;
  /**
   * Whether every server that could store a commit is linked to this one, so that
   * its announcements arrive; while not, every MLS send reads the database.
   */
  linked?(): boolean;
}

export class EpochGate {
  private readonly tails = new Map<number, Promise<unknown>>();
  /** One read of a conversation's epoch at a time, shared by the sends that wait on it. */
  private readonly reading = new Map<number, Promise<GroupEpoch>>();
  /**
   * Each conversation's epoch as this server knows it for certain: read once
   * from the database, then moved by this server's commits and by the peers'
   * announcements of theirs. Emptied whenever an announcement may have been
   * lost (a peer's link opened or closed), so a cold or uncertain entry is read again.
   */
  private readonly known = new Map<number, GroupEpoch & { seq: number }>();
  /** Grows at every forget(): a read that started before it must not fill the cache. */
  private generation = 0;
  /** Database reads made, for the tests and the bench. */
  reads = 0;

  constructor(private readonly sources: EpochSources) {}

  /** A commit this server stored at `seq` moved the conversation to `state`: kept, and announced to the peers. */
  moved(convId: number, seq: number, state: GroupEpoch): void {
    this.heard(convId, seq, state);
    this.sources.announce?.(convId, seq, state);
  }

  /**
   * A commit stored at `seq` (here or by a peer, whose announcement this is)
   * moved the conversation to `state`. The commit's place in the conversation
   * orders the announcements: a reset lowers the epoch, so the epoch cannot.
   */
  heard(convId: number, seq: number, state: GroupEpoch): void {
    if (!Number.isSafeInteger(convId) || !Number.isSafeInteger(seq) || !Number.isSafeInteger(state.epoch)) return;
    if ((this.known.get(convId)?.seq ?? -1) >= seq) return;
    this.known.set(convId, { seq, epoch: state.epoch, groupId: state.groupId });
    if (this.known.size > 100_000) this.known.delete(this.known.keys().next().value!);
  }

  /** Whether every peer's announcements reach this server now: only then is the cache certain. */
  private get linked(): boolean {
    return this.sources.linked?.() ?? true;
  }

  /** An announcement may have been missed (a peer linked or unlinked): read the database again. */
  forget(): void {
    this.generation++;
    this.known.clear();
  }

  /** Runs `append` once the body's epoch is found current; at once for a body that is no MLS application message. */
  admit<T>(convId: number, body: Uint8Array, append: () => Promise<T>): Promise<T> {
    const header = applicationHeader(body);
    const tail = this.tails.get(convId);
    if (header === undefined && tail === undefined) return append();
    const known = header === undefined ? undefined : this.current(convId);
    // The next send waits only until this one is handed to the committer, not until it is stored (boxed, so
    // that the promise of the append is not adopted): the group commit still takes many sends at once.
    const handed = (tail ?? Promise.resolve()).then(async () => {
      if (known !== undefined && header !== undefined) {
        const read = await known;
        // what an announcement brought during the read is newer than the read
        const cached = this.known.get(convId);
        const current = cached !== undefined && this.linked ? cached : read;
        if (current.groupId !== null && !equalBytes(current.groupId, header.groupId)) {
          throw new ChatError("E_MLS_STALE_EPOCH", "The conversation's MLS group was made again (a reset): take in its welcome, then send again");
        }
        if (header.epoch < BigInt(current.epoch))
          throw new ChatError("E_MLS_STALE_EPOCH", `The conversation's MLS group is at epoch ${current.epoch}, not ${header.epoch}: take in its newer commits, then send again`);
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
  private current(convId: number): GroupEpoch | Promise<GroupEpoch> {
    const cached = this.known.get(convId);
    if (cached !== undefined && this.linked) return cached;
    let read = this.reading.get(convId);
    if (!read) {
      const generation = this.generation;
      this.reads++;
      read = this.sources.epochOf(convId).then((state) => {
        // a peer linked or unlinked during the read: the value is the database's, but what followed it may be lost;
        // and an announcement heard meanwhile is newer than it (seq 0: below any commit's)
        if (generation === this.generation && this.linked && !this.known.has(convId)) this.heard(convId, 0, state);
        return state;
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
