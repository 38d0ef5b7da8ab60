/**
 * The group bench with real MLS clients (--mls, bench/mls.ts): each group's
 * first member makes its MLS group, every other member joins from the
 * welcome, and every message is one MLS ciphertext that each member decrypts
 * (one that does not open counts as E_DECRYPT). Nothing acknowledged is lost.
 */
import { expect, test } from "bun:test";
import { chmodSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ROOT } from "./support/cluster";

test("a short group bench over MLS: every acknowledged message is decrypted by every other member", async () => {
  const work = mkdtempSync(join(tmpdir(), "chatterbox-mls-bench-"));
  chmodSync(work, 0o755);
  const env: Record<string, string> = { ...(process.env as Record<string, string>) };
  delete env.DATABASE_URL;
  try {
    const args = ["bench", "--data", join(work, "bench"), "--pattern", "group", "--group-size", "10", "--clients", "20", "--mls", "--duration", "2", "--warmup", "0.5", "--rate", "100", "--json"];
    const proc = Bun.spawn([process.execPath, join(ROOT, "cli.ts"), ...args], { env, stdout: "pipe", stderr: "pipe" });
    const [out, err] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text()]);
    expect(await proc.exited, err).toBe(0);
    const report = JSON.parse(out);
    expect(report.config).toMatchObject({ pattern: "group", mls: true, groupSize: 10 });
    expect(report.sent).toBeGreaterThan(100);
    expect(report.acknowledged).toBe(report.sent);
    expect(report.lost).toBe(0);
    expect(report.errors ?? {}).toEqual({});
    // nine other members read each message
    expect(report.totals.deliveries).toBe(report.totals.expectedDeliveries);
    expect(report.delivered).toBe(report.acknowledged * 9);
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}, 120_000);
