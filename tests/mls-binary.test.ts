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

test("the compiled chatterbox sends a direct message over MLS between two homes, and reads it", async () => {
  const { ROOT } = await import("./support/cluster");
  const { Database } = await import("bun:sqlite");
  const { chmodSync } = await import("node:fs");
  const binary = join(ROOT, "dist", "chatterbox");
  const build = Bun.spawnSync([process.execPath, "scripts/build.ts", binary], { cwd: ROOT, stderr: "pipe" });
  expect(build.exitCode).toBe(0);
  chmodSync(work, 0o755);
  const env: Record<string, string> = { ...(process.env as Record<string, string>), CHATTERBOX_HOME: join(work, "home"), CHATTERBOX_PASSWORD: "mls binary password", CHATTERBOX_TEST_KDF: "1" };
  delete env.DATABASE_URL;
  delete env.CHATTERBOX_MLS;
  const port = 20_000 + Math.floor(Math.random() * 30_000);
  const up = Bun.spawn([binary, "up", "--port", String(port), "--servers", "1", "--data", join(work, "data")], { env, stdout: "pipe", stderr: "pipe" });
  try {
    const reader = up.stdout.getReader();
    let said = "";
    while (!said.includes("ChatterBox is up.")) {
      const { value, done } = await reader.read();
      if (done) throw new Error(`up exited: ${said}`);
      said += new TextDecoder().decode(value);
    }
    const run = async (...args: string[]) => {
      const proc = Bun.spawn([binary, ...args, "--balancer", `127.0.0.1:${port}`], { env, stdout: "pipe", stderr: "pipe" });
      const [out, err] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text()]);
      return { code: await proc.exited, out, err };
    };
    expect((await run("signup", "--user", "malice")).code).toBe(0);
    expect((await run("signup", "--user", "mbob")).code).toBe(0);
    // bob's device publishes its MLS keys at its first login
    expect((await run("inbox", "--user", "mbob", "--json")).code).toBe(0);
    const sent = await run("send", "--user", "malice", "--to", "mbob", "hello over mls from the binary");
    expect(sent.err).toBe("");
    expect(sent.code).toBe(0);
    const inbox = await run("inbox", "--user", "mbob", "--json");
    const lines = inbox.out.trim().split("\n").map((l) => JSON.parse(l));
    expect(lines).toMatchObject([{ type: "message", from: "malice", text: "hello over mls from the binary", verified: true }]);
    // both devices hold the conversation's MLS group in their store
    for (const user of ["malice", "mbob"]) {
      const db = new Database(join(work, "home", user, "store.db"), { readonly: true });
      expect(db.query("select label from mls_groups").all()).toEqual([{ label: "dm:malice:mbob" }]);
      db.close();
    }
  } finally {
    up.kill("SIGTERM");
    await up.exited;
  }
}, 120_000);
