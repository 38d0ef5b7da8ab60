/**
 * What an operator reads when a start fails: which address is taken and why,
 * that it is the database (and which one, without its password) that cannot be
 * reached, and which ChatterBox already uses a data folder.
 */
import { afterAll, expect, test } from "bun:test";
import { chmodSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startCluster, type Cluster } from "./support/cluster";
import { spawnRole } from "./support/roles";

const work = mkdtempSync(join(tmpdir(), "chatterbox-messages-"));
// As root, PostgreSQL runs as the postgres user, who must be able to enter the data folder's parent.
chmodSync(work, 0o755);
let cluster: Cluster | undefined;
afterAll(async () => {
  await cluster?.stop();
  rmSync(work, { recursive: true, force: true });
});

async function failure(args: string[], env: Record<string, string> = {}): Promise<string> {
  const role = spawnRole(args, env);
  expect(await role.proc.exited).toBe(1);
  const text = role.stderr.join("\n");
  // A sentence, not a stack trace.
  expect(text).not.toContain("    at ");
  return text;
}

function holdPort(): { port: number; release(): void } {
  const held = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } });
  return { port: held.port, release: () => held.stop(true) };
}

test("a chat port in use names the host, the port and 'address in use'", async () => {
  cluster ??= await startCluster({ servers: 0 });
  const held = holdPort();
  try {
    const text = await failure(["serve", String(held.port), "--database-url", cluster.url]);
    expect(text).toContain(`127.0.0.1:${held.port}`);
    expect(text).toContain("address in use");
  } finally {
    held.release();
  }
});

test("a balancer port in use says so too", async () => {
  cluster ??= await startCluster({ servers: 0 });
  const held = holdPort();
  try {
    const text = await failure(["balance", "--port", String(held.port), "--database-url", cluster.url]);
    expect(text).toContain(`127.0.0.1:${held.port}`);
    expect(text).toContain("address in use");
  } finally {
    held.release();
  }
});

test("a metrics port in use says so, and the server does not stay half-started", async () => {
  cluster ??= await startCluster({ servers: 0 });
  const held = holdPort();
  try {
    const text = await failure(["serve", "0", "--database-url", cluster.url, "--metrics", String(held.port)]);
    expect(text).toContain(`127.0.0.1:${held.port}`);
    expect(text).toContain("address in use");
    expect(text).toContain("metrics");
  } finally {
    held.release();
  }
});

test("an unreachable database is named as the database, by its URL without the password", async () => {
  const held = holdPort();
  held.release(); // a port where nothing listens now
  const url = `postgres://chatterbox:hunter2-secret@127.0.0.1:${held.port}/chatterbox`;
  for (const args of [["serve", "0", "--database-url", url], ["db", "migrate", "--database-url", url], ["up", "--database-url", url, "--port", "0"]]) {
    const text = await failure(args);
    expect(text).toContain("database");
    expect(text).toContain(`postgres://chatterbox:***@127.0.0.1:${held.port}/chatterbox`);
    expect(text).toContain("connection refused");
    expect(text).not.toContain("hunter2-secret");
  }
});

test("a second `up` on the same data folder names the ChatterBox that has it, by PID", async () => {
  const data = join(work, "data");
  const first = spawnRole(["up", "--data", data, "--port", "0", "--servers", "1", "--log-format", "json"]);
  try {
    await first.waitForLine(/ChatterBox is up\./, 60_000);
    const text = await failure(["up", "--data", data, "--port", "0", "--servers", "1"]);
    expect(text).toContain(`Another ChatterBox (PID ${first.proc.pid}) is using the data folder ${data}`);
    expect(text).not.toContain("postmaster.pid");
  } finally {
    expect(await first.stop()).toBe(0);
  }
}, 90_000);
