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

export class EpochGate {
  private readonly tails = new Map<number, Promise<unknown>>();
  /** One read of a conversation's epoch at a time, shared by the sends that wait on it. */
  private readonly reading = new Map<number, Promise<number>>();
  /** The highest epoch this server stored a commit up to, per conversation (never lower than the database's). */
  private readonly floor = new Map<number, number>();

  constructor(private readonly epochOf: (convId: number) => Promise<number>) {}

  /** A commit this server stored moved the conversation to `epoch`. */
  moved(convId: number, epoch: number): void {
    if ((this.floor.get(convId) ?? 0) < epoch) this.floor.set(convId, epoch);
    if (this.floor.size > 100_000) this.floor.delete(this.floor.keys().next().value!);
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
        const current = Math.max(await known, this.floor.get(convId) ?? 0);
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

  private current(convId: number): Promise<number> {
    let read = this.reading.get(convId);
    if (!read) {
      read = this.epochOf(convId);
      this.reading.set(convId, read);
      const done = () => {
        if (this.reading.get(convId) === read) this.reading.delete(convId);
      };
      read.then(done, done);
    }
    return read;
  }
}
