/**
 * The full-screen client in a real terminal: tmux runs `bun cli.ts chat`
 * against a real cluster, send-keys types, capture-pane reads the screen, and
 * each test asserts on what the person would see.
 */
import { afterAll, afterEach, beforeAll, expect, setDefaultTimeout, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { connectUser, PASSWORD, ROOT, signup, startCluster, uniqueName, type Cluster, type TestUser } from "./support/cluster";
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

/** Signs up `name` and opens the full-screen client for them in a terminal `cols` × `rows`. */
async function openTui(name: string, cols = 100, rows = 30): Promise<Tmux> {
  await signup(cluster.balancerAddr, name);
  const home = mkdtempSync(join(tmpdir(), "chatterbox-tui-home-"));
  homes.push(home);
  const term = new Tmux();
  terms.push(term);
  term.start([process.execPath, join(ROOT, "cli.ts"), "chat", "--balancer", cluster.balancerAddr, "--user", name], {
    CHATTERBOX_HOME: home,
    CHATTERBOX_PASSWORD: PASSWORD,
    CHATTERBOX_TEST_KDF: "1",
    CHATTERBOX_CA: caFile(term.dir),
    TERM: "xterm-256color",
  }, cols, rows);
  await term.waitForScreen((s) => s.includes("logged in as"), "the client to log in");
  return term;
}

/** The rows right of the conversation list (the pane, the status bar and the input), trailing blanks cut. */
function right(screen: string): string[] {
  return screen.split("\n").map((row) => (row.includes("│") ? row.slice(row.indexOf("│") + 1) : row).replace(/\s+$/, ""));
}

async function other(name: string): Promise<TestUser> {
  await signup(cluster.balancerAddr, name);
  const u = await connectUser(cluster.balancerAddr, name);
  users.push(u);
  return u;
}

test("a message arrives while a half-typed line wider than the terminal is edited, and both show intact", async () => {
  const alice = uniqueName("alice");
  const bob = await other(uniqueName("bob"));
  const term = await openTui(alice, 80, 24);
  term.type(`/dm ${bob.name}`);
  term.keys("Enter");
  await term.waitForScreen((s) => s.includes(`${bob.name}>`), "the DM to open");
  const long = Array.from({ length: 14 }, (_, i) => `word${i}`).join(" ") + " " + "x".repeat(40);
  term.type(long);
  await bob.session.sendText(alice, "hello while you type");
  const screen = await term.waitForScreen((s) => s.includes("hello while you type"), "the message to show");
  expect(screen).toContain(`${bob.name}: hello while you type`);
  // The input wraps onto further rows, whole, under the messages, and no row is left over from before.
  const rows = right(screen);
  expect(rows.join("")).toContain(`${bob.name}> ${long}`);
  expect(rows.filter((r) => r.includes("hello while you type"))).toHaveLength(1);
});
