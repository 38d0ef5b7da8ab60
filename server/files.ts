/**
 * The file requests: begin an upload (refused at once when too large), put
 * chunks (idempotent, so a broken upload resumes from what is stored), ask
 * what is stored, complete, and read chunks back. The server only ever sees
 * encrypted chunks; the key travels inside the end-to-end encrypted message.
 */
import type { Route } from "../net/listener";
import { ChatError } from "../protocol/errors";
import * as v from "../protocol/validate";
import type { ClientState, Conn, ServerConfig } from "./context";
import type { Directory } from "./directory";
import type { FileRow, FileStore } from "./file-store";
import type { GroupStore } from "./group-store";
import type { Limits } from "./limits";
import type { Reads } from "./reads";

export const MIN_CHUNK = 16 * 1024;
export const MAX_CHUNK = 512 * 1024;
/** What encryption adds to each chunk (the Poly1305 tag). */
const CHUNK_OVERHEAD = 16;

/** What the file requests use of the server, and no more. */
export interface FileRouteDeps {
  config: Pick<ServerConfig, "maxFileBytes">;
  files: Pick<FileStore, "get" | "begin" | "putChunk" | "storedChunks" | "complete" | "readable">;
  groups: Pick<GroupStore, "conversation">;
  limits: Pick<Limits, "read">;
  /** Chunk downloads: from the read replica when it is caught up (server/reads.ts). */
  reads: Pick<Reads, "chunk">;
}

export function fileRoutes(ctx: FileRouteDeps, directory: Directory, loggedIn: Route<ClientState>["guard"]): Record<string, Route<ClientState>> {
  const own = async (conn: Conn, fileId: string) => {
    const file = await ctx.files.get(fileId);
    if (!file || file.uploaderId !== conn.state.user!.id) throw new ChatError("E_NO_SUCH_FILE", "No upload of yours has that id");
    return file;
  };
  // A chunk needs only what never changes about its upload (owner, size, chunks):
  // asked once per connection, not once per chunk.
  const uploads = new WeakMap<Conn, Map<string, FileRow>>();
  const ownCached = async (conn: Conn, fileId: string) => {
    let mine = uploads.get(conn);
    if (!mine) uploads.set(conn, (mine = new Map()));
    const known = mine.get(fileId);
    if (known) return known;
    const file = await own(conn, fileId);
    if (mine.size >= 16) mine.clear();
    mine.set(fileId, file);
    return file;
  };
  return {
    "file.begin": {
      guard: loggedIn,
      async handle(conn, req) {
        const me = conn.state.user!;
        const size = v.int(req, "size", 0, Number.MAX_SAFE_INTEGER);
        if (size > ctx.config.maxFileBytes) {
          throw new ChatError("E_FILE_TOO_LARGE", `The file is ${size} bytes; this server takes files up to ${ctx.config.maxFileBytes} bytes`);
        }
        const chunkSize = v.int(req, "chunkSize", MIN_CHUNK, MAX_CHUNK);
        const chunks = v.int(req, "chunks", 1, Math.ceil(ctx.config.maxFileBytes / MIN_CHUNK));
        if (chunks !== chunkCount(size, chunkSize)) throw new ChatError("E_BAD_REQUEST", "chunks: expected the size divided by the chunk size, rounded up (1 for an empty file)");
        const group = v.optionalName(req, "group");
        const convId = group !== undefined ? await ctx.groups.conversation(group, me.id) : (await directory.direct(me.id, v.name(req, "to"))).convId;
        return { file: await ctx.files.begin(me.id, convId, size, chunkSize, chunks) };
      },
    },
    "file.chunk": {
      guard: loggedIn,
      async handle(conn, req) {
        const file = await ownCached(conn, fileId(req));
        const index = v.int(req, "index", 0, file.chunks - 1);
        const data = v.bytes(req, "data", file.chunkSize + CHUNK_OVERHEAD);
        // Idempotent: a chunk sent again, even after completion, changes nothing.
        await ctx.files.putChunk(file.id, index, data);
      },
    },
    "file.status": {
      guard: loggedIn,
      async handle(conn, req) {
        const file = await own(conn, fileId(req));
        return { stored: await ctx.files.storedChunks(file.id), complete: file.complete };
      },
    },
    "file.complete": {
      guard: loggedIn,
      async handle(conn, req) {
        await ctx.files.complete((await own(conn, fileId(req))).id);
      },
    },
    "file.info": {
      guard: loggedIn,
      async handle(conn, req) {
        const file = await ctx.files.readable(fileId(req), conn.state.user!.id);
        // conv and after: where the message announcing the file is, for a client fetching it again.
        return { size: file.size, chunkSize: file.chunkSize, chunks: file.chunks, complete: file.complete, conv: file.conversationId, after: file.seqAtBegin };
      },
    },
    "file.get": {
      guard: loggedIn,
      async handle(conn, req) {
        const file = await ctx.files.readable(fileId(req), conn.state.user!.id);
        if (!file.complete) throw new ChatError("E_FILE_INCOMPLETE", "The file's upload is not complete");
        const index = v.int(req, "index", 0, file.chunks - 1);
        const data = await ctx.limits.read(conn, () => ctx.reads.chunk(file.id, index));
        if (!data) throw new ChatError("E_NO_SUCH_FILE", "That chunk is gone (past the retention)");
        return { data };
      },
    },
  };
}

export function chunkCount(size: number, chunkSize: number): number {
  return Math.max(1, Math.ceil(size / chunkSize));
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

function fileId(req: Record<string, unknown>): string {
  const id = req.file;
  if (typeof id !== "string" || !UUID.test(id)) throw new ChatError("E_BAD_REQUEST", "file: expected a file id");
  return id;
}
