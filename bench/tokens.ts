/**
 * Bench accounts are made once and reused: their names are fixed (PREFIX0..),
 * their password too, and the resume token each login returns is kept here,
 * so the next run resumes instead of making the server hash 1,000 login keys.
 */
import { createHash } from "node:crypto";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";

export const BENCH_PASSWORD = "chatterbox bench password";

function file(home: string, target: string): string {
  return join(home, `tokens-${createHash("sha256").update(target).digest("hex").slice(0, 12)}.json`);
}

export function loadTokens(home: string, target: string): Record<string, string> {
  try {
    return JSON.parse(readFileSync(file(home, target), "utf8"));
  } catch {
    return {};
  }
}

export function saveTokens(home: string, target: string, tokens: Record<string, string>): void {
  mkdirSync(home, { recursive: true, mode: 0o755 });
  writeFileSync(file(home, target), JSON.stringify(tokens), { mode: 0o600 });
}
