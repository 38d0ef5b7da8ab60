/**
 * The reads a streaming replica may answer (`serve --read-database-url`):
 * history, fetch and file downloads. Replica lag must never lose a message or
 * show one out of order, so a read goes to the replica only when the replica
 * has replayed everything the primary had written when the read began
 * (its WAL insert position, past every commit already acknowledged);
 * otherwise, or when the replica does not answer, the primary serves it.
 * Without a replica every read goes to the primary, as before.
 */
import type { Sql } from "../db/connect";
import type { WireMessage } from "../protocol/messages";
import { FileStore } from "./file-store";
import { Store } from "./store";

export interface ReadRecorder {
  read(source: "primary" | "replica"): void;
}

interface Source {
  store: Pick<Store, "history" | "after">;
  files: Pick<FileStore, "chunk">;
}

export class Reads {
  private readonly replica?: Source & { sql: Sql };

  constructor(
    private readonly primary: Source & { sql: Sql },
    replicaSql: Sql | undefined,
    private readonly recorder: ReadRecorder = { read() {} },
  ) {
    if (replicaSql) this.replica = { store: new Store(replicaSql), files: new FileStore(replicaSql), sql: replicaSql };
  }

  history(userId: number, convId: number, beforeSeq: number | undefined, limit: number, maxBytes?: number): Promise<WireMessage[]> {
    return this.route((s) => s.store.history(userId, convId, beforeSeq, limit, maxBytes));
  }

  after(userId: number, convId: number, afterSeq: number, limit: number, maxBytes?: number): Promise<WireMessage[]> {
    return this.route((s) => s.store.after(userId, convId, afterSeq, limit, maxBytes));
  }

  chunk(fileId: string, index: number): Promise<Uint8Array | undefined> {
    return this.route((s) => s.files.chunk(fileId, index));
  }

  private async route<T>(read: (source: Source) => Promise<T>): Promise<T> {
    const source = this.replica && (await this.caughtUp()) ? this.replica : this.primary;
    this.recorder.read(source === this.primary ? "primary" : "replica");
    return read(source);
  }

  /** Whether the replica has replayed all that the primary has written up to now. */
  private async caughtUp(): Promise<boolean> {
    const [written] = await this.primary.sql`select pg_current_wal_insert_lsn()::text as lsn`;
    try {
      // NULL (not a standby) counts as behind: the primary serves.
      const [replayed] = await this.replica!.sql`select coalesce(pg_last_wal_replay_lsn() >= ${written!.lsn}::pg_lsn, false) as ok`;
      return replayed!.ok === true;
    } catch {
      return false;
    }
  }
}
