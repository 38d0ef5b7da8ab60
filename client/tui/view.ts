/**
 * The full-screen client (`chatterbox chat` on a terminal): the conversation
 * list, the current conversation's messages, a status bar and an input line.
 * This file is the glue: the session's events go into the model (./model.ts),
 * keys into the editor (./editor.ts), ./render.ts says what to draw and
 * ./screen.ts draws it with @opentui/core.
 */
import { HELP } from "../commands";
import type { ReceiptEvent, Received, TypingEvent } from "../session";
import { sanitize } from "../format";
import { label, type ChatView, type Sending, type Target, type ViewActions } from "../view";
import { InputEditor } from "./editor";
import { actionOf, KEY_HELP, type Key } from "./keys";
import { ChatModel, type Conv } from "./model";
import { inputRows, listRows, paneRows, statusRow, visible, type Row } from "./render";
import { LIST_COLS, Screen } from "./screen";

const TYPING_SHOWN_MS = 6_000;
const COMMANDS = ["/jump", "/dm", "/g", "/to", "/file", "/history", "/who", "/info", "/set", "/groups", "/group", "/verify", "/trust", "/search", "/open", "/help", "/quit"];

export class TuiView implements ChatView {
  readonly json = false;
  private readonly model: ChatModel;
  private readonly editor = new InputEditor();
  private actions?: ViewActions;
  private notify = true;
  private readonly typists = new Map<number, Map<string, number>>();
  /** Ctrl-K's filter while the switcher is open. */
  private switcher?: string;
  /** Ctrl-C was pressed once with a draft: a second one leaves. */
  private confirming = false;
  private fetching = false;
  /** The last /search's matches, for /jump. */
  private results: Received[] = [];
  private closed = false;
  private opening = false;
  /**
   * Whether the person is looking: a terminal that reports focus says when its
   * window loses it, and nothing is marked read meanwhile. One that never
   * reports it counts as focused.
   */
  private focused = true;
  /** Why the session ended, to say once the terminal is back. */
  private farewell?: string;
  private readonly timer: ReturnType<typeof setInterval>;
  private screen!: Screen;

  private constructor(me: string) {
    this.model = new ChatModel(me);
    // Typing lines expire and the connection state changes without an event to say so.
    this.timer = setInterval(() => this.draw(), 1_000);
  }

  static async create(me: string): Promise<TuiView> {
    const view = new TuiView(me);
    view.screen = await Screen.open({
      key: (key) => view.key(key),
      paste: (text) => view.paste(text),
      wheel: (rowsUp) => view.scrollBy(rowsUp),
      focus: (focused) => view.focus(focused),
      resized: () => view.draw(),
    });
    return view;
  }

  open(actions: ViewActions): void {
    this.actions = actions;
    void actions
      .conversations()
      .then((convs) => {
        for (const c of convs) {
          const conv = this.model.conv(c.target, c.conv);
          if (conv.key !== this.model.current) conv.unread = Math.max(conv.unread, c.unread);
          if (conv.items.length === 0 && c.conv >= 0) void this.loadOlder(conv);
        }
        this.draw();
      })
      .catch(() => {});
    this.draw();
  }

  // --- what the session says ---

  message(m: Received): void {
    const before = this.model.currentConv?.scroll ? paneRows(this.model, this.model.currentConv, this.paneCols()).length : 0;
    const { added, current, conv } = this.model.add(m);
    if (!added) return;
    // Scrolled up, the view stays where it is, and what arrived below it is not shown (so not read) yet.
    if (current && conv.scroll > 0) conv.scroll += paneRows(this.model, conv, this.paneCols()).length - before;
    // With no conversation open yet, the first message from someone opens theirs: a reply typed at once goes to them.
    if (!this.model.current && m.from !== this.model.me && !this.opening) {
      this.opening = true;
      void this.actions?.switchTo(conv.target);
    }
    if (current && conv.scroll === 0 && this.focused) this.actions?.shown(m.conv, m.seq);
    else if (m.from !== this.model.me && this.notify) this.ring(m);
    this.typists.get(m.conv)?.delete(m.from);
    this.draw();
  }

  private ring(m: Received): void {
    this.screen.notify("ChatterBox", `${m.from}${m.group ? ` in #${m.group}` : ""}: ${m.file ? m.file.name : m.text}`);
  }

  receipt(r: ReceiptEvent): void {
    this.model.receipt(r);
    this.draw();
  }

  read(conv: number, seq: number): void {
    this.model.readElsewhere(conv, seq);
    this.draw();
  }

  typing(t: TypingEvent): void {
    const who = this.typists.get(t.conv) ?? new Map<string, number>();
    who.set(t.from, Date.now() + TYPING_SHOWN_MS);
    this.typists.set(t.conv, who);
    this.draw();
  }

  status(text: string): void {
    this.model.note(`* ${text}`);
    this.draw();
  }

  event(type: string, fields: Record<string, unknown>, human: string): void {
    if (type === "settings" && typeof fields.notify === "boolean") this.notify = fields.notify;
    if (type === "status" && /^talking (to|in) /.test(String(fields.text))) return this.draw();
    if (type === "help") human = `${HELP}\n${KEY_HELP}`;
    this.model.note(human);
    this.draw();
  }

  pending(target: Target, text: string): Sending {
    const { conv, local } = this.model.pending(target, text);
    conv.scroll = 0;
    this.draw();
    return {
      stored: (r) => {
        this.model.stored(conv, local, r);
        this.draw();
      },
      failed: () => {
        this.model.failed(conv, local);
        this.draw();
      },
    };
  }

  switched(target: Target, conv: number | undefined): void {
    const before = this.model.currentConv;
    if (before) before.draft = this.editor.text;
    const c = this.model.open(target, conv);
    // What was typed with no conversation open stays in the input; otherwise each conversation has its draft.
    if (before && before !== c) this.editor.set(c.draft);
    // What is now on screen has been shown.
    this.markShown(c);
    if (c.conv !== undefined)
      void this.actions
        ?.receipts(c.conv)
        .then((rs) => {
          for (const r of rs) this.model.receipt(r);
          this.draw();
        })
        .catch(() => {});
    if (c.items.filter((i) => i.kind === "message").length < 20) void this.loadOlder(c);
    this.draw();
  }

  /** What is at the bottom of the pane is on screen when it is not scrolled up: marked read up to there. */
  private markShown(c: Conv): void {
    if (c.scroll > 0 || c.key !== this.model.current || !this.focused) return;
    const theirs = c.items.filter((i) => i.kind === "message" && !i.own);
    const last = theirs[theirs.length - 1];
    if (last && last.kind === "message" && c.conv !== undefined) this.actions?.shown(c.conv, last.m.seq);
  }

  ended(error: Error): void {
    this.model.note(`* ${error.message}`);
    this.farewell = error.message;
    this.draw();
  }

  fileLine(text: string): void {
    this.model.note(text.trim());
    this.draw();
  }

  // --- what the person does ---

  private key(key: Key): void {
    const action = actionOf(key);
    if (!action) return;
    if (action.do !== "interrupt") this.confirming = false;
    if (this.switcher !== undefined) return this.switcherKey(action);
    switch (action.do) {
      case "submit": {
        const line = this.editor.submit();
        const c = this.model.currentConv;
        if (c) {
          c.draft = "";
          c.scroll = 0;
          this.markShown(c);
        }
        const search = /^\/search\s+(.+)$/s.exec(line.trim());
        const jump = /^\/jump\s+(\d+)$/.exec(line.trim());
        if (search) this.search(search[1]!);
        else if (jump) void this.jump(Number(jump[1]));
        else if (line.trim() !== "") this.actions?.submit(line);
        break;
      }
      case "insert":
        this.editor.insert(action.text);
        this.actions?.typing();
        break;
      case "edit":
        if (action.op === "killToStart" || action.op === "killWord" || action.op === "backspace" || action.op === "deleteForward" || action.op === "killToEnd") this.editor[action.op]();
        else this.editor[action.op]();
        break;
      case "complete":
        this.editor.complete(this.editor.text.startsWith("/") && !this.editor.text.includes(" ") ? COMMANDS : this.names());
        break;
      case "page":
        return this.page(action.by);
      case "goto": {
        const c = this.model.ordered()[action.index];
        if (c) void this.actions?.switchTo(c.target);
        break;
      }
      case "cycle": {
        const all = this.model.ordered();
        if (all.length === 0) break;
        const at = all.findIndex((c) => c.key === this.model.current);
        void this.actions?.switchTo(all[(at + action.by + all.length) % all.length]!.target);
        break;
      }
      case "switcher":
        // Ctrl-K cuts to the end of the line when there is something after the cursor; otherwise it opens the switcher.
        if (!this.editor.atEnd) this.editor.killToEnd();
        else this.switcher = "";
        break;
      case "interrupt":
        if (this.hasDraft() && !this.confirming) {
          this.confirming = true;
          break;
        }
        this.actions?.quit();
        return;
      case "eof":
        if (this.editor.text === "") return this.actions?.quit();
        this.editor.deleteForward();
        break;
      case "escape":
        break;
      case "redraw":
        this.screen.redraw();
        break;
    }
    this.draw();
  }

  private switcherKey(action: ReturnType<typeof actionOf>): void {
    if (!action) return;
    const matches = this.switcherMatches();
    if (action.do === "insert") this.switcher += action.text;
    else if (action.do === "edit" && action.op === "backspace") this.switcher = [...this.switcher!].slice(0, -1).join("");
    else if (action.do === "submit") {
      this.switcher = undefined;
      if (matches[0]) void this.actions?.switchTo(matches[0].target);
    } else if (action.do === "escape" || action.do === "interrupt" || action.do === "switcher") this.switcher = undefined;
    this.draw();
  }

  private switcherMatches(): Conv[] {
    const f = (this.switcher ?? "").toLowerCase();
    return this.model.ordered().filter((c) => label(c.target).toLowerCase().includes(f));
  }

  /** Focus back: what is on screen now has been seen. */
  private focus(focused: boolean): void {
    this.focused = focused;
    const c = this.model.currentConv;
    if (focused && c) this.markShown(c);
  }

  private paste(text: string): void {
    // A pasted block is one message, its lines kept (said in /help); Enter sends it.
    this.editor.insert(text.replace(/\r\n?/g, "\n").replace(/\n+$/, ""));
    this.draw();
  }

  private hasDraft(): boolean {
    return this.editor.text.trim() !== "" || [...this.model.convs.values()].some((c) => c.key !== this.model.current && c.draft.trim() !== "");
  }

  private names(): string[] {
    const out: string[] = [];
    for (const c of this.model.convs.values()) {
      out.push(c.target.kind === "group" ? `#${c.target.name}` : c.target.name);
      for (const u of c.positions.keys()) out.push(u);
    }
    return out;
  }

  private page(by: 1 | -1): void {
    this.scrollBy(by * Math.max(1, this.paneHeight() - 2));
  }

  /** Scrolls the messages up (positive) or down; at the top, older ones are fetched. */
  private scrollBy(rowsUp: number): void {
    const c = this.model.currentConv;
    if (!c) return;
    const height = this.paneHeight();
    const shown = visible(paneRows(this.model, c, this.paneCols()), height, c.scroll + rowsUp);
    c.scroll = shown.scroll;
    if (c.scroll === 0) this.markShown(c);
    if (rowsUp > 0 && shown.atTop) void this.loadOlder(c);
    this.draw();
  }

  /** /search TEXT here: the matches as numbered lines; /jump N opens one's conversation with it in view. */
  private search(text: string): void {
    this.results = this.actions?.search(text) ?? [];
    if (this.results.length === 0) return this.model.note(`* nothing on this device matches "${text}"`);
    const lines = this.results.map((m, i) => {
      const where = m.group !== undefined ? `#${m.group}` : m.from === this.model.me ? m.to : m.from;
      return `  [${i + 1}] ${new Date(m.at).toLocaleString("en-GB", { dateStyle: "short", timeStyle: "short" })} ${where} · ${m.from}: ${sanitize(m.text)}`;
    });
    this.model.note([`* ${this.results.length} on this device match "${text}", newest first; /jump N to go there:`, ...lines].join("\n"));
  }

  private async jump(n: number): Promise<void> {
    const m = this.results[n - 1];
    if (!m) return this.model.note(`* no result ${n}: /search first`);
    const target = this.model.targetOf(m);
    await this.actions?.switchTo(target);
    const c = this.model.conv(target, m.conv);
    // Hold everything from the match on, then put it at the top of the pane.
    while (!c.items.some((i) => i.kind === "message" && i.m.seq <= m.seq) && !c.complete) await this.loadOlder(c, true);
    const rows = paneRows(this.model, c, this.paneCols());
    const at = rows.findIndex((r) => r.some((seg) => seg.seq === m.seq));
    if (at >= 0) c.scroll = Math.max(0, rows.length - at - this.paneHeight());
    this.draw();
  }

  /** Older messages for a conversation: this device's copy, then the server's. */
  private async loadOlder(c: Conv, wait = false): Promise<void> {
    while (wait && this.fetching) await Bun.sleep(20);
    if (this.fetching || c.complete || !this.actions) return;
    this.fetching = true;
    try {
      const got = await this.actions.older(c.target, this.model.oldestSeq(c), 50);
      if (this.model.addOlder(c, got) === 0) c.complete = true;
    } catch {
      c.complete = true;
    } finally {
      this.fetching = false;
    }
    this.markShown(c);
    this.draw();
  }

  // --- drawing ---

  private paneCols(): number {
    return Math.max(20, this.screen.size.cols - LIST_COLS);
  }

  private input(): ReturnType<typeof inputRows> {
    const typed = this.switcher !== undefined;
    return inputRows(this.prompt(), typed ? "" : this.editor.text, typed ? 0 : this.editor.cursor, this.paneCols());
  }

  private paneHeight(): number {
    return Math.max(1, this.screen.size.rows - 1 - this.input().rows.length);
  }

  private prompt(): string {
    if (this.switcher !== undefined) return `switch to: ${this.switcher}`;
    const c = this.model.currentConv;
    return c ? `${label(c.target)}> ` : "> ";
  }

  private statusBar(): Row {
    const c = this.model.currentConv;
    const now = Date.now();
    const typists = c?.conv !== undefined ? this.typists.get(c.conv) : undefined;
    return statusRow({
      connection: this.actions?.connection(),
      encryption: c === undefined ? undefined : c.target.kind === "group" ? "group" : this.actions?.keyChanged(c.target.name) ? "changed" : "pinned",
      typing: [...(typists ?? new Map<string, number>()).entries()].filter(([, until]) => until > now).map(([who]) => who),
      confirming: this.confirming,
      switcher: this.switcher !== undefined ? this.switcherMatches().map((m) => label(m.target)) : undefined,
      now,
    });
  }

  private draw(): void {
    if (this.closed) return;
    const input = this.input();
    const height = Math.max(1, this.screen.size.rows - 1 - input.rows.length);
    const c = this.model.currentConv;
    const shown = visible(paneRows(this.model, c, this.paneCols()), height, c?.scroll ?? 0);
    if (c) c.scroll = shown.scroll;
    const pad: Row[] = Array.from({ length: Math.max(0, height - shown.rows.length) }, () => [{ text: "" }]);
    this.screen.paint({
      list: listRows(this.model, LIST_COLS - 1),
      pane: [...pad, ...shown.rows],
      bar: this.statusBar(),
      input: input.rows,
      cursor: input.cursor,
    });
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.timer);
    await this.screen.close();
    // The screen is gone: why the session ended goes where it stays.
    if (this.farewell) process.stderr.write(`chatterbox: ${this.farewell}\n`);
  }
}
