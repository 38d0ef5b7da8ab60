/**
 * How this program starts another copy of itself: the compiled binary runs
 * itself; from source, bun runs cli.ts.
 */
import { join } from "node:path";

export function selfCommand(): string[] {
  const compiled = Bun.main.startsWith("/$bunfs") || Bun.main.startsWith("B:/~BUN");
  return compiled ? [process.execPath] : [process.execPath, join(import.meta.dir, "..", "cli.ts")];
}
