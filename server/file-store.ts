/**
 * File uploads in ChatDB: a row per file, a row per encrypted chunk. Who may
 * read a file is decided by membership of its conversation when the upload
 * began, the same rule as for the message that announces it.
 */
import type { Sql } from "../db/connect";
import { ChatError } from "../protocol/errors";

export interface FileRow {
  id: string;
  uploaderId: number;
  conversationId: number;
  size: number;
  chunkSize: number;
  chunks: number;
  complete: boolean;
  seqAtBegin: number;
}

/** The advisory lock space of upload quotas (the other key is the uploader's id). */
const QUOTA_LOCK = 14;

export class FileStore {
  constructor(
    private readonly sql: Sql,
    private readonly quota: { quotaBytes: number; maxUploads: number } = { quotaBytes: Number.MAX_SAFE_INTEGER, maxUploads: Number.MAX_SAFE_INTEGER },
  ) {}

  /**
   * Starts an upload within the uploader's quota: the declared sizes of what
   * they keep (complete or not) and how many uploads are not complete yet.
   * Checked and inserted under a lock on the uploader (an advisory lock, not a
   * row: no schema for it), so parallel begins cannot both pass the check.
   */
  async begin(uploaderId: number, conversationId: number, size: number, chunkSize: number, chunks: number): Promise<string> {
    return this.sql.begin(async (tx) => {
      await tx`select pg_advisory_xact_lock(${QUOTA_LOCK}, ${uploaderId})`;
      const [use] = await tx`
        select coalesce(sum(size), 0)::float8 as bytes, (count(*) filter (where completed_at is null))::int as open
        from files where uploader_id = ${uploaderId}`;
      if (use!.open >= this.quota.maxUploads) {
        throw new ChatError("E_RATE_LIMITED", `You have ${use!.open} uploads not yet complete; this server allows ${this.quota.maxUploads} at once`, 10_000);
      }
      if (use!.bytes + size > this.quota.quotaBytes) {
        throw new ChatError("E_QUOTA", `Your files take ${use!.bytes} bytes; with this one (${size}) they would pass your quota of ${this.quota.quotaBytes}`);
      }
      const [row] = await tx`
        insert into files (uploader_id, conversation_id, seq_at_begin, size, chunk_size, chunks)
        select ${uploaderId}, ${conversationId}, last_seq, ${size}, ${chunkSize}, ${chunks} from conversations where id = ${conversationId}
        returning id`;
      return row!.id as string;
    });
  }

  async get(fileId: string): Promise<FileRow | undefined> {
    const [row] = await this.sql`
      select id, uploader_id, conversation_id, size, chunk_size, chunks, seq_at_begin, completed_at is not null as complete
      from files where id = ${fileId}`;
    if (!row) return undefined;
    return {
      id: row.id,
      uploaderId: row.uploader_id,
      conversationId: row.conversation_id,
      size: row.size,
      chunkSize: row.chunk_size,
      chunks: row.chunks,
      complete: row.complete,
      seqAtBegin: row.seq_at_begin,
    };
  }

  /** The file, if this user uploaded it or was a member of its conversation when the upload began. */
  async readable(fileId: string, userId: number): Promise<FileRow> {
    const [row] = await this.sql`
      select f.id from files f
      where f.id = ${fileId} and (f.uploader_id = ${userId} or exists (
        select 1 from members m where m.conversation_id = f.conversation_id and m.user_id = ${userId}
          and m.joined_seq <= f.seq_at_begin and (m.left_seq is null or m.left_seq > f.seq_at_begin)))`;
    const file = row ? await this.get(fileId) : undefined;
    if (!file) throw new ChatError("E_NO_SUCH_FILE", "No such file, or not one you may read");
    return file;
  }

  /** Stores one chunk; a chunk sent again (a resumed upload) changes nothing. */
  async putChunk(fileId: string, index: number, data: Uint8Array): Promise<void> {
    try {
      await this.sql`insert into file_chunks (file_id, idx, data) values (${fileId}, ${index}, ${data}) on conflict do nothing`;
    } catch (error) {
      // The upload was swept away (past its time) while chunks still came.
      if ((error as { code?: string }).code === "23503") throw new ChatError("E_NO_SUCH_FILE", "That upload is gone; start it again");
      throw error;
    }
  }

  async storedChunks(fileId: string): Promise<number[]> {
    const rows = await this.sql`select idx from file_chunks where file_id = ${fileId} order by idx`;
    return rows.map((r) => r.idx as number);
  }

  async chunk(fileId: string, index: number): Promise<Uint8Array | undefined> {
    const [row] = await this.sql`select data from file_chunks where file_id = ${fileId} and idx = ${index}`;
    return row ? new Uint8Array(row.data) : undefined;
  }

  /** Marks the upload complete once every chunk is stored. */
  async complete(fileId: string): Promise<void> {
    const [row] = await this.sql`
      update files f set completed_at = coalesce(completed_at, now())
      where id = ${fileId} and (select count(*) from file_chunks c where c.file_id = f.id) = f.chunks
      returning id`;
    if (!row) throw new ChatError("E_FILE_INCOMPLETE", "Some chunks of the file have not been stored yet");
  }

  /** Forgets uploads never completed in time, and files past the retention. */
  async clean(incompleteAfterMs: number, retentionMs: number): Promise<number> {
    const gone = await this.sql`
      delete from files where (completed_at is null and created_at < now() - ${incompleteAfterMs} * interval '1 millisecond')
        or (completed_at is not null and completed_at < now() - ${retentionMs} * interval '1 millisecond')
      returning id`;
    return gone.length;
  }
}
