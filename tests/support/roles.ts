/**
 * Roles run as real processes (`cli.ts serve`, `balance`, `up`) whose every
 * output line is kept, for tests that read their logs, scrape their metrics or
 * signal them. Output goes to files, not pipes: reading a child's pipe under
 * Bun now and then stalled after the first chunk while the child kept writing.
 */
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Subprocess } from "bun";
import { ROOT, waitFor } from "./cluster";

export interface RoleProcess {
  proc: Subprocess;
  /** Lines printed on stdout so far, in order. */
  readonly stdout: string[];
  readonly stderr: string[];
  /** stdout lines parsed as JSON; throws on a line that is not. */
  json(): Record<string, unknown>[];
  /** Waits for a stdout line matching `pattern`; returns its match. */
  waitForLine(pattern: RegExp, timeoutMs?: number): Promise<RegExpExecArray>;
  stop(signal?: "SIGTERM" | "SIGKILL"): Promise<number>;
}

export function spawnRole(args: string[], env: Record<string, string | undefined> = {}, command = [process.execPath, join(ROOT, "cli.ts")]): RoleProcess {
  const dir = mkdtempSync(join(tmpdir(), "chatterbox-role-"));
  const [out, err] = [join(dir, "stdout"), join(dir, "stderr")];
  const proc = Bun.spawn([...command, ...args], {
    stdin: "ignore",
    stdout: Bun.file(out),
    stderr: Bun.file(err),
    env: { ...process.env, ...env },
  });
  void proc.exited.then(() => setTimeout(() => rmSync(dir, { recursive: true, force: true }), 60_000).unref());
  const lines = (path: string) => {
    const text = readFileSync(path, "utf8");
    const all = text.split("\n");
    // A line still being written is not a line yet.
    all.pop();
    return all;
  };
  let keptOut: string[] = [];
  let keptErr: string[] = [];
  const read = (path: string, kept: string[]) => {
    try {
      return lines(path);
    } catch {
      return kept;
    }
  };
  const role: RoleProcess = {
    proc,
    get stdout() {
      return (keptOut = read(out, keptOut));
    },
    get stderr() {
      return (keptErr = read(err, keptErr));
    },
    json: () => role.stdout.map((line) => JSON.parse(line)),
    async waitForLine(pattern, timeoutMs = 20_000) {
      let match: RegExpExecArray | null = null;
      await waitFor(() => {
        for (const line of role.stdout) if ((match = pattern.exec(line))) return true;
        if (proc.exitCode !== null) throw new Error(`exited (${proc.exitCode}) before printing ${pattern}: ${[...role.stdout, ...role.stderr].join("\n")}`);
        return false;
      }, `a line matching ${pattern}`, timeoutMs);
      return match!;
    },
    async stop(signal = "SIGTERM") {
      proc.kill(signal);
      return await proc.exited;
    },
  };
  return role;
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

/** Whether a process of that id still runs. */
export function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}
