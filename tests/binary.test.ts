/**
 * The product as users get it: the compiled binary, `chatterbox up` on its
 * embedded PostgreSQL, then signup, send and inbox through the same binary;
 * and the same binary copied alone into an empty folder, with no node_modules
 * anywhere above it, running the whole system from the PostgreSQL it carries.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { chmodSync, mkdtempSync, readdirSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Subprocess } from "bun";
import { ROOT } from "./support/cluster";

const BINARY = join(ROOT, "dist", "chatterbox");
const work = mkdtempSync(join(tmpdir(), "chatterbox-binary-"));
// As root, PostgreSQL runs as the postgres user, who must be able to enter the data folder's parent.
chmodSync(work, 0o755);
const env: Record<string, string> = {
  ...(process.env as Record<string, string>),
  CHATTERBOX_HOME: join(work, "home"),
  CHATTERBOX_PASSWORD: "binary test password",
  CHATTERBOX_TEST_KDF: "1",
};
delete env.DATABASE_URL;
let up: Subprocess<"ignore", "pipe", "pipe">;
let port = 0;
let upOutput = "";
let upReader: ReadableStreamDefaultReader<Uint8Array>;

/** A port with the next two free as well, for the balancer and two servers. */
function freePorts(): number {
  for (;;) {
    const base = 20_000 + Math.floor(Math.random() * 30_000);
    const held: { stop(closeActive?: boolean): void }[] = [];
    try {
      for (let i = 0; i < 3; i++) held.push(Bun.listen({ hostname: "127.0.0.1", port: base + i, socket: { data() {} } }));
      return base;
    } catch {
      // taken: try another
    } finally {
      for (const l of held) l.stop(true);
    }
  }
}

async function run(...args: string[]): Promise<{ code: number; out: string; err: string }> {
  return runAt(BINARY, port, ...args);
}

async function runAt(binary: string, balancerPort: number, ...args: string[]): Promise<{ code: number; out: string; err: string }> {
  const proc = Bun.spawn([binary, ...args, "--balancer", `127.0.0.1:${balancerPort}`], { env, stdout: "pipe", stderr: "pipe" });
  const [out, err] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text()]);
  return { code: await proc.exited, out, err };
}

beforeAll(async () => {
  const build = Bun.spawnSync([process.execPath, "scripts/build.ts", BINARY], { cwd: ROOT, stderr: "pipe" });
  if (build.exitCode !== 0) throw new Error(`build failed: ${build.stderr.toString()}`);
  port = freePorts();
  up = Bun.spawn([BINARY, "up", "--port", String(port), "--servers", "2", "--data", join(work, "data")], { env, stdout: "pipe", stderr: "pipe" });
  upReader = up.stdout.getReader() as ReadableStreamDefaultReader<Uint8Array>;
  const deadline = Date.now() + 45_000;
  while (!upOutput.includes("ChatterBox is up.")) {
    if (Date.now() > deadline) throw new Error(`chatterbox up did not start: ${upOutput}`);
    const { value, done } = await upReader.read();
    if (done) throw new Error(`chatterbox up exited: ${upOutput}${await new Response(up.stderr).text()}`);
    upOutput += new TextDecoder().decode(value);
  }
}, 90_000);

afterAll(async () => {
  up?.kill("SIGKILL");
  rmSync(work, { recursive: true, force: true });
});

test("the compiled binary runs the whole system: up, signup, send, inbox", async () => {
  expect((await run("signup", "--user", "alice")).code).toBe(0);
  expect((await run("signup", "--user", "bob")).code).toBe(0);
  const sent = await run("send", "--user", "alice", "--to", "bob", "hello from the binary");
  expect(sent.err).toBe("");
  expect(sent.code).toBe(0);
  expect(sent.out).toMatch(/Sent \(message \d+\)/);
  const inbox = await run("inbox", "--user", "bob", "--json");
  expect(inbox.code).toBe(0);
  const lines = inbox.out.trim().split("\n").map((l) => JSON.parse(l));
  expect(lines).toHaveLength(1);
  expect(lines[0]).toMatchObject({ type: "message", from: "alice", to: "bob", text: "hello from the binary", verified: true });
  // Acknowledged: nothing waits the second time.
  expect((await run("inbox", "--user", "bob", "--json")).out.trim()).toBe("");
});

test("the binary sends a file that arrives byte for byte under downloads/", async () => {
  const path = join(work, "photo.bin");
  const bytes = crypto.getRandomValues(new Uint8Array(700_000));
  await Bun.write(path, bytes);
  const sent = await run("send", "--user", "alice", "--to", "bob", "--file", path);
  expect(sent.err).toBe("");
  expect(sent.code).toBe(0);
  const inbox = await run("inbox", "--user", "bob", "--json");
  expect(inbox.code).toBe(0);
  const saved = inbox.out
    .trim()
    .split("\n")
    .map((l) => JSON.parse(l))
    .find((e) => e.type === "file");
  expect(saved.saved).toBe(join(env.CHATTERBOX_HOME!, "bob", "downloads", "alice", "photo.bin"));
  expect(new Uint8Array(await Bun.file(saved.saved).arrayBuffer())).toEqual(bytes);
});

test("a clear error, and a non-zero exit, for a message to nobody", async () => {
  const result = await run("send", "--user", "alice", "--to", "nobody", "hello?");
  expect(result.code).toBe(1);
  expect(result.err).toContain("E_NO_SUCH_USER");
});

test("the binary alone in an empty folder far from the repository runs up on the PostgreSQL it carries", async () => {
  const folder = join(work, "lonely");
  const lonely = join(folder, "chatterbox");
  await Bun.write(lonely, Bun.file(BINARY));
  chmodSync(lonely, 0o755);
  chmodSync(folder, 0o755);
  expect(readdirSync(folder)).toEqual(["chatterbox"]);
  const at = freePorts();
  const metricsAt = freePorts();
  const lonelyUp = Bun.spawn([lonely, "up", "--data", join(folder, "data"), "--port", String(at), "--servers", "1", "--log-format", "json", "--metrics", String(metricsAt)], {
    cwd: folder,
    env: { ...env, CHATTERBOX_PG_DIR: "" },
    stdout: Bun.file(join(work, "lonely-up.out")),
    stderr: Bun.file(join(work, "lonely-up.err")),
  });
  try {
    const deadline = Date.now() + 60_000;
    while (!(await Bun.file(join(work, "lonely-up.out")).text()).includes("ChatterBox is up.")) {
      if (lonelyUp.exitCode !== null || Date.now() > deadline) throw new Error(`up did not start: ${await Bun.file(join(work, "lonely-up.err")).text()}`);
      await Bun.sleep(100);
    }
    // The binaries were unpacked once, beside the data folder, from inside the binary.
    const unpacked = readdirSync(folder).filter((name) => name.startsWith("pgsql-"));
    expect(unpacked).toHaveLength(1);
    expect(statSync(join(folder, unpacked[0]!, "bin", "postgres")).mode & 0o111).not.toBe(0);

    expect((await runAt(lonely, at, "signup", "--user", "carol")).code).toBe(0);
    expect((await runAt(lonely, at, "signup", "--user", "dave")).code).toBe(0);
    expect((await runAt(lonely, at, "send", "--user", "carol", "--to", "dave", "from far away")).code).toBe(0);
    const inbox = await runAt(lonely, at, "inbox", "--user", "dave", "--json");
    expect(inbox.code).toBe(0);
    expect(JSON.parse(inbox.out.trim())).toMatchObject({ from: "carol", text: "from far away", verified: true });

    // The operations tools work from the lone binary too: metrics, JSON logs, status.
    const serverMetrics = await (await fetch(`http://127.0.0.1:${metricsAt + 1}/metrics`)).text();
    expect(serverMetrics).toMatch(/^chatterbox_messages_stored_total 1$/m);
    expect(serverMetrics).toMatch(/^chatterbox_process_resident_memory_bytes \d+/m);
    expect(await (await fetch(`http://127.0.0.1:${metricsAt}/metrics`)).text()).toMatch(/^chatterbox_balancer_servers 1$/m);
    const logged = (await Bun.file(join(work, "lonely-up.out")).text()).split("\n").filter((l) => l.startsWith("{")).map((l) => JSON.parse(l));
    expect(logged.some((l) => l.role === "server" && typeof l.server === "string" && String(l.msg).includes("listening on"))).toBe(true);
    const status = Bun.spawnSync([lonely, "status", "--balancer", `127.0.0.1:${at}`, "--data", join(folder, "data")], { env, stdout: "pipe", stderr: "pipe" });
    expect(status.exitCode).toBe(0);
    expect(status.stdout.toString()).toMatch(/^server {4}127\.0\.0\.1:\d+ {2}version \S+, \d+ connections?, 0 logged in/m);
    expect(status.stdout.toString()).toMatch(/^database  postgres:\/\/chatterbox:\*\*\*@127\.0\.0\.1:\d+\/chatterbox  PostgreSQL 18/m);
  } finally {
    lonelyUp.kill("SIGTERM");
    expect(await lonelyUp.exited).toBe(0);
  }
}, 90_000);

test("chatterbox up stops everything cleanly on SIGTERM", async () => {
  up.kill("SIGTERM");
  expect(await up.exited).toBe(0);
  for (;;) {
    const { value, done } = await upReader.read();
    if (done) break;
    upOutput += new TextDecoder().decode(value);
  }
  expect(upOutput).toContain("Stopped.");
  // The embedded PostgreSQL is gone too: nothing answers on its data directory's lock.
  const pids = Bun.spawnSync(["pgrep", "-f", `postgres -D ${join(work, "data")}`]).stdout.toString().trim();
  expect(pids).toBe("");
});
