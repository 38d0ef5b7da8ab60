/**
 * What the full-screen client holds, apart from drawing it: the
 * conversations (each with its messages, unread count, the read marker where
 * it was opened, its draft and scroll position), which one is current, and the
 * marks on the user's own messages. Pure state: the view feeds it the
 * session's events and draws it.
 */
import { beforeJoin } from "../received";
import type { ReceiptEvent, Received, SendResult } from "../session";
import { label, type Target } from "../view";

export type Mark = "pending" | "sent" | "delivered" | "read" | "failed";

export type Item =
  | { kind: "message"; m: Received; own: boolean }
  | { kind: "mine"; text: string; at: number; local: number; result?: SendResult; failed?: boolean }
  | { kind: "note"; text: string; at: number };

export interface Conv {
  key: string;
  target: Target;
  conv?: number;
  items: Item[];
  unread: number;
  /** Unread messages that name the user (@name or the name as a word). */
  mentions: number;
  /** Messages from others past this seq were new when the conversation was last opened: the "new messages" line. */
  markerSeq?: number;
  lastActivity: number;
  draft: string;
  /** Rows scrolled up from the bottom. */
  scroll: number;
  /** No older history left on the server. */
  complete: boolean;
  /** Each other member's positions. */
  positions: Map<string, { delivered: number; read: number }>;
  /** What the session last said of its messages' secrecy (server/mls secrecy notices): shown in the status bar while it holds. */
  secrecy?: { forwardSecret: boolean; doubt: boolean };
}

export const keyOf = (t: Target): string => `${t.kind}:${t.name}`;

export class ChatModel {
  readonly convs = new Map<string, Conv>();
  private readonly byConv = new Map<number, string>();
  current?: string;
  private nextLocal = 1;
  /** Notes for no conversation (before one is chosen). */
  readonly notes: Item[] = [];

  /** The user's name as a word, with or without "@". */
  private readonly mention: RegExp;

  constructor(readonly me: string) {
    // Names are [a-z0-9_.-]: only "." needs escaping (and "\-" is not allowed in a /u pattern).
    this.mention = new RegExp(`(^|[^\\p{L}\\p{N}_.-])@?${me.replace(/\./g, "\\.")}($|[^\\p{L}\\p{N}_-])`, "u");
  }

  /** The conversation for a target, made if new. */
  conv(target: Target, conv?: number): Conv {
    const key = keyOf(target);
    let c = this.convs.get(key);
    if (!c) {
      c = { key, target, items: [], unread: 0, mentions: 0, lastActivity: 0, draft: "", scroll: 0, complete: false, positions: new Map() };
      this.convs.set(key, c);
    }
    if (conv !== undefined && conv >= 0) {
      c.conv = conv;
      this.byConv.set(conv, key);
    }
    return c;
  }

  byId(conv: number): Conv | undefined {
    const key = this.byConv.get(conv);
    return key ? this.convs.get(key) : undefined;
  }

  mentions(text: string): boolean {
    return this.mention.test(text);
  }

  targetOf(m: Received): Target {
    if (m.group !== undefined) return { kind: "group", name: m.group };
    return { kind: "dm", name: m.from === this.me ? m.to : m.from };
  }

  /** Conversations by latest activity, newest first (the list's order, and Alt-1…9's). */
  ordered(): Conv[] {
    return [...this.convs.values()].sort((a, b) => b.lastActivity - a.lastActivity || label(a.target).localeCompare(label(b.target)));
  }

  get currentConv(): Conv | undefined {
    return this.current ? this.convs.get(this.current) : undefined;
  }

  /**
   * Adds a message where it belongs, once (a message seen twice, from the
   * replay and from history, is kept once). Says whether it is new and
   * whether it is in the conversation on screen.
   */
  add(m: Received): { added: boolean; current: boolean; conv: Conv } {
    const c = this.conv(this.targetOf(m), m.conv);
    const current = c.key === this.current;
    if (c.items.some((i) => i.kind === "message" && i.m.seq === m.seq)) return { added: false, current, conv: c };
    const own = m.from === this.me && m.kind !== "system";
    // My own message from this device: the pending line becomes the stored one.
    if (own) {
      const mine = c.items.findIndex((i) => i.kind === "mine" && (i.result?.seq === m.seq || (!i.result && i.text === m.text)));
      if (mine >= 0) c.items.splice(mine, 1);
    }
    const at = c.items.findIndex((i) => i.kind === "message" && i.m.seq > m.seq);
    const item: Item = { kind: "message", m, own };
    if (at < 0) c.items.push(item);
    else c.items.splice(at, 0, item);
    c.lastActivity = Math.max(c.lastActivity, m.at);
    // A membership change I made is mine too: not unread, though it is the server's line and has no mark.
    // Nor is a message from before this device joined: nothing here can show it (the quiet line says so).
    if (m.from !== this.me && !current && !beforeJoin(m)) {
      c.unread++;
      if (this.mentions(m.text)) c.mentions++;
    }
    return { added: true, current, conv: c };
  }

  /** Older messages fetched while scrolling up: before the others, none of them unread. */
  addOlder(c: Conv, messages: Received[]): number {
    let added = 0;
    for (const m of messages) {
      if (c.items.some((i) => i.kind === "message" && i.m.seq === m.seq)) continue;
      const at = c.items.findIndex((i) => i.kind === "message" && i.m.seq > m.seq);
      const item: Item = { kind: "message", m, own: m.from === this.me && m.kind !== "system" };
      if (at < 0) c.items.push(item);
      else c.items.splice(at, 0, item);
      added++;
    }
    return added;
  }

  /** Makes a conversation current: its unread are now on screen, and the "new messages" line marks where they start. */
  open(target: Target, conv?: number): Conv {
    const c = this.conv(target, conv);
    const previous = this.currentConv;
    if (previous && previous !== c) previous.markerSeq = undefined;
    this.current = c.key;
    if (c.unread > 0) {
      const theirs = c.items.filter((i): i is Item & { kind: "message" } => this.countsUnread(i));
      c.markerSeq = theirs[theirs.length - c.unread - 1]?.m.seq ?? 0;
    }
    c.unread = 0;
    c.mentions = 0;
    return c;
  }

  /** A message that can be unread here: someone else's, and one this device can show (not from before it joined). */
  countsUnread(i: Item): i is Item & { kind: "message" } {
    return i.kind === "message" && i.m.from !== this.me && !beforeJoin(i.m);
  }

  /** Where Alt-A goes: a conversation that names me first, then any with unread, the most recently active of each. */
  nextUnread(): Conv | undefined {
    const waiting = this.ordered().filter((c) => c.key !== this.current && c.unread > 0);
    return waiting.find((c) => c.mentions > 0) ?? waiting[0];
  }

  /** The read marker moved elsewhere (another device of the user's): fewer unread here. */
  readElsewhere(conv: number, seq: number): void {
    const c = this.byId(conv);
    if (!c || c.key === this.current) return;
    const unread = c.items.filter((i): i is Item & { kind: "message" } => this.countsUnread(i) && i.m.seq > seq);
    c.unread = unread.length;
    c.mentions = unread.filter((i) => this.mentions(i.m.text)).length;
  }

  pending(target: Target, text: string): { conv: Conv; local: number } {
    const c = this.conv(target);
    const local = this.nextLocal++;
    c.items.push({ kind: "mine", text, at: Date.now(), local });
    c.lastActivity = Date.now();
    return { conv: c, local };
  }

  stored(c: Conv, local: number, result: SendResult): void {
    const item = c.items.find((i) => i.kind === "mine" && i.local === local);
    if (item && item.kind === "mine") item.result = result;
    if (c.conv === undefined) this.conv(c.target, result.conv);
  }

  failed(c: Conv, local: number): void {
    const item = c.items.find((i) => i.kind === "mine" && i.local === local);
    if (item && item.kind === "mine") item.failed = true;
  }

  receipt(r: ReceiptEvent): void {
    const c = this.byId(r.conv);
    if (!c || r.user === this.me) return;
    const p = c.positions.get(r.user) ?? { delivered: 0, read: 0 };
    p.delivered = Math.max(p.delivered, r.delivered ?? 0, r.read ?? 0);
    p.read = Math.max(p.read, r.read ?? 0);
    c.positions.set(r.user, p);
  }

  /** The mark on one of my messages: read or delivered once every other member known here has it. */
  mark(c: Conv, item: Item): Mark | undefined {
    if (item.kind === "mine") return item.failed ? "failed" : item.result ? this.markAt(c, item.result.seq) : "pending";
    if (item.kind === "message" && item.own) return this.markAt(c, item.m.seq);
    return undefined;
  }

  private markAt(c: Conv, seq: number): Mark {
    const others = [...c.positions.values()];
    if (others.length === 0) return "sent";
    if (others.every((p) => p.read >= seq)) return "read";
    if (others.every((p) => p.delivered >= seq)) return "delivered";
    return "sent";
  }

  note(text: string): void {
    const c = this.currentConv;
    (c ? c.items : this.notes).push({ kind: "note", text, at: Date.now() });
  }

  /** A note about one conversation: in that conversation, wherever the person is now. */
  noteIn(target: Target, text: string): void {
    this.conv(target).items.push({ kind: "note", text, at: Date.now() });
  }

  /** Whether a conversation other than the current one keeps an unsent draft. */
  hasDrafts(): boolean {
    return [...this.convs.values()].some((c) => c.key !== this.current && c.draft.trim() !== "");
  }

  /** Names to complete with Tab: the conversations, and the people in them. */
  names(): string[] {
    const out: string[] = [];
    for (const c of this.convs.values()) {
      out.push(c.target.kind === "group" ? `#${c.target.name}` : c.target.name);
      for (const u of c.positions.keys()) out.push(u);
    }
    return out;
  }

  /** The oldest seq held for a conversation (to fetch what came before it). */
  oldestSeq(c: Conv): number {
    const first = c.items.find((i): i is Item & { kind: "message" } => i.kind === "message");
    return first?.m.seq ?? Number.MAX_SAFE_INTEGER;
  }
}
