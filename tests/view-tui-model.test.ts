/**
 * The full-screen client's parts that need no terminal: the input editor,
 * the model (unread counts, the new-messages line, marks on one's own
 * messages), wrapping and the keys table.
 */
import { expect, test } from "bun:test";
import { msg } from "./support/received";
import { HELP } from "../client/commands";
import { InputEditor } from "../client/tui/editor";
import { actionOf, KEY_HELP } from "../client/tui/keys";
import { ChatModel } from "../client/tui/model";
import { inputRows, listRows, paneRows, statusRow, visible, wrap } from "../client/tui/render";


test("the editor moves by character and word, cuts with Ctrl-W/U/K, and keeps a history", () => {
  const e = new InputEditor();
  e.insert("abc");
  e.left();
  e.left();
  e.insert("X");
  expect(e.text).toBe("aXbc");
  e.set("hello big world");
  e.wordLeft();
  expect(e.cursor).toBe(10);
  e.killWord();
  expect(e.text).toBe("hello world");
  e.home();
  e.wordRight();
  e.killToEnd();
  expect(e.text).toBe("hello");
  e.killToStart();
  expect(e.text).toBe("");
  e.insert("first");
  expect(e.submit()).toBe("first");
  e.insert("second");
  e.submit();
  e.insert("draft");
  e.up();
  expect(e.text).toBe("second");
  e.up();
  expect(e.text).toBe("first");
  e.down();
  e.down();
  expect(e.text).toBe("draft");
});

test("Tab completes a unique name with a space, and several as far as they agree", () => {
  const e = new InputEditor();
  e.insert("/d");
  expect(e.complete(["/dm", "/g"])).toEqual(["/dm"]);
  expect(e.text).toBe("/dm ");
  e.insert("ca");
  e.complete(["carol", "carla", "bob"]);
  expect(e.text).toBe("/dm car");
});

test("a message in a conversation not on screen counts as unread until it is opened, and the new-messages line marks where it starts", () => {
  const m = new ChatModel("alice");
  m.open({ kind: "dm", name: "bob" }, 3);
  m.add(msg(1, "carol", "alice", "read before"));
  m.open({ kind: "dm", name: "carol" }, 7);
  m.open({ kind: "dm", name: "bob" }, 3);
  expect(m.add(msg(2, "carol", "alice", "new one")).current).toBe(false);
  m.add(msg(3, "carol", "alice", "new two"));
  const carol = m.conv({ kind: "dm", name: "carol" });
  expect(carol.unread).toBe(2);
  // The same message again (replay and history both) is kept once.
  expect(m.add(msg(3, "carol", "alice", "new two")).added).toBe(false);
  m.open({ kind: "dm", name: "carol" });
  expect(carol.unread).toBe(0);
  const text = paneRows(m, carol, 60).map((r) => r.map((s) => s.text).join(""));
  const line = text.findIndex((t) => t.includes("new messages"));
  expect(line).toBeGreaterThan(text.findIndex((t) => t.includes("read before")));
  expect(line).toBeLessThan(text.findIndex((t) => t.includes("new one")));
});

test("my own message is pending, then sent, then delivered and read as the receipts come", () => {
  const m = new ChatModel("alice");
  const c = m.open({ kind: "dm", name: "bob" }, 7);
  const { local } = m.pending({ kind: "dm", name: "bob" }, "hi");
  const mark = () => m.mark(c, c.items.at(-1)!);
  expect(mark()).toBe("pending");
  m.stored(c, local, { msg: 10, conv: 7, seq: 4, at: Date.now(), duplicate: false });
  expect(mark()).toBe("sent");
  m.receipt({ conv: 7, user: "bob", delivered: 4 });
  expect(mark()).toBe("delivered");
  m.receipt({ conv: 7, user: "bob", read: 4 });
  expect(mark()).toBe("read");
});

test("long lines wrap at spaces and the rows after the first are indented under the sender", () => {
  expect(wrap("aaa bbb ccc", 7)).toEqual(["aaa bbb", "ccc"]);
  expect(wrap("x".repeat(10), 4)).toEqual(["xxxx", "xxxx", "xx"]);
  const m = new ChatModel("alice");
  const c = m.open({ kind: "dm", name: "bob" }, 7);
  m.add(msg(1, "bob", "alice", "one two three four five six seven eight nine ten"));
  const rows = paneRows(m, c, 30).map((r) => r.map((s) => s.text).join(""));
  const first = rows.findIndex((r) => r.includes("bob: one"));
  const indent = rows[first]!.indexOf("one");
  expect(rows[first + 1]!.slice(0, indent).trim()).toBe("");
  expect(rows[first + 1]!.length).toBeGreaterThan(indent);
  // Someone else's control characters never reach the terminal.
  m.add(msg(2, "bob", "alice", "evil \x1b[2J"));
  expect(paneRows(m, c, 30).flat().some((s) => s.text.includes("\x1b"))).toBe(false);
});

test("a date separator starts each day", () => {
  const m = new ChatModel("alice");
  const c = m.open({ kind: "dm", name: "bob" }, 7);
  m.add(msg(1, "bob", "alice", "monday", { at: Date.UTC(2026, 0, 5, 12) }));
  m.add(msg(2, "bob", "alice", "tuesday", { at: Date.UTC(2026, 0, 6, 12) }));
  const rows = paneRows(m, c, 60).map((r) => r.map((s) => s.text).join(""));
  expect(rows.filter((r) => r.includes("2026") && r.includes("─"))).toHaveLength(2);
});

test("the pane shows the bottom, scrolls up no further than the top, and says when it is there", () => {
  const rows = Array.from({ length: 10 }, (_, i) => [{ text: `row ${i}` }]);
  expect(visible(rows, 4, 0).rows.map((r) => r[0]!.text)).toEqual(["row 6", "row 7", "row 8", "row 9"]);
  const top = visible(rows, 4, 100);
  expect(top.scroll).toBe(6);
  expect(top.atTop).toBe(true);
  expect(top.rows[0]![0]!.text).toBe("row 0");
});

test("keys: Alt-digits switch, Ctrl-N/P cycle, PageUp scrolls, printable keys insert", () => {
  const key = (name: string, mods: { ctrl?: boolean; meta?: boolean } = {}, sequence = "") => ({ name, ctrl: !!mods.ctrl, meta: !!mods.meta, shift: false, sequence });
  expect(actionOf(key("3", { meta: true }))).toEqual({ do: "goto", index: 2 });
  expect(actionOf(key("n", { ctrl: true }))).toEqual({ do: "cycle", by: 1 });
  expect(actionOf(key("pageup"))).toEqual({ do: "page", by: 1 });
  expect(actionOf(key("w", { ctrl: true }))).toEqual({ do: "edit", op: "killWord" });
  expect(actionOf(key("a", {}, "a"))).toEqual({ do: "insert", text: "a" });
  expect(actionOf(key("x", { ctrl: true }, "\x18"))).toBeUndefined();
});

test("the input grows to three rows, then scrolls to keep the cursor in view", () => {
  const one = inputRows("bob> ", "hi", 2, 20);
  expect(one).toEqual({ rows: ["bob> hi"], cursor: { row: 0, col: 7 } });
  const long = "x".repeat(95);
  const many = inputRows("bob> ", long, 95, 20);
  expect(many.rows).toHaveLength(3);
  expect(many.cursor.row).toBe(2);
  expect(many.rows.at(-1)).toBe("");
  // A pasted newline is shown, not obeyed.
  expect(inputRows("> ", "a\nb", 3, 20).rows).toEqual(["> a⏎b"]);
});

test("wide characters take two columns: the cursor is placed by display width, and a row never splits one", () => {
  const e = new InputEditor();
  e.insert("你好世界");
  e.left();
  e.left();
  e.insert("X");
  expect(e.text).toBe("你好X世界");
  expect(e.cursor).toBe(3);
  // "> " is 2 columns, 你好 4, X 1: the cursor is at column 7, not at code point 5.
  expect(inputRows("> ", e.text, e.cursor, 40).cursor).toEqual({ row: 0, col: 7 });
  // A flag is two code points and one character: one Left moves past it whole.
  const f = new InputEditor();
  f.insert("a🇩🇪b");
  f.left();
  f.left();
  expect(f.cursor).toBe(1);
  f.insert("|");
  expect(f.text).toBe("a|🇩🇪b");
  expect(inputRows("", "a🇩🇪", 2, 20).cursor).toEqual({ row: 0, col: 3 });
  // Width 9: "> " + three wide characters is 8 columns; the fourth goes whole to the next row.
  const rows = inputRows("> ", "一二三四五", 5, 9);
  expect(rows.rows).toEqual(["> 一二三", "四五"]);
  expect(rows.rows.every((r) => Bun.stringWidth(r) <= 9)).toBe(true);
  expect(rows.cursor).toEqual({ row: 1, col: 4 });
  expect(inputRows("> ", "一二三四五", 3, 9).cursor).toEqual({ row: 1, col: 0 });
  // Message text wraps by width too.
  expect(wrap("一二三四五", 6)).toEqual(["一二三", "四五"]);
});

test("the list counts mentions of the user among the unread", () => {
  const m = new ChatModel("alice");
  m.open({ kind: "dm", name: "bob" }, 3);
  m.add({ ...msg(1, "carol", "team", "hi @alice, look", { group: "team" }) });
  m.add({ ...msg(2, "carol", "team", "alice: and this", { group: "team" }) });
  m.add({ ...msg(3, "carol", "team", "malice is not a mention", { group: "team" }) });
  const team = m.conv({ kind: "group", name: "team" });
  expect([team.unread, team.mentions]).toEqual([3, 2]);
  expect(listRows(m, 21).map((r) => r.map((s) => s.text).join("")).some((r) => r.includes("#team (3, 2@)"))).toBe(true);
  const dotted = new ChatModel("a-b.c");
  expect([dotted.mentions("hi a-b.c!"), dotted.mentions("hi a-bxc"), dotted.mentions("xa-b.c")]).toEqual([true, false, false]);
});

test("the status bar: a question or a changed key first, then typing, the connection and the keys' state", () => {
  const text = (s: Parameters<typeof statusRow>[0]) => statusRow(s).map((x) => x.text).join("");
  const base = { typing: [], confirming: false, now: 1_000 };
  const steady = { ...base, connection: { connected: true, server: "127.0.0.1:7001", pending: 0 }, encryption: "pinned" as const };
  expect(text(steady)).toBe("[connected to 127.0.0.1:7001 · encrypted, key pinned (/verify)]");
  expect(text({ ...base, connection: { connected: false, server: "x", retryAt: 3_500, pending: 2 }, encryption: "changed", typing: ["bob"] })).toBe(
    "[KEY CHANGED: /verify, then /trust · bob is typing… · reconnecting, next try in 3 s, 2 waiting to send]",
  );
  expect(text({ ...base, confirming: true })).toStartWith("[a draft is unsent");
  // A narrow bar (80 columns less the list) takes the short forms before anything is cut.
  const narrow = text({ ...steady, typing: ["bob"], cols: 58 });
  expect(narrow).toBe("[bob is typing… · connected · encrypted]");
  expect(Bun.stringWidth(narrow)).toBeLessThanOrEqual(58);
  expect(text({ ...steady, cols: 200 })).toBe(text(steady));
  // A conversation the session said is not forward secret, or whose membership this device doubts, says so while it holds.
  expect(text({ ...steady, secrecy: "not forward secret" })).toBe("[connected to 127.0.0.1:7001 · encrypted, key pinned (/verify) · NOT forward secret (not on MLS)]");
  expect(text({ ...steady, secrecy: "not forward secret", cols: 58 })).toBe("[connected · encrypted · NOT forward secret]");
  expect(text({ ...steady, secrecy: "doubt" })).toStartWith("[MEMBERSHIP NOT CONFIRMED by an admin · connected");
});

test("a note about one conversation goes there, not into the one on screen", () => {
  const m = new ChatModel("alice");
  m.open({ kind: "dm", name: "bob" }, 7);
  m.noteIn({ kind: "group", name: "team" }, "* WARNING: messages in #team are not forward secret");
  const notes = (name: string, kind: "dm" | "group") => m.conv({ kind, name }).items.filter((i) => i.kind === "note").map((i) => (i as { text: string }).text);
  expect(notes("team", "group")).toEqual(["* WARNING: messages in #team are not forward secret"]);
  expect(notes("bob", "dm")).toEqual([]);
});

test("the mark on my own message is never cut at the pane's edge, and the rows stay put as it goes from sent to read", () => {
  const m = new ChatModel("alice");
  const c = m.open({ kind: "dm", name: "bob" }, 7);
  const cols = 40;
  // "12:00 alice: " is 13 columns; the text fills the rest of the first row but for two.
  const { local } = m.pending({ kind: "dm", name: "bob" }, "x".repeat(cols - 13 - 2));
  m.stored(c, local, { msg: 10, conv: 7, seq: 4, at: Date.now(), duplicate: false });
  const shown = () => paneRows(m, c, cols).map((r) => r.map((s) => s.text).join(""));
  const sent = shown();
  m.receipt({ conv: 7, user: "bob", read: 4 });
  const read = shown();
  expect(read.length).toBe(sent.length);
  for (const row of read) expect(Bun.stringWidth(row)).toBeLessThanOrEqual(cols);
  expect(read.some((r) => r.includes("✓✓ read"))).toBe(true);
  // A short message keeps its mark on its own row.
  m.pending({ kind: "dm", name: "bob" }, "short");
  expect(shown().at(-1)).toContain("short …");
});

test("a line of /help wraps under its description, so the commands stay a column of their own", () => {
  const m = new ChatModel("alice");
  m.note("  /trust USER                 accept USER's new identity key (after comparing safety numbers)");
  m.note("Keys: Alt-1…9 or Ctrl-N/Ctrl-P switch conversation, Ctrl-K to pick one by name");
  const rows = paneRows(m, undefined, 58).map((r) => r.map((s) => s.text).join(""));
  const first = rows.findIndex((r) => r.includes("/trust USER"));
  const column = rows[first]!.indexOf("accept");
  expect(rows[first + 1]!.slice(0, column).trim()).toBe("");
  expect(rows[first + 1]!.slice(column)).toMatch(/^\S/);
  for (const row of rows) expect(Bun.stringWidth(row)).toBeLessThanOrEqual(58);
  // A line of prose has no second column: it wraps under its own start.
  const keys = rows.findIndex((r) => r.includes("Keys:"));
  expect(rows[keys + 1]!.indexOf(rows[keys + 1]!.trim())).toBe(rows[keys]!.indexOf("Keys:"));
  // The help itself is one table: every description starts in one column, two spaces at least after its command.
  const starts = HELP.split("\n").slice(1).map((l) => /^ {2}\/\S.*?\s{2,}(?=\S)/.exec(l)?.[0].length);
  expect(starts.every((at) => at !== undefined && at === starts[0])).toBe(true);
  // So are the keys: one row a key, not a paragraph that wraps back under itself.
  const keyStarts = KEY_HELP.split("\n").slice(1).map((l) => /^ {2}\S.*?\s{2,}(?=\S)/.exec(l)?.[0].length);
  expect(keyStarts.length).toBeGreaterThan(5);
  expect(keyStarts.every((at) => at !== undefined && at === keyStarts[0])).toBe(true);
});

test("a membership change I made is not unread and draws no 'new messages' line; one made by another is", () => {
  const m = new ChatModel("alice");
  const group = { kind: "group" as const, name: "devs" };
  const line = (seq: number, actor: string) => msg(seq, actor, "devs", "", { kind: "system", group: "devs", text: `${actor} created devs` });
  m.add(line(1, "alice"));
  const c = m.convs.get([...m.convs.keys()][0]!)!;
  expect(c.unread).toBe(0);
  m.open(group);
  expect(paneRows(m, c, 60).some((r) => r.some((s) => s.text.includes("new messages")))).toBe(false);
  m.open({ kind: "dm", name: "bob" });
  m.add(line(2, "carol"));
  expect(c.unread).toBe(1);
});
