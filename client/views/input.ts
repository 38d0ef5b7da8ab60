/**
 * Lines read from a pipe or file, for the views that take commands line by
 * line: each line to `onLine`, and `onEnd` once the input is closed.
 */
import { createInterface } from "node:readline";

export function readLines(onLine: (line: string) => void, onEnd: () => void): { close(): void } {
  const reader = createInterface({ input: process.stdin });
  reader.on("line", onLine);
  reader.on("close", onEnd);
  return { close: () => reader.close() };
}
