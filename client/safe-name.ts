/**
 * Where a received file lands: a name made safe (no path separators, no "..",
 * no control characters, at most 200 bytes), in a folder of its own per sender,
 * and never over an existing file.
 */
import { openSync, closeSync } from "node:fs";
import { extname, join } from "node:path";

const MAX_NAME_BYTES = 200;

export function safeName(name: string): string {
  let safe = name
    .split(/[/\\]/)
    .pop()!
    .replace(/[\u0000-\u001f\u007f-\u009f]/g, "")
    .replace(/^[.\s]+/, "")
    .trim();
  if (safe === "" || safe === "." || safe === "..") safe = "file";
  return truncate(safe, MAX_NAME_BYTES);
}

/** Cuts a name to a number of UTF-8 bytes, keeping a short extension and whole characters. */
function truncate(name: string, maxBytes: number): string {
  if (Buffer.byteLength(name) <= maxBytes) return name;
  const ext = extname(name);
  const keep = Buffer.byteLength(ext) <= 16 ? ext : "";
  let stem = name.slice(0, name.length - keep.length);
  while (Buffer.byteLength(stem) + Buffer.byteLength(keep) > maxBytes) stem = [...stem].slice(0, -1).join("");
  return stem + keep;
}

/**
 * Creates, exclusively, a new empty file for `name` in `dir`: "name", or
 * "name (1).ext", "name (2).ext"... Returns its path. An existing file is never touched.
 */
export function claimPath(dir: string, name: string): string {
  const ext = extname(name);
  const stem = name.slice(0, name.length - ext.length);
  for (let n = 0; ; n++) {
    const candidate = join(dir, n === 0 ? name : `${stem} (${n})${ext}`);
    try {
      closeSync(openSync(candidate, "wx", 0o600));
      return candidate;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== "EEXIST") throw error;
    }
  }
}
