/** Small helpers for the file-transfer tests: a cluster with alice and bob, random files, their hashes, and counting what a session asks. */
import { createHash, randomBytes } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { ChatSession } from "../../client/session";
import { aliceAndBob, removeHomes, startCluster, uniqueName, type Cluster, type TestUser } from "./cluster";

/** A cluster, alice and bob logged in on it, and a scratch folder for their files. */
export interface FilePair {
  cluster: Cluster;
  dir: string;
  alice: TestUser;
  bob: TestUser;
}

/** Starts a FilePair; if any part fails, what was started is stopped again. */
export async function startFilePair(name: string, options: Parameters<typeof startCluster>[0]): Promise<FilePair> {
  const pair: Partial<FilePair> = {};
  try {
    pair.cluster = await startCluster(options);
    pair.dir = mkdtempSync(join(tmpdir(), `chatterbox-${name}-`));
    [pair.alice, pair.bob] = await aliceAndBob(pair.cluster.balancerAddr);
    return pair as FilePair;
  } catch (error) {
    await stopFilePair(pair);
    throw error;
  }
}

/** Closes the sessions, stops the cluster, removes the folder and the users' homes. */
export async function stopFilePair(pair: Partial<FilePair> | undefined): Promise<void> {
  await pair?.alice?.session.close();
  await pair?.bob?.session.close();
  await pair?.cluster?.stop();
  if (pair?.dir) rmSync(pair.dir, { recursive: true, force: true });
  removeHomes([pair?.alice?.name, pair?.bob?.name]);
}

/** A file of `size` random bytes in `dir`, its name made unique; returns its path. */
export function randomFile(dir: string, name: string, size: number): string {
  const path = join(dir, `${uniqueName("f")}-${name}`);
  writeFileSync(path, randomBytes(size));
  return path;
}

export function sha(bytes: Uint8Array): string {
  return createHash("sha256").update(bytes).digest("hex");
}

/** Counts the requests a session puts on the wire, retries included, by operation. */
export function countRequests(session: ChatSession): { count(op: string): number } {
  const counts = new Map<string, number>();
  const target = session as unknown as { request(op: string, args?: Record<string, unknown>): Promise<Record<string, unknown>> };
  const original = target.request.bind(session);
  target.request = (op, args) => {
    counts.set(op, (counts.get(op) ?? 0) + 1);
    return original(op, args);
  };
  return { count: (op) => counts.get(op) ?? 0 };
}
