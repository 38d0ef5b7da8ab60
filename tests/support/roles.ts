/**
 * Roles run as real processes (`cli.ts serve`, `balance`) whose every output
 * line is kept, for tests that read their logs, scrape their metrics or signal
 * them. Both pipes are read to the end, so a chatty process never blocks.
 */
import { join } from "node:path";
import type { Subprocess } from "bun";
import { ROOT, waitFor } from "./cluster";

export interface RoleProcess {
  proc: Subprocess<"ignore", "pipe", "pipe">;
  /** Lines from stdout, in order. */
  stdout: string[];
  stderr: string[];
  /** stdout lines parsed as JSON; throws on a line that is not. */
  json(): Record<string, unknown>[];
  /** Waits for a stdout line matching `pattern`; returns its match. */
  waitForLine(pattern: RegExp, timeoutMs?: number): Promise<RegExpExecArray>;
  stop(signal?: "SIGTERM" | "SIGKILL"): Promise<number>;
}

export function spawnRole(args: string[], env: Record<string, string | undefined> = {}): RoleProcess {
  const proc = Bun.spawn([process.execPath, join(ROOT, "cli.ts"), ...args], {
    stdin: "ignore",
    stdout: "pipe",
    stderr: "pipe",
    env: { ...process.env, ...env },
  });
  const stdout: string[] = [];
  const stderr: string[] = [];
  void collect(proc.stdout, stdout);
  void collect(proc.stderr, stderr);
  return {
    proc,
    stdout,
    stderr,
    json: () => stdout.map((line) => JSON.parse(line)),
    async waitForLine(pattern, timeoutMs = 20_000) {
      let match: RegExpExecArray | null = null;
      await waitFor(() => {
        if (proc.exitCode !== null) throw new Error(`exited (${proc.exitCode}) before printing ${pattern}: ${[...stdout, ...stderr].join("\n")}`);
        for (const line of stdout) if ((match = pattern.exec(line))) return true;
        return false;
      }, `a line matching ${pattern}`, timeoutMs);
      return match!;
    },
    async stop(signal = "SIGTERM") {
      proc.kill(signal);
      return await proc.exited;
    },
  };
}

async function collect(stream: ReadableStream<Uint8Array>, into: string[]): Promise<void> {
  const decoder = new TextDecoder();
  let partial = "";
  for await (const chunk of stream) {
    const parts = (partial + decoder.decode(chunk, { stream: true })).split("\n");
    partial = parts.pop()!;
    into.push(...parts);
  }
  if (partial) into.push(partial);
}

/** GET /metrics, parsed into "name{labels}" -> value. */
export async function scrape(addr: string): Promise<Map<string, number>> {
  const response = await fetch(`http://${addr}/metrics`);
  if (!response.ok) throw new Error(`GET /metrics: ${response.status}`);
  const samples = new Map<string, number>();
  for (const line of (await response.text()).split("\n")) {
    if (!line || line.startsWith("#")) continue;
    const at = line.lastIndexOf(" ");
    samples.set(line.slice(0, at), Number(line.slice(at + 1)));
  }
  return samples;
}
