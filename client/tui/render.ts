/**
 * What the full-screen client draws, as rows of coloured segments, from the
 * model: the message pane (date separators, the "new messages" line, wrapped
 * lines indented under the sender, marks on one's own messages), the
 * conversation list and the status bar. Pure functions of the model and the
 * size, so that they can be tested without a terminal. Text from others goes
 * through sanitize first. A run of messages sent before this device joined
 * the conversation's MLS group is one dim line, not a warning each.
 */
import { earlierLine, sanitize } from "../format";
import { beforeJoin } from "../received";
import { describeFile } from "../session";
import { label } from "../view";
import { charsOf } from "./editor";
import type { ChatModel, Conv, Item, Mark } from "./model";

export interface Segment {
  text: string;
  color?: string;
  bold?: boolean;
  dim?: boolean;
  reverse?: boolean;
  /** The message this row starts, for finding it (a /search result). */
  seq?: number;
}
export type Row = Segment[];

const PALETTE = ["#5fafff", "#87d75f", "#ffaf5f", "#d787ff", "#5fd7d7", "#ff8787", "#d7d75f"];

/** Each sender keeps one colour, from their name. */
export function senderColor(name: string): string {
  let h = 0;
  for (const ch of name) h = (h * 31 + ch.codePointAt(0)!) >>> 0;
  return PALETTE[h % PALETTE.length]!;
}

const MARKS: Record<Mark, string> = { pending: "…", sent: "✓", delivered: "✓✓", read: "✓✓ read", failed: "✗ not sent" };

const width = (s: string) => Bun.stringWidth(s);

/** The widest mark a message passes through on its way to read, with its leading space ("not sent" may move the rows: it is rare). */
const MARK_WIDTH = Math.max(width(MARKS.pending), width(MARKS.sent), width(MARKS.delivered), width(MARKS.read)) + 1;

const markSpan = (mark: Mark): Segment => ({ text: ` ${MARKS[mark]}`, dim: mark !== "failed", color: mark === "failed" ? "#ff5f5f" : undefined });

/** Splits text into rows of at most `cols` columns, at spaces where it can. */
export function wrap(text: string, cols: number): string[] {
  const out: string[] = [];
  for (const para of text.split("\n")) {
    let rest = para;
    while (width(rest) > cols) {
      let cut = 0;
      let w = 0;
      const chars = charsOf(rest);
      while (cut < chars.length && w + width(chars[cut]!) <= cols) w += width(chars[cut++]!);
      const space = chars.slice(0, cut + 1).lastIndexOf(" ");
      const at = space > 0 ? space : Math.max(cut, 1);
      out.push(chars.slice(0, at).join(""));
      rest = chars.slice(space > 0 ? at + 1 : at).join("");
    }
    out.push(rest);
  }
  return out;
}

const day = (at: number) => new Date(at).toLocaleDateString("en-GB", { weekday: "short", day: "numeric", month: "short", year: "numeric" });
const clock = (at: number) => new Date(at).toLocaleTimeString("en-GB", { hour: "2-digit", minute: "2-digit", hour12: false });

/** `run`: the item starts a run of this many messages from before this device joined (drawn as one line). */
function itemText(item: Item, run: number): { from?: string; text: string; at: number; warn?: boolean } {
  if (run > 0 && item.kind === "message") return { text: earlierLine(run), at: item.m.at };
  if (item.kind === "note") return { text: item.text, at: item.at };
  if (item.kind === "mine") return { text: item.text, at: item.result?.at ?? item.at };
  const m = item.m;
  if (m.kind === "system") return { text: `* ${sanitize(m.text)}`, at: m.at };
  if (!m.verified) return { from: m.from, text: `⚠ NOT SHOWN, ${sanitize(m.problem ?? "unverified")} (message ${m.id})`, at: m.at, warn: true };
  return { from: m.from, text: m.file ? describeFile(m.file) : sanitize(m.text), at: m.at };
}

/** Every row of a conversation, oldest first, at a pane `cols` wide. */
export function paneRows(model: ChatModel, c: Conv | undefined, cols: number): Row[] {
  const rows: Row[] = [];
  const items = c ? c.items : model.notes;
  let lastDay = "";
  let markerDrawn = false;
  for (let i = 0; i < items.length; i++) {
    const item = items[i]!;
    const run = runFrom(items, i);
    i += Math.max(0, run - 1);
    const { from, text, at, warn } = itemText(item, run);
    const d = day(at);
    if (d !== lastDay && item.kind !== "note") {
      lastDay = d;
      rows.push([{ text: center(` ${d} `, cols, "─"), dim: true }]);
    }
    if (c && c.markerSeq !== undefined && !markerDrawn && model.countsUnread(item) && item.m.seq > c.markerSeq) {
      markerDrawn = true;
      rows.push([{ text: center(" new messages ", cols, "─"), color: "#ff5f5f" }]);
    }
    const sender = item.kind === "mine" ? model.me : from;
    const head = `${clock(at)} `;
    if (sender === undefined) {
      const indent = " ".repeat(width(head));
      noteLines(text, Math.max(10, cols - width(head))).forEach((l, i) => rows.push([{ text: i === 0 ? head : indent, dim: true }, { text: l, dim: true }]));
      continue;
    }
    const name = `${sender}: `;
    const indent = " ".repeat(width(head) + width(name));
    const mark = c ? model.mark(c, item) : undefined;
    const room = Math.max(10, cols - width(indent));
    const lines = wrap(text, room);
    // The mark goes on a row of its own where the widest one would not fit after the last line, so
    // it is never cut at the pane's edge, and the rows do not move as it goes from … to read.
    const ownRow = mark !== undefined && width(lines.at(-1) ?? "") + MARK_WIDTH > room;
    lines.forEach((l, i) => {
      const seq = i === 0 && item.kind === "message" ? item.m.seq : undefined;
      const row: Row = i === 0 ? [{ text: head, dim: true, seq }, { text: name, color: senderColor(sender), bold: true }] : [{ text: indent }];
      row.push(warn ? { text: l, color: "#ffaf00" } : { text: l });
      if (mark && !ownRow && i === lines.length - 1) row.push(markSpan(mark));
      rows.push(row);
    });
    if (mark && ownRow) rows.push([{ text: indent }, markSpan(mark)]);
  }
  return rows;
}

/** How many items from `i` on are messages sent before this device joined, one after another (0: none). */
function runFrom(items: readonly Item[], i: number): number {
  let n = 0;
  for (let at = items[i + n]; at?.kind === "message" && beforeJoin(at.m); at = items[i + n]) n++;
  return n;
}

/**
 * A note's rows. A line in two columns, as /help's "  /cmd ARGS   what it
 * does", wraps under its second column, so the commands stay a column of
 * their own on a narrow pane.
 */
function noteLines(text: string, cols: number): string[] {
  return text.split("\n").flatMap((line) => {
    const column = /^(\s*\S.*?\s{2,})\S/.exec(line)?.[1];
    const hang = column ? width(column) : 0;
    const [first, ...rest] = wrap(line, cols);
    // Under the second column only where that leaves it room to read (16 columns).
    if (hang === 0 || hang > cols - 16 || rest.length === 0) return [first ?? "", ...rest];
    const tail = line.slice(first!.length).trimStart();
    return [first!, ...wrap(tail, cols - hang).map((l) => " ".repeat(hang) + l)];
  });
}

function center(text: string, cols: number, fill: string): string {
  const w = width(text);
  if (w >= cols) return text;
  const left = Math.floor((cols - w) / 2);
  return fill.repeat(left) + text + fill.repeat(cols - w - left);
}

/** The conversation list: a number for Alt-1…9, the name, the unread count. */
export function listRows(model: ChatModel, cols: number): Row[] {
  const rows: Row[] = [[{ text: "Conversations", bold: true }]];
  model.ordered().forEach((c, i) => {
    const n = i < 9 ? `${i + 1} ` : "  ";
    const unread = c.unread > 0 ? ` (${c.unread}${c.mentions > 0 ? `, ${c.mentions}@` : ""})` : "";
    const name = label(c.target).slice(0, Math.max(1, cols - width(n) - width(unread)));
    const current = c.key === model.current;
    rows.push([{ text: n, dim: true }, { text: name, bold: c.unread > 0, reverse: current }, { text: unread, color: "#ffaf00", bold: true }]);
  });
  if (model.convs.size === 0) rows.push([{ text: "none yet: /dm USER", dim: true }]);
  return rows;
}

/** The window of `rows` that a pane `height` tall shows, `scroll` rows up from the bottom (clamped). */
export function visible(rows: Row[], height: number, scroll: number): { rows: Row[]; scroll: number; atTop: boolean } {
  const max = Math.max(0, rows.length - height);
  const s = Math.min(Math.max(0, scroll), max);
  const end = rows.length - s;
  return { rows: rows.slice(Math.max(0, end - height), end), scroll: s, atTop: s >= max };
}

/**
 * The input area: the prompt and text cut into rows `cols` wide (a newline
 * from a paste shown as ⏎), at most three of them, scrolled to keep the
 * cursor in view, and where the cursor is among them.
 */
export function inputRows(prompt: string, text: string, cursor: number, cols: number): { rows: string[]; cursor: { row: number; col: number } } {
  // Laid out by display width: a wide character (CJK, most emoji) takes two columns and never straddles a row's end.
  const chars = charsOf(prompt + text.replace(/\n/g, "⏎"));
  const at = charsOf(prompt).length + cursor;
  const all: string[] = [];
  let row = "";
  let used = 0;
  let place = { row: 0, col: 0 };
  for (let i = 0; i < chars.length; i++) {
    const w = width(chars[i]!);
    if (used + w > cols && used > 0) {
      all.push(row);
      row = "";
      used = 0;
    }
    if (i === at) place = { row: all.length, col: used };
    row += chars[i];
    used += w;
  }
  if (at >= chars.length) {
    // A cursor at the very end of a full row sits at the start of the next one.
    if (used >= cols) {
      all.push(row);
      row = "";
      used = 0;
    }
    place = { row: all.length, col: used };
  }
  all.push(row);
  const first = Math.max(0, place.row - 2);
  return { rows: all.slice(first, first + 3), cursor: { row: place.row - first, col: place.col } };
}

export interface StatusState {
  connection?: { connected: boolean; server: string; retryAt?: number; pending: number };
  /** The current conversation's keys: a group's, a DM contact's as pinned, or changed and waiting for /trust. */
  encryption?: "group" | "pinned" | "changed";
  /** What the conversation's last secrecy notice said, while it holds (undefined: nothing to warn of). */
  secrecy?: "not forward secret" | "doubt";
  typing: string[];
  confirming: boolean;
  /** The quick switcher's matches, while it is open. */
  switcher?: string[];
  now: number;
  /** The bar's width, where known: past it, the short forms. */
  cols?: number;
}

/**
 * The status bar: what asks for an answer first (a changed key among them),
 * then who is typing, then the steady state. Where it is wider than `cols`,
 * the steady parts take their short forms, and only then is the end cut.
 */
export function statusRow(s: StatusState): Row {
  const state = s.connection;
  const pending = state && state.pending > 0 ? `, ${state.pending} waiting to send` : "";
  const connection = (short: boolean) => {
    if (state && !state.connected) return state.retryAt !== undefined ? `reconnecting, next try in ${Math.max(0, Math.ceil((state.retryAt - s.now) / 1000))} s` : "reconnecting…";
    return state?.server && !short ? `connected to ${state.server}` : "connected";
  };
  const keys = (short: boolean) => (s.encryption === "pinned" ? (short ? "encrypted" : "encrypted, key pinned (/verify)") : s.encryption === "group" ? "encrypted" : "");
  const bar = (short: boolean) =>
    `[${[
      s.confirming ? "a draft is unsent: Ctrl-C again to leave" : "",
      s.switcher ? s.switcher.join("  ") || "no match" : "",
      s.encryption === "changed" ? "KEY CHANGED: /verify, then /trust" : "",
      s.secrecy === "doubt" ? "MEMBERSHIP NOT CONFIRMED by an admin" : "",
      s.typing.length ? `${s.typing.join(", ")} ${s.typing.length === 1 ? "is" : "are"} typing…` : "",
      `${connection(short)}${pending}`,
      keys(short),
      s.secrecy === "not forward secret" ? (short ? "NOT forward secret" : "NOT forward secret (not on MLS)") : "",
    ]
      .filter(Boolean)
      .join(" · ")}]`;
  const long = bar(false);
  return [{ text: s.cols !== undefined && width(long) > s.cols ? bar(true) : long, reverse: true }];
}
