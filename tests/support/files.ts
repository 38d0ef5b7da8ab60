/** Small helpers for the file-transfer tests: random files, their hashes, and counting what a session asks. */
import { createHash, randomBytes } from "node:crypto";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import type { ChatSession } from "../../client/session";
import { uniqueName } from "./cluster";

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
