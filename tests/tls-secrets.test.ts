/**
 * Secrets stay off the command line, which every local user can read in
 * `ps`: `chatterbox up` hands its servers the database URL through the
 * environment. (The bench's servers: tests/bench.test.ts.)
 */
import { expect, test } from "bun:test";
import { join } from "node:path";
import { ROOT } from "./support/cluster";
import { testDatabaseUrl } from "./support/pg";
import { seedCluster } from "./support/tls";

async function freePorts(count: number): Promise<number> {
  // A run of free ports: up takes the one it is given and the next `count`.
  for (;;) {
    const base = 20_000 + Math.floor(Math.random() * 30_000);
    const taken = [];
    try {
      for (let i = 0; i <= count; i++) taken.push(Bun.listen({ hostname: "127.0.0.1", port: base + i, socket: { data() {} } }));
      return base;
    } catch {
      // one was busy: try another run
    } finally {
      for (const l of taken) l.stop(true);
    }
  }
}

test("while `up` runs, no process shows the database password on its command line", async () => {
  const url = await testDatabaseUrl();
  await seedCluster(url);
  const password = decodeURIComponent(new URL(url).password);
  expect(password.length).toBeGreaterThan(8);
  const port = await freePorts(2);
  const up = Bun.spawn([process.execPath, join(ROOT, "cli.ts"), "up", "--servers", "2", "--port", String(port)], {
    env: { ...process.env, DATABASE_URL: url },
    stdout: "pipe",
    stderr: "pipe",
  });
  try {
    let out = "";
    const reader = up.stdout.getReader();
    while (!out.includes("ChatterBox is up.")) {
      const { value, done } = await reader.read();
      if (done) throw new Error(`up exited: ${out}${await new Response(up.stderr).text()}`);
      out += new TextDecoder().decode(value);
    }
    expect(out).toMatch(/cluster CA\s+SHA256:[0-9A-F:]{95}/);
    const ps = await new Response(Bun.spawn(["ps", "-eo", "args"], { stdout: "pipe" }).stdout).text();
    // Its servers are running, and can be seen: the check looks where the password used to be.
    expect(ps.split("\n").filter((line) => line.includes(" serve ") && line.includes(`--balancer 127.0.0.1:${port}`))).toHaveLength(2);
    expect(ps).not.toContain(password);
  } finally {
    up.kill("SIGTERM");
    await up.exited;
  }
}, 60_000);
