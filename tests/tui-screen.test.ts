/**
 * The full-screen client in a real terminal: tmux runs `bun cli.ts chat`
 * against a real cluster, send-keys types, capture-pane reads the screen, and
 * each test asserts on what the person would see.
 */
import { afterAll, afterEach, beforeAll, expect, setDefaultTimeout, test } from "bun:test";
import { Database } from "bun:sqlite";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { openDatabase } from "../db/connect";
import { connectPersistent, connectUser, PASSWORD, ROOT, signup, startCluster, uniqueName, until, waitFor, type Cluster, type TestUser } from "./support/cluster";
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
async function openTui(name: string, cols = 100, rows = 30, signUp = true, command = [process.execPath, join(ROOT, "cli.ts")], env: Record<string, string> = {}): Promise<Tmux> {
  if (signUp) await signup(cluster.balancerAddr, name);
  const home = mkdtempSync(join(tmpdir(), "chatterbox-tui-home-"));
  homes.push(home);
  const term = new Tmux();
  terms.push(term);
  term.start([...command, "chat", "--balancer", cluster.balancerAddr, "--user", name], {
    CHATTERBOX_HOME: home,
    CHATTERBOX_PASSWORD: PASSWORD,
    CHATTERBOX_TEST_KDF: "1",
    CHATTERBOX_CA: caFile(term.dir),
    TERM: "xterm-256color",
    ...env,
  }, cols, rows);
  // Logged in: the status bar names the server.
  await term.waitForScreen((s) => s.includes("[connected to "), "the client to log in");
  return term;
}

/** The rows right of the conversation list (the pane, the status bar and the input), trailing blanks cut. */
function right(screen: string): string[] {
  return screen.replace(/\n$/, "").split("\n").map((row) => (row.includes("│") ? row.slice(row.indexOf("│") + 1) : row).replace(/\s+$/, ""));
}

/** Bells in what the client wrote, not counting BEL as the end of an OSC sequence. */
function bells(term: Tmux): number {
  return term.rawOutput().replace(/\x1b\][^\x07\x1b]*\x07/g, "").split("\x07").length - 1;
}

/** How many messages the client's device holds (its local store, read beside the running client). */
function heldCount(user: string): number {
  const home = homes[homes.length - 1]!;
  const db = new Database(join(home, user, "store.db"), { readonly: true });
  try {
    return (db.query("select count(*) as n from messages").get() as { n: number }).n;
  } finally {
    db.close();
  }
}

/** Whether `text` is drawn dim (SGR 2) on a screen captured with its escapes: each SGR sets or clears it, and it lasts across rows. */
function dimAt(styled: string, text: string): boolean {
  const at = styled.indexOf(text);
  expect(at).toBeGreaterThanOrEqual(0);
  let dim = false;
  for (const m of styled.slice(0, at).matchAll(/\x1b\[([0-9;]*)m/g)) {
    const codes = m[1]!.split(";");
    // (a 38;5;N or 38;2;R;G;B colour holds numbers that are not attributes)
    for (let i = 0; i < codes.length; i++) {
      const c = Number(codes[i] || 0);
      if (c === 38 || c === 48) i += codes[i + 1] === "5" ? 2 : 4;
      else if (c === 0 || c === 22) dim = false;
      else if (c === 2) dim = true;
    }
  }
  return dim;
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

test("cursor editing: abc, Left, Left, X gives aXbc, and Up brings the last line back", async () => {
  const alice = uniqueName("alice");
  const bob = await other(uniqueName("bob"));
  const term = await openTui(alice);
  term.type(`/dm ${bob.name}`);
  term.keys("Enter");
  await term.waitForScreen((s) => s.includes(`${bob.name}>`), "the DM to open");
  term.type("abc");
  term.keys("Left", "Left");
  term.type("X");
  await term.waitForScreen((s) => s.includes(`${bob.name}> aXbc`), "the edited line");
  term.keys("Home");
  term.type(">");
  term.keys("End");
  term.type("<");
  term.keys("Enter");
  await term.waitForScreen((s) => right(s).some((r) => r.includes(`${alice}: >aXbc<`)), "the sent line");
  term.keys("Up");
  const screen = await term.waitForScreen((s) => s.includes(`${bob.name}> >aXbc<`), "history to bring the line back");
  expect(right(screen).at(-1)).toBe(`${bob.name}> >aXbc<`);
  // Ctrl-W cuts the word before the cursor, Ctrl-U the rest.
  term.keys("C-w");
  await term.waitForScreen((s) => right(s).at(-1) === `${bob.name}> >`, "Ctrl-W to cut a word");
});

test("switching conversations updates the unread counts and draws the new-messages line", async () => {
  const alice = uniqueName("alice");
  const bob = await other(uniqueName("bob"));
  const carol = await other(uniqueName("carol"));
  const term = await openTui(alice);
  term.type(`/dm ${bob.name}`);
  term.keys("Enter");
  await term.waitForScreen((s) => s.includes(`${bob.name}>`), "the DM to open");
  await carol.session.sendText(alice, "one from carol");
  await carol.session.sendText(alice, "two from carol");
  await term.waitForScreen((s) => s.includes(`${carol.name} (2)`), "carol's unread count");
  expect(term.screen()).not.toContain("one from carol");
  term.keys("C-k");
  term.type(carol.name.slice(0, 6));
  term.keys("Enter");
  const screen = await term.waitForScreen((s) => s.includes("two from carol") && s.includes(`${carol.name}>`), "carol's conversation");
  expect(screen).not.toContain(`${carol.name} (2)`);
  expect(screen).toContain("new messages");
  // Shown is read: carol hears that alice read both.
  const conv = await carol.session.conversationOf({ with: alice });
  for (let tries = 0; ; tries++) {
    const read = (await carol.session.receipts(conv)).find((r) => r.user === alice)?.read ?? 0;
    if (read >= 2) break;
    expect(tries).toBeLessThan(150);
    await Bun.sleep(100);
  }
});

test("scrolling up past what the device holds fetches older history from the server", async () => {
  const alice = uniqueName("alice");
  const bob = await other(uniqueName("bob"));
  // Alice read all of these on another device: this one has none of them.
  await signup(cluster.balancerAddr, alice);
  const elsewhere = await connectUser(cluster.balancerAddr, alice);
  users.push(elsewhere);
  for (let i = 0; i < 90; i++) await bob.session.sendText(alice, `old message ${String(i).padStart(2, "0")}`);
  const conv = await bob.session.conversationOf({ with: alice });
  elsewhere.session.markRead(conv, 90);
  await Bun.sleep(300);
  const term = await openTui(alice, 100, 20, false);
  term.type(`/dm ${bob.name}`);
  term.keys("Enter");
  await term.waitForScreen((s) => s.includes("old message 89"), "the latest messages");
  expect(term.screen()).not.toContain("old message 00");
  // What is on screen came from the server: the device holds none of it.
  expect(heldCount(alice)).toBe(0);
  for (let i = 0; i < 12 && !term.screen().includes("old message 00"); i++) {
    term.keys("PageUp");
    await Bun.sleep(250);
  }
  const screen = await term.waitForScreen((s) => s.includes("old message 00"), "the oldest message after scrolling up");
  expect(screen).not.toContain("old message 89");
  term.keys("PageDown", "PageDown", "PageDown", "PageDown", "PageDown", "PageDown", "PageDown", "PageDown", "PageDown", "PageDown");
  await term.waitForScreen((s) => s.includes("old message 89"), "the bottom again");
});

test("a resize keeps the layout: list, messages, status bar and input", async () => {
  const alice = uniqueName("alice");
  const bob = await other(uniqueName("bob"));
  const term = await openTui(alice, 100, 30);
  term.type(`/dm ${bob.name}`);
  term.keys("Enter");
  await bob.session.sendText(alice, "before the resize");
  await term.waitForScreen((s) => s.includes("before the resize"), "the message");
  term.type("half typed");
  term.resize(70, 16);
  // The layout is redrawn for the new size: every row fits, and the list, pane, bar and input are all there.
  const laidOut = (s: string) => {
    const lines = s.replace(/\n$/, "").split("\n");
    const rows = right(s);
    return (
      lines.length === 16 &&
      lines.every((l) => Bun.stringWidth(l) <= 70) &&
      lines[1]!.includes(bob.name) &&
      rows.at(-1) === `${bob.name}> half typed` &&
      rows.at(-2)!.startsWith("[connected") &&
      rows.some((r) => r.includes(`${bob.name}: before the resize`)) &&
      rows.some((r) => /^─+ .* ─+$/.test(r) && Bun.stringWidth(r) === 70 - 22)
    );
  };
  await term.waitForScreen(laidOut, "the layout at 70 × 16");
  term.resize(120, 40);
  await term.waitForScreen((s) => s.replace(/\n$/, "").split("\n").length === 40 && right(s).at(-1) === `${bob.name}> half typed` && s.split("\n")[1]!.includes(bob.name), "the layout at 120 × 40");
});

test("a message in another conversation rings the bell; one in the conversation on screen does not", async () => {
  const alice = uniqueName("alice");
  const bob = await other(uniqueName("bob"));
  const carol = await other(uniqueName("carol"));
  const term = await openTui(alice);
  term.type(`/dm ${bob.name}`);
  term.keys("Enter");
  await term.waitForScreen((s) => s.includes(`${bob.name}>`), "the DM to open");
  await bob.session.sendText(alice, "on screen");
  await term.waitForScreen((s) => s.includes("on screen"), "bob's message");
  await Bun.sleep(300);
  expect(bells(term)).toBe(0);
  await carol.session.sendText(alice, "elsewhere");
  await term.waitForScreen((s) => s.includes(`${carol.name} (1)`), "carol's unread count");
  await waitFor(() => bells(term) > 0, "the bell");
});

test("quitting restores the terminal; with a draft, Ctrl-C asks first", async () => {
  const alice = uniqueName("alice");
  const bob = await other(uniqueName("bob"));
  const term = await openTui(alice);
  term.type(`/dm ${bob.name}`);
  term.keys("Enter");
  await term.waitForScreen((s) => s.includes(`${bob.name}>`), "the DM to open");
  term.type("not sent yet");
  term.keys("C-c");
  await term.waitForScreen((s) => s.includes("Ctrl-C again to leave"), "the question");
  term.keys("C-c");
  const screen = await term.waitForScreen((s) => s.includes("[exited 0]"), "the client to exit");
  // Back on the main screen, as before: none of the client's drawing is left.
  expect(screen).not.toContain("Conversations");
  expect(screen).not.toContain("not sent yet");
  expect(term.rawOutput()).toContain("\x1b[?1049l");
});

test("the compiled binary opens the full-screen client too", async () => {
  const dir = mkdtempSync(join(tmpdir(), "chatterbox-tui-binary-"));
  homes.push(dir);
  const binary = join(dir, "chatterbox");
  // Not spawnSync: this process runs the cluster, whose heartbeats must go on while the binary builds.
  const build = Bun.spawn([process.execPath, "scripts/build.ts", binary], { cwd: ROOT, stdout: "ignore", stderr: "pipe" });
  expect(await build.exited).toBe(0);
  const alice = uniqueName("alice");
  const bob = await other(uniqueName("bob"));
  const term = await openTui(alice, 100, 30, true, [binary]);
  term.type(`/dm ${bob.name}`);
  term.keys("Enter");
  await bob.session.sendText(alice, "to the binary");
  await term.waitForScreen((s) => s.includes(`${bob.name}: to the binary`) && s.includes("Conversations"), "the message in the binary's client");
  term.keys("C-c");
  await term.waitForScreen((s) => s.includes("[exited 0]"), "the binary to exit");
});

test("/search finds a message this device holds, and /jump scrolls to it", async () => {
  const alice = uniqueName("alice");
  const bob = await other(uniqueName("bob"));
  const term = await openTui(alice, 100, 24);
  term.type(`/dm ${bob.name}`);
  term.keys("Enter");
  await term.waitForScreen((s) => s.includes(`${bob.name}>`), "the DM to open");
  await bob.session.sendText(alice, "the needle is here");
  for (let i = 0; i < 40; i++) await bob.session.sendText(alice, `hay ${i}`);
  await term.waitForScreen((s) => s.includes("hay 39"), "the last message");
  expect(term.screen()).not.toContain("the needle is here");
  term.type("/search needle");
  term.keys("Enter");
  await term.waitForScreen((s) => s.includes("[1]") && s.includes("the needle is here"), "the result");
  term.type("/jump 1");
  term.keys("Enter");
  const screen = await term.waitForScreen((s) => right(s).some((r) => /^\d\d:\d\d (\S+): the needle is here$/.test(r)), "the message in its conversation");
  expect(screen).not.toContain("hay 39");
});

test("each conversation keeps its draft; Ctrl-N/Ctrl-P and Alt-digits switch; who is typing shows in the status bar", async () => {
  const alice = uniqueName("alice");
  const bob = await other(uniqueName("bob"));
  const carol = await other(uniqueName("carol"));
  const term = await openTui(alice);
  term.type(`/dm ${carol.name}`);
  term.keys("Enter");
  await term.waitForScreen((s) => s.includes(`${carol.name}>`), "carol's DM");
  term.type(`/dm ${bob.name}`);
  term.keys("Enter");
  await term.waitForScreen((s) => s.includes(`${bob.name}>`), "bob's DM");
  term.type("draft for bob");
  term.keys("C-n");
  await term.waitForScreen((s) => right(s).at(-1) === `${carol.name}>`, "carol's conversation, with an empty input");
  term.type("draft for carol");
  term.keys("C-p");
  await term.waitForScreen((s) => right(s).at(-1) === `${bob.name}> draft for bob`, "bob's draft back");
  const list = term.screen().split("\n").slice(1, 3).join("\n");
  const carolAt = list.split("\n").findIndex((r) => r.includes(carol.name)) + 1;
  term.keys(`M-${carolAt}`);
  await term.waitForScreen((s) => right(s).at(-1) === `${carol.name}> draft for carol`, "carol's draft back");
  carol.session.typing({ to: alice });
  await term.waitForScreen((s) => right(s).some((r) => r.includes(`${carol.name} is typing…`)), "the typing line");
  // Carol was told when alice typed her draft, though alice had typed to bob just before (one notice a conversation).
  const fromAlice = () => carol.typings.filter((t) => t.from === alice).length;
  await waitFor(() => fromAlice() === 1, "carol told of alice's draft");
  // A command being typed is not typing to carol (past the 3 s between notices, so one would go); a message is.
  term.keys("C-u");
  await Bun.sleep(3_200);
  term.type("/wh");
  await term.waitForScreen((s) => right(s).at(-1) === `${carol.name}> /wh`, "the command half typed");
  await Bun.sleep(1_000);
  expect(fromAlice()).toBe(1);
  term.keys("C-u");
  term.type("hi");
  await waitFor(() => fromAlice() === 2, "carol told that alice is typing again");
});

test("Alt-A goes to the conversation that named me first, then to one with unread, and says when there is none", async () => {
  const alice = uniqueName("alice");
  const bob = await other(uniqueName("bob"));
  const carol = await other(uniqueName("carol"));
  const dave = await other(uniqueName("dave"));
  const term = await openTui(alice);
  term.type(`/dm ${dave.name}`);
  term.keys("Enter");
  await term.waitForScreen((s) => s.includes(`${dave.name}>`), "dave's DM");
  await bob.session.sendText(alice, "plain news from bob");
  await carol.session.sendText(alice, `${alice}: a question for you`);
  // Bob's came first, but carol's names alice: it is where Alt-A goes first.
  await term.waitForScreen((s) => s.includes("(1, 1@)"), "carol's mention in the list");
  term.keys("M-a");
  await term.waitForScreen((s) => right(s).at(-1) === `${carol.name}>` && s.includes("a question for you"), "carol's conversation");
  term.keys("M-a");
  await term.waitForScreen((s) => right(s).at(-1) === `${bob.name}>` && s.includes("plain news from bob"), "bob's conversation");
  term.keys("M-a");
  await term.waitForScreen((s) => s.includes("no conversation has unread messages"), "the note that nothing is unread");
});

test("only what is on screen is marked read: a message that arrives while scrolled up is read once scrolled down to", async () => {
  const alice = uniqueName("alice");
  const bob = await other(uniqueName("bob"));
  const term = await openTui(alice, 100, 16);
  term.type(`/dm ${bob.name}`);
  term.keys("Enter");
  await term.waitForScreen((s) => s.includes(`${bob.name}>`), "the DM to open");
  for (let i = 0; i < 30; i++) await bob.session.sendText(alice, `filler ${i}`);
  await term.waitForScreen((s) => s.includes("filler 29"), "the fillers");
  const conv = await bob.session.conversationOf({ with: alice });
  const readByAlice = async () => (await bob.session.receipts(conv)).find((r) => r.user === alice)?.read ?? 0;
  for (let i = 0; (await readByAlice()) < 30; i++) {
    expect(i).toBeLessThan(150);
    await Bun.sleep(100);
  }
  term.keys("PageUp");
  await term.waitForScreen((s) => !s.includes("filler 29"), "the pane scrolled up");
  await bob.session.sendText(alice, "below the view");
  await Bun.sleep(1_000);
  expect(term.screen()).not.toContain("below the view");
  expect(await readByAlice()).toBe(30);
  term.keys("PageDown", "PageDown", "PageDown");
  await term.waitForScreen((s) => s.includes("below the view"), "the new message on screen");
  for (let i = 0; (await readByAlice()) < 31; i++) {
    expect(i).toBeLessThan(150);
    await Bun.sleep(100);
  }
});

test("the status bar names the server, and counts down to the next try while reconnecting", async () => {
  const own = await startCluster({ servers: 1 });
  try {
    const alice = uniqueName("alice");
    await signup(own.balancerAddr, alice);
    const home = mkdtempSync(join(tmpdir(), "chatterbox-tui-home-"));
    homes.push(home);
    const term = new Tmux();
    terms.push(term);
    term.start([process.execPath, join(ROOT, "cli.ts"), "chat", "--balancer", own.balancerAddr, "--user", alice], {
      CHATTERBOX_HOME: home,
      CHATTERBOX_PASSWORD: PASSWORD,
      CHATTERBOX_TEST_KDF: "1",
      CHATTERBOX_CA: caFile(term.dir),
    });
    const server = own.servers[0]!;
    await term.waitForScreen((s) => s.includes(`[connected to 127.0.0.1:${server.port}`), "the server's address");
    await server.stop();
    own.servers.splice(0, 1);
    await term.waitForScreen((s) => /\[reconnecting, next try in \d+ s/.test(s), "the countdown");
    const next = await own.addServer();
    const screen = await term.waitForScreen((s) => s.includes(`[connected to 127.0.0.1:${next.port}`) && s.includes("* reconnected"), "the new server", 45_000);
    // Said for a person: no internal server id.
    expect(right(screen).find((r) => r.includes("* reconnected"))).toMatch(/\* reconnected$/);
  } finally {
    await own.stop();
  }
});

test("a session ended elsewhere (the device revoked) gives the terminal back and says why", async () => {
  const alice = uniqueName("alice");
  const term = await openTui(alice);
  const elsewhere = await connectUser(cluster.balancerAddr, alice);
  users.push(elsewhere);
  const tui = (await elsewhere.session.devices()).find((d) => !d.current && d.online);
  expect(tui).toBeDefined();
  await elsewhere.session.revokeDevice(tui!.id);
  const screen = await term.waitForScreen((s) => s.includes("[exited"), "the client to exit");
  expect(screen).not.toContain("Conversations");
  await waitFor(() => term.stderr().includes("chatterbox: "), "the reason on stderr");
  expect(term.stderr()).toMatch(/revoked/i);
});

test("a pasted block of several lines is one message, its lines kept", async () => {
  const alice = uniqueName("alice");
  const bob = await other(uniqueName("bob"));
  const term = await openTui(alice);
  term.type(`/dm ${bob.name}`);
  term.keys("Enter");
  await term.waitForScreen((s) => s.includes(`${bob.name}>`), "the DM to open");
  term.paste("first pasted line\nsecond pasted line");
  await term.waitForScreen((s) => s.includes("first pasted line⏎second pasted line"), "the paste in the input");
  term.keys("Enter");
  await waitFor(() => bob.received.some((m) => m.text === "first pasted line\nsecond pasted line"), "one message with both lines");
  const screen = await term.waitForScreen((s) => right(s).some((r) => /^\s+second pasted line/.test(r)), "the second line indented under the first");
  expect(right(screen).some((r) => r.includes(`${alice}: first pasted line`))).toBe(true);
  expect(bob.received.filter((m) => m.text.includes("pasted"))).toHaveLength(1);
});

test("Tab completes commands and names", async () => {
  const alice = uniqueName("alice");
  const bob = await other(uniqueName("bob"));
  await signup(cluster.balancerAddr, alice);
  await bob.session.sendText(alice, "so that alice knows bob");
  const term = await openTui(alice, 100, 30, false);
  // The first message, with no conversation open, opens bob's: it is on screen, so not counted unread.
  await term.waitForScreen((s) => s.includes(`${bob.name}>`) && s.includes("so that alice knows bob"), "bob's conversation");
  await Bun.sleep(500);
  expect(term.screen()).not.toContain(`${bob.name} (1)`);
  term.type("/d");
  term.keys("Tab");
  await term.waitForScreen((s) => right(s).at(-1) === `${bob.name}> /dm`, "the command completed");
  term.type(bob.name.slice(0, 5));
  term.keys("Tab");
  await term.waitForScreen((s) => right(s).at(-1) === `${bob.name}> /dm ${bob.name}`, "the name completed");
});

test("each sender has a colour, and NO_COLOR takes the colours away", async () => {
  const colours = async (env: Record<string, string>) => {
    const alice = uniqueName("alice");
    const bob = await other(uniqueName("bob"));
    const term = await openTui(alice, 100, 30, true, undefined, env);
    term.type(`/dm ${bob.name}`);
    term.keys("Enter");
    await bob.session.sendText(alice, "in colour?");
    await term.waitForScreen((s) => s.includes("in colour?"), "the message");
    const row = term.styledScreen().split("\n").find((r) => r.includes("in colour?"))!;
    term.stop();
    // A foreground colour set just before the sender's name.
    return new RegExp(`\x1b\\[[0-9;]*38;(5|2);[0-9;]+m(\x1b\\[[0-9;]*m)*${bob.name}`).test(row);
  };
  expect(await colours({})).toBe(true);
  expect(await colours({ NO_COLOR: "1" })).toBe(false);
});

test("wide characters in the input: the cursor stays on the character it is at, and long input wraps by display width", async () => {
  const alice = uniqueName("alice");
  const bob = await other(uniqueName("bob"));
  const term = await openTui(alice, 80, 24);
  term.type(`/dm ${bob.name}`);
  term.keys("Enter");
  await term.waitForScreen((s) => s.includes(`${bob.name}>`), "the DM to open");
  term.type("你好世界");
  term.keys("Left", "Left");
  term.type("X");
  const screen = await term.waitForScreen((s) => right(s).at(-1) === `${bob.name}> 你好X世界`, "the character typed between the wide ones");
  // The terminal's cursor is right after X: the list, the prompt, two wide characters (two columns each) and X.
  const row = screen.replace(/\n$/, "").split("\n").length - 1;
  expect(term.cursor()).toEqual({ x: 22 + `${bob.name}> `.length + 4 + 1, y: row });
  term.keys("Right");
  term.type("Y");
  await term.waitForScreen((s) => right(s).at(-1) === `${bob.name}> 你好X世Y界`, "a second edit after moving right");
  expect(term.cursor().x).toBe(22 + `${bob.name}> `.length + 4 + 1 + 2 + 1);
  // Input wider than the pane wraps onto more rows, each within the terminal, no character lost or split.
  term.keys("C-u", "End", "C-u");
  const long = "漢字".repeat(30);
  term.type(long);
  const wrapped = await term.waitForScreen((s) => right(s).filter((r) => /^[漢字]+$/.test(r)).length >= 1 && right(s).join("").includes(long), "the long input wrapped");
  expect(wrapped.replace(/\n$/, "").split("\n").every((l) => Bun.stringWidth(l) <= 80)).toBe(true);
  term.keys("Enter");
  await waitFor(() => bob.received.some((m) => m.text === `${long}`), "bob to get the long line whole");
});

test("the mouse wheel over the messages scrolls up to older ones and back down", async () => {
  const alice = uniqueName("alice");
  const bob = await other(uniqueName("bob"));
  const term = await openTui(alice, 100, 20);
  term.type(`/dm ${bob.name}`);
  term.keys("Enter");
  await term.waitForScreen((s) => s.includes(`${bob.name}>`), "the DM to open");
  for (let i = 0; i < 40; i++) await bob.session.sendText(alice, `wheel ${String(i).padStart(2, "0")}`);
  await term.waitForScreen((s) => s.includes("wheel 39"), "the latest message");
  expect(term.screen()).not.toContain("wheel 00");
  // What a terminal sends for the wheel in SGR mouse mode, over the message pane (column 60, row 5).
  const wheelUp = "\x1b[<64;60;5M";
  const wheelDown = "\x1b[<65;60;5M";
  for (let i = 0; i < 20 && !term.screen().includes("wheel 00"); i++) {
    term.send(wheelUp);
    await Bun.sleep(100);
  }
  const top = await term.waitForScreen((s) => s.includes("wheel 00"), "the oldest message after wheeling up");
  expect(top).not.toContain("wheel 39");
  for (let i = 0; i < 20 && !term.screen().includes("wheel 39"); i++) {
    term.send(wheelDown);
    await Bun.sleep(100);
  }
  await term.waitForScreen((s) => s.includes("wheel 39"), "the bottom again after wheeling down");
});

test("a message that arrives while the terminal is not focused stays unread until focus comes back", async () => {
  const alice = uniqueName("alice");
  const bob = await other(uniqueName("bob"));
  const term = await openTui(alice);
  term.type(`/dm ${bob.name}`);
  term.keys("Enter");
  await term.waitForScreen((s) => s.includes(`${bob.name}>`), "the DM to open");
  await bob.session.sendText(alice, "while looking");
  await term.waitForScreen((s) => s.includes("while looking"), "the first message");
  const conv = await bob.session.conversationOf({ with: alice });
  const readByAlice = async () => (await bob.session.receipts(conv)).find((r) => r.user === alice)?.read ?? 0;
  for (let i = 0; (await readByAlice()) < 1; i++) {
    expect(i).toBeLessThan(150);
    await Bun.sleep(100);
  }
  // The client asked the terminal for focus reports.
  expect(term.rawOutput()).toContain("\x1b[?1004h");
  // The window loses focus (the report a terminal sends); a key typed after it shows it was taken in.
  term.send("\x1b[O");
  term.type("z");
  await term.waitForScreen((s) => right(s).at(-1) === `${bob.name}> z`, "the key after the focus report");
  await bob.session.sendText(alice, "while away");
  await term.waitForScreen((s) => s.includes("while away"), "the message on screen");
  await Bun.sleep(1_000);
  // On screen, but nobody was looking: not read, and the bell says it came.
  expect(await readByAlice()).toBe(1);
  await waitFor(() => bells(term) > 0, "the bell for a message while away");
  term.send("\x1b[I");
  for (let i = 0; (await readByAlice()) < 2; i++) {
    expect(i).toBeLessThan(150);
    await Bun.sleep(100);
  }
});

test("a new device opening a conversation held over MLS before it existed draws that history as one dim line, then reads what comes after it joined", async () => {
  const alice = uniqueName("alice");
  const bobName = uniqueName("bob");
  await signup(cluster.balancerAddr, alice);
  await signup(cluster.balancerAddr, bobName);
  // alice's phone and bob keep their stores (so speak MLS); the terminal is alice's new laptop
  const devices = mkdtempSync(join(tmpdir(), "chatterbox-tui-mls-"));
  homes.push(devices);
  const db = openDatabase(cluster.url, { max: 1 });
  const published = (name: string, n: number) =>
    until(async () => {
      const [row] = await db.sql`select count(*)::int as n from devices d join users u on u.id = d.user_id join key_packages k on k.device_id = d.id
                                 where u.name = ${name} and k.last_resort`;
      return row!.n === n;
    }, `${name}'s ${n} device(s) to publish`);
  try {
    const phone = await connectPersistent(cluster.balancerAddr, devices, alice);
    let bob = await connectPersistent(cluster.balancerAddr, devices, bobName);
    users.push(phone, bob);
    await published(alice, 1);
    await published(bobName, 1);
    for (let i = 1; i <= 5; i++) await bob.session.sendText(alice, `before the laptop ${i}`);
    await waitFor(() => phone.texts().length === 5, "alice's phone to read them");

    const term = await openTui(alice, 80, 24, false);
    term.type(`/dm ${bobName}`);
    term.keys("Enter");
    // (a line of 80 columns wraps: read as one)
    const flat = (s: string) => right(s).map((r) => r.trim()).join(" ");
    const screen = await term.waitForScreen((s) => flat(s).includes("5 earlier messages were sent before this device joined"), "the quiet line for the history");
    expect(flat(screen)).toContain("CHATTERBOX_HISTORY_BACKUP=on");
    expect(screen).not.toContain("NOT SHOWN");
    expect(screen).not.toContain("⚠");
    // dim: the rows of the line carry SGR 2
    expect(dimAt(term.styledScreen(), "5 earlier messages")).toBe(true);

    // bob's restarted client asks for alice's device list at once, adds the laptop, then sends
    await published(alice, 2);
    await bob.session.close();
    bob = await connectPersistent(cluster.balancerAddr, devices, bobName);
    users.push(bob);
    await bob.session.sendText(alice, "after the laptop joined");
    const after = await term.waitForScreen((s) => s.includes("after the laptop joined"), "the message after the join");
    expect(flat(after)).toContain("5 earlier messages were sent before this device joined");
    expect(after).not.toContain("⚠");
    expect(dimAt(term.styledScreen(), "after the laptop joined")).toBe(false);
  } finally {
    await db.close();
  }
});
