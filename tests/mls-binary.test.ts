// MLS inside a compiled binary: the self-check script built with `bun build --compile` (as
// scripts/build.ts builds dist/chatterbox) runs from an empty folder with no node_modules above it.
import { afterAll, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const work = mkdtempSync(join(tmpdir(), "chatterbox-mls-binary-"));
afterAll(() => rmSync(work, { recursive: true, force: true }));

test("the compiled binary creates a group, adds a device, updates, and opens a message exactly once", async () => {
  const binary = join(work, "mls-selfcheck");
  const build = Bun.spawnSync([process.execPath, "build", "--compile", join(import.meta.dir, "support", "mls-selfcheck.ts"), "--outfile", binary], { stderr: "pipe", stdout: "pipe" });
  expect(build.stderr.toString()).not.toContain("error");
  expect(build.exitCode).toBe(0);
  const proc = Bun.spawn([binary], { cwd: work, stdout: "pipe", stderr: "pipe" });
  const [out, err] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text()]);
  expect(err).toBe("");
  expect(await proc.exited).toBe(0);
  expect(JSON.parse(out)).toEqual({ epoch: 2, text: "hello from inside the binary", replay: "E_MLS_REPLAY" });
});
