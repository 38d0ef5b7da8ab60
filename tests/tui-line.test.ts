/**
 * Line mode and the command line as a new user meets them, in a real
 * terminal (tmux) where a terminal matters: `chat --plain`, signup's
 * password prompt, and the one-shot commands' refusals.
 */
import { afterAll, afterEach, beforeAll, expect, setDefaultTimeout, test } from "bun:test";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { connectUser, PASSWORD, ROOT, signup, startCluster, uniqueName, waitFor, type Cluster, type TestUser } from "./support/cluster";
import { caFile, Tmux } from "./support/tmux";

setDefaultTimeout(60_000);

let cluster: Cluster;
const homes: string[] = [];
const terms: Tmux[] = [];
const users: TestUser[] = [];

beforeAll(async () => {
  cluster = await startCluster({ servers: 1 });
}, 60_000);

afterEach(() => {
  for (const t of terms.splice(0)) t.stop();
});

afterAll(async () => {
  for (const u of users) await u.session.close().catch(() => {});
  await cluster?.stop();
  for (const home of homes) rmSync(home, { recursive: true, force: true });
});

function home(): string {
  const dir = mkdtempSync(join(tmpdir(), "chatterbox-line-home-"));
  homes.push(dir);
  return dir;
}

function terminal(args: string[], env: Record<string, string>, stderrOnScreen = false): Tmux {
  const term = new Tmux();
  terms.push(term);
  term.start([process.execPath, join(ROOT, "cli.ts"), ...args, "--balancer", cluster.balancerAddr], { CHATTERBOX_TEST_KDF: "1", CHATTERBOX_CA: caFile(term.dir), ...env }, 100, 20, stderrOnScreen);
  return term;
}

test("chat --plain on a terminal is line mode: /file of a missing file says so, /quit leaves without another prompt", async () => {
  const alice = uniqueName("alice");
  await signup(cluster.balancerAddr, alice);
  const term = terminal(["chat", "--plain", "--user", alice], { CHATTERBOX_HOME: home(), CHATTERBOX_PASSWORD: PASSWORD });
  await term.waitForScreen((s) => s.includes(`* logged in as ${alice}`), "line mode to log in");
  expect(term.screen()).not.toContain("Conversations");
  term.type("/file /no/such/file.png");
  term.keys("Enter");
  await term.waitForScreen((s) => s.includes("no such file: /no/such/file.png"), "the refusal");
  term.type("/quit");
  term.keys("Enter");
  const screen = await term.waitForScreen((s) => s.includes("[exited 0]"), "chat to exit");
  const rows = screen.replace(/\n+$/, "").split("\n");
  // No prompt is drawn after the /quit line.
  const after = rows.slice(rows.indexOf("> /quit") + 1, rows.indexOf("[exited 0]"));
  expect(rows).toContain("> /quit");
  expect(after.filter((r) => r.trim() !== "")).toEqual([]);
});

test("signup at a terminal asks for the password twice and refuses two different ones", async () => {
  const name = uniqueName("carol");
  const term = terminal(["signup", "--user", name], { CHATTERBOX_HOME: home() }, true);
  await term.waitForScreen((s) => s.includes("Password:"), "the first prompt");
  term.type("a long enough password 1");
  term.keys("Enter");
  await term.waitForScreen((s) => s.includes("Password again:"), "the second prompt");
  term.type("a long enough password 2");
  term.keys("Enter");
  const screen = await term.waitForScreen((s) => s.includes("[exited"), "signup to exit");
  expect(screen).toContain("The two passwords differ");
  expect(screen).not.toContain(`Account ${name} created`);
});

test("send refuses an empty message; a usage error is one line and a pointer to --help", async () => {
  const alice = uniqueName("alice");
  await signup(cluster.balancerAddr, alice);
  const bob = uniqueName("bob");
  await signup(cluster.balancerAddr, bob);
  const env = { ...process.env, CHATTERBOX_HOME: home(), CHATTERBOX_PASSWORD: PASSWORD, CHATTERBOX_TEST_KDF: "1" };
  const empty = Bun.spawnSync([process.execPath, join(ROOT, "cli.ts"), "send", "--balancer", cluster.balancerAddr, "--user", alice, "--to", bob, ""], { env, stdout: "pipe", stderr: "pipe" });
  expect(empty.exitCode).not.toBe(0);
  expect(empty.stderr.toString()).toContain("The message is empty");
  const usage = Bun.spawnSync([process.execPath, join(ROOT, "cli.ts"), "send", "--to", bob, "hi"], { env, stdout: "pipe", stderr: "pipe" });
  expect(usage.exitCode).toBe(1);
  expect(usage.stderr.toString().trim().split("\n")).toEqual(["chatterbox: Missing required argument: --user", "Run `chatterbox send --help` for usage."]);
  expect(usage.stdout.toString()).toBe("");
  const help = Bun.spawnSync([process.execPath, join(ROOT, "cli.ts"), "chat", "--help"], { env, stdout: "pipe", stderr: "pipe" });
  expect(help.stdout.toString()).toContain("--plain");
  expect(help.stdout.toString()).not.toContain("\x1b[");
});

test("a DM that arrives in line mode from a pipe goes to the conversation it came from only after /dm", async () => {
  const alice = uniqueName("alice");
  await signup(cluster.balancerAddr, alice);
  const bob = uniqueName("bob");
  await signup(cluster.balancerAddr, bob);
  const bobUser = await connectUser(cluster.balancerAddr, bob);
  users.push(bobUser);
  const proc = Bun.spawn([process.execPath, join(ROOT, "cli.ts"), "chat", "--balancer", cluster.balancerAddr, "--user", alice], {
    env: { ...process.env, CHATTERBOX_HOME: home(), CHATTERBOX_PASSWORD: PASSWORD, CHATTERBOX_TEST_KDF: "1" },
    stdin: "pipe",
    stdout: "pipe",
    stderr: "pipe",
  });
  proc.stdin.write(`/dm ${bob}\nhello from a pipe\n/quit\n`);
  proc.stdin.end();
  const out = await new Response(proc.stdout).text();
  expect(await proc.exited).toBe(0);
  expect(out).toContain(`* talking to ${bob}`);
  expect(out).toMatch(new RegExp(`\\[sent \\d+\\] ${alice} → ${bob}: hello from a pipe`));
  await waitFor(() => bobUser.received.some((m) => m.text === "hello from a pipe"), "bob to receive it");
});

test("/open opens the last file received in the conversation with the system's opener, and never one that would run", async () => {
  const alice = uniqueName("alice");
  await signup(cluster.balancerAddr, alice);
  const bob = uniqueName("bob");
  await signup(cluster.balancerAddr, bob);
  const bobUser = await connectUser(cluster.balancerAddr, bob);
  users.push(bobUser);
  const dir = home();
  // A stand-in for xdg-open that records what it was asked to open.
  mkdirSync(join(dir, "bin"));
  writeFileSync(join(dir, "bin", "xdg-open"), `#!/bin/sh\necho "$1" >> ${join(dir, "opened")}\n`, { mode: 0o755 });
  writeFileSync(join(dir, "notes.txt"), "some notes");
  writeFileSync(join(dir, "run-me.sh"), "echo hi");
  const proc = Bun.spawn([process.execPath, join(ROOT, "cli.ts"), "chat", "--json", "--balancer", cluster.balancerAddr, "--user", alice], {
    env: { ...process.env, PATH: `${join(dir, "bin")}:${process.env.PATH}`, CHATTERBOX_HOME: join(dir, "home"), CHATTERBOX_PASSWORD: PASSWORD, CHATTERBOX_TEST_KDF: "1" },
    stdin: "pipe",
    stdout: "pipe",
    stderr: "pipe",
  });
  const lines: Record<string, unknown>[] = [];
  void (async () => {
    let partial = "";
    for await (const chunk of proc.stdout) {
      const parts = (partial + new TextDecoder().decode(chunk)).split("\n");
      partial = parts.pop()!;
      for (const l of parts) if (l.startsWith("{")) lines.push(JSON.parse(l));
    }
  })();
  proc.stdin.write(`/dm ${bob}\n`);
  await waitFor(() => lines.some((l) => l.type === "status" && String(l.text).startsWith("talking to")), "the switch");
  await bobUser.session.sendFile({ to: alice }, join(dir, "notes.txt"));
  await waitFor(() => lines.some((l) => l.type === "file"), "the file to be saved", 30_000);
  const savedPath = lines.find((l) => l.type === "file")!.saved as string;
  proc.stdin.write("/open\n");
  // The stand-in's line is whole once its newline is there (the file appears before its write lands).
  await waitFor(() => existsSync(join(dir, "opened")) && readFileSync(join(dir, "opened"), "utf8").endsWith("\n"), "the opener to run", 30_000);
  expect(readFileSync(join(dir, "opened"), "utf8").trim()).toBe(savedPath);
  await bobUser.session.sendFile({ to: alice }, join(dir, "run-me.sh"));
  await waitFor(() => lines.filter((l) => l.type === "file").length === 2, "the second file", 30_000);
  proc.stdin.write("/open\n/quit\n");
  proc.stdin.end();
  expect(await proc.exited).toBe(0);
  expect(lines.some((l) => l.type === "error" && String(l.message).includes("would run"))).toBe(true);
  expect(readFileSync(join(dir, "opened"), "utf8").trim().split("\n")).toHaveLength(1);
});
