/**
 * Files, end to end encrypted and streamed: the sender reads, hashes and seals
 * one chunk at a time with a few in flight, and the recipient fetches, checks
 * and writes one chunk at a time, so memory stays flat whatever the size. Both
 * sides keep a small state file, so a broken transfer resumes where it stopped.
 */
import { createHash, randomUUID } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from "node:fs";
import { open } from "node:fs/promises";
import { basename, join, resolve } from "node:path";
import { CryptoError } from "../crypto/errors";
import { fileKey, openChunk, sealChunk } from "../crypto/file";
import { ChatError } from "../protocol/errors";
import type { FileMeta } from "./content";
import { sniff } from "./image";
import type { Progress } from "./progress";
import { claimPath, safeName } from "./safe-name";
import { userDir } from "./state";

export const CHUNK_SIZE = 256 * 1024;
const WINDOW = 8;

/** What file transfer needs of a session: requests that survive a reconnect. */
export interface Caller {
  readonly user: string;
  call(op: string, args: Record<string, unknown>): Promise<Record<string, unknown>>;
}

export type Target = { to: string } | { group: string };

interface UploadState {
  fileId: string;
  key: string;
  cmid: string;
  chunkSize: number;
  chunks: number;
}

export interface Upload {
  meta: FileMeta;
  cmid: string;
  /** Call once the message announcing the file is stored. */
  done(): void;
}

export async function upload(caller: Caller, path: string, target: Target, progress: Progress): Promise<Upload> {
  const info = statSync(path, { throwIfNoEntry: false });
  if (!info?.isFile()) throw new ChatError("E_BAD_REQUEST", `${path} is not a file`);
  const size = info.size;
  const chunks = Math.max(1, Math.ceil(size / CHUNK_SIZE));
  const dir = join(userDir(caller.user), "uploads");
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const id = createHash("sha256").update(`${resolve(path)}|${size}|${info.mtimeMs}|${JSON.stringify(target)}`).digest("hex");
  const statePath = join(dir, `${id}.json`);
  let state: UploadState | undefined = existsSync(statePath) ? JSON.parse(readFileSync(statePath, "utf8")) : undefined;
  let stored = new Set<number>();
  if (state) {
    // A broken upload: the server says which chunks it has; only the others are sent.
    try {
      stored = new Set((await caller.call("file.status", { file: state.fileId })).stored as number[]);
    } catch (error) {
      if ((error as ChatError).code !== "E_NO_SUCH_FILE") throw error;
      state = undefined;
    }
  }
  if (!state) {
    const begun = await caller.call("file.begin", { ...target, size, chunkSize: CHUNK_SIZE, chunks });
    state = { fileId: begun.file as string, key: Buffer.from(fileKey()).toString("base64"), cmid: randomUUID(), chunkSize: CHUNK_SIZE, chunks };
    writeFileSync(statePath, JSON.stringify(state), { mode: 0o600 });
  }
  const key = new Uint8Array(Buffer.from(state.key, "base64"));
  const hash = createHash("sha256");
  const file = Bun.file(path);
  let kind = sniff(new Uint8Array(0));
  const inFlight = new Set<Promise<unknown>>();
  let sent = 0;
  for (let index = 0; index < chunks; index++) {
    const plain = await file.slice(index * CHUNK_SIZE, Math.min(size, (index + 1) * CHUNK_SIZE)).bytes();
    hash.update(plain);
    if (index === 0) kind = sniff(plain);
    if (stored.has(index)) continue;
    const pending = caller.call("file.chunk", { file: state.fileId, index, data: sealChunk(key, state.fileId, index, chunks, plain) }).then(() => {
      inFlight.delete(pending);
      sent += plain.length;
      progress.update(Math.min(size, stored.size * CHUNK_SIZE + sent));
    });
    pending.catch(() => {}); // its failure surfaces through Promise.race/all below
    inFlight.add(pending);
    if (inFlight.size >= WINDOW) await Promise.race(inFlight);
  }
  await Promise.all(inFlight);
  await caller.call("file.complete", { file: state.fileId });
  progress.end();
  const meta: FileMeta = {
    id: state.fileId,
    name: basename(path),
    size,
    type: kind.type,
    sha256: hash.digest("hex"),
    key,
    chunkSize: CHUNK_SIZE,
    chunks,
    ...(kind.width !== undefined ? { width: kind.width, height: kind.height } : {}),
  };
  return { meta, cmid: state.cmid, done: () => rmSync(statePath, { force: true }) };
}

/**
 * Fetches, checks and saves a received file under downloads/<sender>/; returns
 * where. A chunk that fails its check, a missing chunk or a wrong hash leaves
 * nothing in downloads/.
 */
export async function download(caller: Caller, meta: FileMeta, from: string, progress: Progress): Promise<string> {
  const root = join(userDir(caller.user), "downloads");
  const partial = join(root, ".partial");
  mkdirSync(partial, { recursive: true, mode: 0o700 });
  const part = join(partial, `${meta.id.replace(/[^0-9a-f-]/g, "")}.part`);
  const statePath = `${part}.json`;
  let next = existsSync(part) && existsSync(statePath) ? (JSON.parse(readFileSync(statePath, "utf8")).next as number) : 0;
  const handle = await open(part, next === 0 ? "w" : "r+", 0o600);
  const refuse = (why: string): never => {
    rmSync(part, { force: true });
    rmSync(statePath, { force: true });
    throw new ChatError("E_FILE_CORRUPT", `${safeName(meta.name)} from ${from} was refused: ${why}; nothing was saved`);
  };
  try {
    const fetches = new Map<number, Promise<Record<string, unknown>>>();
    const fetchAhead = (upTo: number) => {
      for (let i = next; i < Math.min(meta.chunks, upTo); i++) {
        if (fetches.has(i)) continue;
        const fetching = caller.call("file.get", { file: meta.id, index: i });
        fetching.catch(() => {}); // awaited in order below; a refusal may leave some unawaited
        fetches.set(i, fetching);
      }
    };
    while (next < meta.chunks) {
      fetchAhead(next + WINDOW);
      let sealed: Uint8Array;
      try {
        sealed = new Uint8Array((await fetches.get(next)!).data as Uint8Array);
      } catch (error) {
        if ((error as ChatError).code === "E_NO_SUCH_FILE") {
          // Gone past the server's retention is not the same as tampered with.
          const gone = await caller.call("file.info", { file: meta.id }).then(
            () => false,
            (e: ChatError) => e.code === "E_NO_SUCH_FILE",
          );
          if (gone) {
            rmSync(part, { force: true });
            rmSync(statePath, { force: true });
            throw new ChatError("E_NO_SUCH_FILE", `${safeName(meta.name)} from ${from} is no longer on the server (past its retention)`);
          }
          refuse(`chunk ${next + 1} of ${meta.chunks} is missing`);
        }
        throw error;
      }
      fetches.delete(next);
      let plain: Uint8Array;
      try {
        plain = openChunk(meta.key, meta.id, next, meta.chunks, sealed);
      } catch (error) {
        if (error instanceof CryptoError) refuse(error.message.toLowerCase());
        throw error;
      }
      const expected = next < meta.chunks - 1 ? meta.chunkSize : meta.size - (meta.chunks - 1) * meta.chunkSize;
      if (plain!.length !== expected) refuse(`chunk ${next + 1} has the wrong length`);
      await handle.write(plain!, 0, plain!.length, next * meta.chunkSize);
      next++;
      writeFileSync(statePath, JSON.stringify({ next }), { mode: 0o600 });
      progress.update(Math.min(meta.size, next * meta.chunkSize));
    }
  } finally {
    await handle.close();
  }
  progress.end();
  if (statSync(part).size !== meta.size) refuse("its size does not match");
  const hash = createHash("sha256");
  for await (const piece of Bun.file(part).stream()) hash.update(piece);
  if (hash.digest("hex") !== meta.sha256) refuse("its hash does not match");
  const dir = join(root, safeName(from));
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const target = claimPath(dir, safeName(meta.name));
  renameSync(part, target);
  rmSync(statePath, { force: true });
  return target;
}
