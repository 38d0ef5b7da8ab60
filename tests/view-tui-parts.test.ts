/**
 * The full-screen client's smaller parts without a terminal: the pane's
 * movement and what it marks read, the quick switcher, who is typing.
 */
import { expect, test } from "bun:test";
import type { Received } from "../client/session";
import { actionOf, type Key } from "../client/tui/keys";
import { ChatModel } from "../client/tui/model";
import { Pane, type PaneActions } from "../client/tui/pane";
import { Switcher } from "../client/tui/switcher";
import { Typists } from "../client/tui/typists";

const msg = (seq: number, from: string, text: string): Received => ({
  id: seq,
  conv: 7,
  seq,
  from,
  to: from === "alice" ? "bob" : "alice",
  kind: "chat",
  at: Date.UTC(2026, 0, 1, 12, 0, seq),
  cmid: `c${seq}`,
  body: new Uint8Array(0),
  text,
  verified: true,
});

/** A pane over a model holding `count` messages from bob, and what it asked of the chat. */
function setup(count: number, older: Received[] = []) {
  const model = new ChatModel("alice");
  const c = model.open({ kind: "dm", name: "bob" }, 7);
  for (let i = 1; i <= count; i++) model.add(msg(older.length + i, "bob", `message ${older.length + i}`));
  const shown: number[] = [];
  const asked: number[] = [];
  let looking = true;
  const actions: PaneActions = {
    shown: (_conv, seq) => void shown.push(seq),
    older: async (_t, before) => {
      asked.push(before);
      return older.filter((m) => m.seq < before);
    },
    switchTo: async () => {},
    search: () => [],
  };
  const pane = new Pane(model, actions, { size: () => ({ cols: 60, height: 10 }), looking: () => looking, draw: () => {} });
  return { model, c, pane, shown, asked, look: (on: boolean) => (looking = on) };
}

test("the pane marks read what is at its bottom, only while the person looks and it is not scrolled up", () => {
  const { c, pane, shown, look } = setup(30);
  pane.markShown(c);
  expect(shown).toEqual([30]);
  look(false);
  pane.markShown(c);
  expect(shown).toEqual([30]);
  look(true);
  pane.scrollBy(5);
  expect(c.scroll).toBe(5);
  pane.markShown(c);
  expect(shown).toEqual([30]);
  // Back at the bottom: shown again.
  pane.scrollBy(-5);
  expect(c.scroll).toBe(0);
  expect(shown).toEqual([30, 30]);
});

test("scrolling up to the top fetches older messages, before the oldest held, and they join the conversation", async () => {
  const older = Array.from({ length: 5 }, (_, i) => msg(i + 1, "bob", `older ${i + 1}`));
  const { model, c, pane, asked } = setup(12, older);
  pane.page(1);
  pane.page(1);
  pane.page(1);
  await Bun.sleep(0);
  expect(asked[0]).toBe(6);
  expect(model.oldestSeq(c)).toBe(1);
  // Nothing older left: the conversation is complete and is not asked again.
  await pane.loadOlder(c);
  expect(c.complete).toBe(true);
  const calls = asked.length;
  await pane.loadOlder(c);
  expect(asked.length).toBe(calls);
});

test("the quick switcher filters by name and Enter picks the first match; Escape leaves it", () => {
  const model = new ChatModel("alice");
  model.conv({ kind: "dm", name: "bob" }, 1);
  model.conv({ kind: "group", name: "bobsled" }, 2);
  model.conv({ kind: "dm", name: "carol" }, 3);
  const key = (name: string, sequence = name): Key => ({ name, ctrl: false, meta: false, shift: false, sequence });
  const s = new Switcher();
  expect(s.open).toBe(false);
  s.start();
  expect(s.open).toBe(true);
  for (const ch of "bo") s.key(actionOf(key(ch))!, model.ordered());
  expect(s.matches(model.ordered()).map((c) => c.target.name).sort()).toEqual(["bob", "bobsled"]);
  expect(s.prompt).toBe("switch to: bo");
  s.key(actionOf(key("backspace", "\x7f"))!, model.ordered());
  s.key(actionOf(key("backspace", "\x7f"))!, model.ordered());
  for (const ch of "car") s.key(actionOf(key(ch))!, model.ordered());
  expect(s.prompt).toBe("switch to: car");
  expect(s.key(actionOf(key("return", "\r"))!, model.ordered())?.target.name).toBe("carol");
  expect(s.open).toBe(false);
  s.start();
  expect(s.key(actionOf(key("escape", "\x1b"))!, model.ordered())).toBeUndefined();
  expect(s.open).toBe(false);
});

test("who is typing: each notice lasts a few seconds, and a message from them ends it", () => {
  const t = new Typists();
  t.saw(7, "bob", 1_000);
  t.saw(7, "carol", 1_000);
  expect(t.in(7, 2_000).sort()).toEqual(["bob", "carol"]);
  expect(t.in(8, 2_000)).toEqual([]);
  expect(t.in(undefined, 2_000)).toEqual([]);
  t.stopped(7, "bob");
  expect(t.in(7, 2_000)).toEqual(["carol"]);
  expect(t.in(7, 60_000)).toEqual([]);
});
