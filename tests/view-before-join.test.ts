/**
 * Messages of a conversation's MLS group sent before this device joined it
 * (E_MLS_BEFORE_JOIN) are forward secrecy at work, not a fault: every view
 * tells a run of them as one quiet line, they are not unread, and a real
 * warning (a forged message) next to them stays loud. Scripts (--json) still
 * get one object a message, with its code.
 */
import { expect, test } from "bun:test";
import { earlierLine, line, lines } from "../client/format";
import type { Received } from "../client/session";
import { ChatModel } from "../client/tui/model";
import { paneRows } from "../client/tui/render";
import { LineView } from "../client/views/line";
import type { ViewActions } from "../client/view";
import { waitFor } from "./support/cluster";
import { msg } from "./support/received";

const message = (seq: number, from: string, text: string, extra: Partial<Received> = {}) => msg(seq, from, from === "alice" ? "bob" : "alice", text, { id: 100 + seq, ...extra });
const early = (seq: number, from = "bob") => message(seq, from, "", { verified: false, code: "E_MLS_BEFORE_JOIN", problem: "sent before this device joined the conversation's mls group" });
const forged = (seq: number) => message(seq, "bob", "", { verified: false, code: "E_SIGNATURE", problem: "the signature does not verify" });

/** Twelve from before the join (one of them the user's own, from another device), a forged one, then one that reads. */
const conversation = (): Received[] => [...Array.from({ length: 12 }, (_, i) => early(i + 1, i === 4 ? "alice" : "bob")), forged(13), message(14, "bob", "after the join")];

const texts = (rows: { text: string }[][]) => rows.map((r) => r.map((s) => s.text).join(""));

test("the full-screen client draws a run from before the join as one dim line, and a forged message still as a warning", () => {
  const m = new ChatModel("alice");
  const c = m.open({ kind: "dm", name: "bob" }, 7);
  for (const r of conversation()) m.add(r);
  const rows = paneRows(m, c, 80);
  // (the line wraps at 80 columns: read as one)
  const all = texts(rows).map((t) => t.trim()).join(" ");
  expect(all).toContain("12 earlier messages were sent before this device joined: MLS keys are not shared back in time");
  expect(all).toContain("CHATTERBOX_HISTORY_BACKUP=on");
  // one warning, the forged message's, and none for the twelve
  expect(all.match(/NOT SHOWN/g)?.length).toBe(1);
  expect(all).toContain("the signature does not verify (message 113)");
  expect(all).toContain("bob: after the join");
  // the quiet line is dim from its first row to its last, and names no sender
  const first = rows.findIndex((r) => r.map((s) => s.text).join("").includes("12 earlier messages"));
  const last = rows.findIndex((r) => r.map((s) => s.text).join("").includes("⚠"));
  expect(last).toBeGreaterThan(first);
  for (const r of rows.slice(first, last)) expect(r.every((s) => s.dim || s.text.trim() === "")).toBe(true);
  expect(rows.slice(first, last).some((r) => r.some((s) => s.bold))).toBe(false);
  // a run is of messages one after another: one that reads between two runs makes two lines
  const n = new ChatModel("alice");
  const d = n.open({ kind: "dm", name: "bob" }, 7);
  for (const r of [early(1), message(2, "bob", "in between"), early(3), early(4)]) n.add(r);
  const two = texts(paneRows(n, d, 80)).join("\n");
  expect(two).toContain("1 earlier message was sent before this device joined");
  expect(two).toContain("2 earlier messages were sent before this device joined");
});

test("messages from before the join are not unread, and the new-messages line comes before the first one that reads", () => {
  const m = new ChatModel("alice");
  m.open({ kind: "dm", name: "carol" }, 9);
  for (const r of conversation()) m.add(r);
  const c = m.conv({ kind: "dm", name: "bob" });
  // the forged one and the readable one: a warning is still something to look at
  expect(c.unread).toBe(2);
  m.open({ kind: "dm", name: "bob" });
  const rows = texts(paneRows(m, c, 80));
  const marker = rows.findIndex((t) => t.includes("new messages"));
  expect(marker).toBeGreaterThan(rows.findIndex((t) => t.includes("12 earlier messages")));
  expect(marker).toBeLessThan(rows.findIndex((t) => t.includes("NOT SHOWN")));
  // only messages from before the join, in a conversation not on screen: nothing unread, no new-messages line
  const n = new ChatModel("alice");
  n.open({ kind: "dm", name: "carol" }, 9);
  for (const seq of [1, 2, 3]) n.add(early(seq));
  const d = n.conv({ kind: "dm", name: "bob" });
  expect(d.unread).toBe(0);
  n.open({ kind: "dm", name: "bob" });
  expect(texts(paneRows(n, d, 80)).some((t) => t.includes("new messages"))).toBe(false);
  // the read marker moving elsewhere counts the same way
  n.open({ kind: "dm", name: "carol" });
  n.add(message(4, "bob", "now one"));
  n.readElsewhere(7, 0);
  expect(d.unread).toBe(1);
});

test("line mode prints one quiet line for a run of history from before the join; --json keeps one object a message, with its code", () => {
  const people = lines(conversation(), false, "alice");
  expect(people).toHaveLength(3);
  expect(people[0]).toMatch(/^\[\d\d:\d\d:\d\d\] · with bob: 12 earlier messages were sent before this device joined: /);
  expect(people[0]).not.toContain("⚠");
  expect(people[1]).toContain("⚠ bob → alice: NOT SHOWN, the signature does not verify (message 113)");
  expect(people[2]).toContain("bob → alice: after the join");
  // a group's run says the group; runs of two conversations are two lines
  const group = [early(1), { ...early(2), conv: 8, group: "devs", to: "devs" }, { ...early(3), conv: 8, group: "devs", to: "devs" }];
  expect(lines(group, false, "alice").map((l) => l.replace(/^\[[\d:]+\] /, ""))).toEqual([`· with bob: ${earlierLine(1)}`, `· #devs: ${earlierLine(2)}`]);

  const json = lines(conversation(), true, "alice").map((l) => JSON.parse(l) as { id: number; code?: string; verified: boolean });
  expect(json).toHaveLength(14);
  expect(json.slice(0, 12).every((o) => o.code === "E_MLS_BEFORE_JOIN" && !o.verified)).toBe(true);
  expect(json[12]).toMatchObject({ id: 113, code: "E_SIGNATURE", verified: false });
  expect(json[13]!.code).toBeUndefined();
  // one message alone (a one-shot inbox, as it arrives) is a short quiet line, not a warning
  expect(line(early(1), false)).toMatch(/^\[[\d:]+\] · bob → alice: sent before this device joined, not readable here \(message 101\)$/);
});

test("line mode at a prompt: a run that arrives (a new device's replay) is one line once it ends, and the read marker may move past it", async () => {
  const out: string[] = [];
  const shown: [number, number][] = [];
  const view = new LineView("alice", false, (t) => out.push(t));
  view.open({ shown: (conv: number, seq: number) => shown.push([conv, seq]), submit() {}, quit() {} } as unknown as ViewActions);
  for (const r of conversation()) view.message(r);
  expect(out).toHaveLength(3);
  expect(out[0]).toContain("· with bob: 12 earlier messages were sent before this device joined");
  expect(out[1]).toContain("NOT SHOWN");
  // the quiet line is what the person was shown of the twelve: the marker may pass them (up to bob's last), then the rest
  expect(shown).toEqual([[7, 12], [7, 13], [7, 14]]);
  // a run that nothing follows is printed once it has been quiet a moment
  view.message(early(15));
  await waitFor(() => out.length === 4, "the run to end by itself");
  expect(out[3]).toContain("1 earlier message was sent before this device joined");
  // a run still open when the view closes is printed then, not lost
  view.message(early(16));
  view.message(early(17, "alice"));
  expect(out).toHaveLength(4);
  view.close();
  expect(out).toHaveLength(5);
  expect(out[4]).toContain("2 earlier messages were sent before this device joined");
  expect(shown.at(-1)).toEqual([7, 16]);
});
