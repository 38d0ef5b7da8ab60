/**
 * A client command run as the user runs it (`bun cli.ts COMMAND --json`), in
 * its own process and CHATTERBOX_HOME, with its JSON lines read as they come:
 * for tests that stop, kill or wait for a real client.
 */
import { join } from "node:path";
import type { Subprocess } from "bun";
import type { ShownMessage } from "../../client/format";
import { PASSWORD, ROOT, waitFor } from "./cluster";

export interface ClientProcess {
  proc: Subprocess<"pipe", "pipe", "pipe">;
  /** Every JSON line printed so far. */
  lines: Record<string, unknown>[];
  messages(): ShownMessage[];
  stderr(): string;
  waitForMessages(count: number, timeoutMs?: number): Promise<void>;
}

export function runClient(command: string, args: { balancer: string; user: string; home: string; extra?: string[] }): ClientProcess {
  const proc = Bun.spawn([process.execPath, join(ROOT, "cli.ts"), command, "--balancer", args.balancer, "--user", args.user, "--json", ...(args.extra ?? [])], {
    env: { ...process.env, CHATTERBOX_HOME: args.home, CHATTERBOX_PASSWORD: PASSWORD },
    stdin: "pipe",
    stdout: "pipe",
    stderr: "pipe",
  });
  const lines: Record<string, unknown>[] = [];
  let errors = "";
  void (async () => {
    let partial = "";
    for await (const chunk of proc.stdout) {
      const parts = (partial + new TextDecoder().decode(chunk)).split("\n");
      partial = parts.pop()!;
      for (const line of parts) if (line.startsWith("{")) lines.push(JSON.parse(line));
    }
  })();
  void (async () => {
    for await (const chunk of proc.stderr) errors += new TextDecoder().decode(chunk);
  })();
  const messages = () => lines.filter((l) => l.type === "message") as unknown as ShownMessage[];
  return {
    proc,
    lines,
    messages,
    stderr: () => errors,
    waitForMessages: (count, timeoutMs = 60_000) => waitFor(() => messages().length >= count || proc.exitCode !== null, `${count} messages from ${command}`, timeoutMs),
  };
}
