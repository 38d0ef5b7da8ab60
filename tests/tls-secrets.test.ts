/**
 * Secrets stay off the command line, which every local user can read in
 * `ps`: `chatterbox up` hands its servers the database URL through the
 * environment. (The bench's servers: tests/bench.test.ts.) And the roles run
 * as separate processes, as an operator over several hosts would run them.
 */
import { afterAll, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { askBalancer } from "../balancer/ask";
import { fingerprint } from "../net/ca";
import { ROOT, spawnServer, type ServerProcess } from "./support/cluster";
import { testDatabaseUrl } from "./support/pg";
import { seedCluster, TEST_CA } from "./support/tls";

/**
 * The client home of the processes started here: whatever they pin on first
 * use is this file's, not a CA another test's cluster left under a reused port.
 */
const home = mkdtempSync(join(tmpdir(), "chatterbox-secrets-home-"));
afterAll(() => rmSync(home, { recursive: true, force: true }));

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
    env: { ...process.env, DATABASE_URL: url, CHATTERBOX_HOME: home },
    stdout: "pipe",
    stderr: "pipe",
  });
  try {
    let out = "";
    const reader = up.stdout.getReader();
    while (!out.includes("Ctrl-C stops everything.")) {
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

test("`balance` and `serve` as separate processes take the URL from the environment and speak TLS under the cluster CA", async () => {
  const url = await testDatabaseUrl();
  await seedCluster(url);
  const balance = Bun.spawn([process.execPath, join(ROOT, "cli.ts"), "balance", "--port", "0"], {
    env: { ...process.env, DATABASE_URL: url, CHATTERBOX_HOME: home },
    stdout: "pipe",
    stderr: "ignore",
  });
  let server: ServerProcess | undefined;
  try {
    let out = "";
    const reader = balance.stdout.getReader();
    while (!/cluster CA fingerprint/.test(out)) {
      const { value, done } = await reader.read();
      if (done) throw new Error(`balance exited: ${out}`);
      out += new TextDecoder().decode(value);
    }
    expect(out).toContain(fingerprint(TEST_CA.certPem));
    const addr = /balancer listening on (\S+)/.exec(out)![1]!;
    server = await spawnServer(url, addr);
    // This process trusts only the test CA: an answer means TLS under it, and a registered server.
    let answer: string | undefined;
    while (!answer) answer = await askBalancer(addr).catch(() => undefined);
    expect(answer).toBe(server.addr);
  } finally {
    await server?.kill9();
    balance.kill("SIGTERM");
    await balance.exited;
  }
}, 60_000);
