/**
 * `chatterbox up` stopped by SIGTERM while it is still starting its servers
 * leaves nothing running: the servers it had started, and the embedded
 * PostgreSQL, go with it.
 */
import { afterAll, expect, test } from "bun:test";
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ROOT, waitFor } from "./support/cluster";
import { alive } from "./support/roles";

const work = mkdtempSync(join(tmpdir(), "chatterbox-up-signal-"));
// As root, the embedded PostgreSQL runs as the postgres user, who must be able to enter it.
chmodSync(work, 0o755);

afterAll(() => rmSync(work, { recursive: true, force: true }));

function running(pattern: string): string {
  const args = pattern.startsWith("-P ") ? ["pgrep", "-P", pattern.slice(3)] : ["pgrep", "-f", pattern];
  return Bun.spawnSync(args).stdout.toString().trim();
}

test("SIGTERM while up is starting its servers stops the servers it started, and PostgreSQL", async () => {
  const data = join(work, "data");
  // Into a file: the servers write to up's stdout too, and a pipe read here can stall (a Bun quirk).
  const log = join(work, "up.log");
  const up = Bun.spawn([process.execPath, join(ROOT, "cli.ts"), "up", "--data", data, "--port", "0", "--servers", "2", "--log-format", "json"], {
    stdout: Bun.file(log),
    stderr: Bun.file(`${log}.err`),
  });
  // The first server has said it is listening: up is still starting (it says "up" once both are registered).
  await waitFor(() => existsSync(log) && /server \S+ listening on/.test(readFileSync(log, "utf8")), "a server to start", 60_000).catch((e) => {
    throw new Error(`${e.message}: ${existsSync(log) ? readFileSync(log, "utf8") : ""} ${existsSync(`${log}.err`) ? readFileSync(`${log}.err`, "utf8") : ""}`);
  });
  const children = running(`-P ${up.pid}`).split("\n").filter(Boolean).map(Number);
  up.kill("SIGTERM");
  expect(await up.exited).toBe(0);
  expect(children.length).toBeGreaterThan(0);
  await waitFor(() => children.every((pid) => !alive(pid)), "every server up started to exit", 15_000);
  expect(running(`postgres -D ${data}`)).toBe("");
}, 90_000);
