/**
 * The full-screen client (`chatterbox chat` on a terminal): the conversation
 * list, the current conversation's messages, a status bar and an input line.
 * This file is the glue: the session's events go into the model (./model.ts),
 * keys into the editor (./editor.ts), the quick switcher (./switcher.ts) or
 * the pane's movement (./pane.ts); ./frame.ts and ./render.ts say what to
 * draw and ./screen.ts draws it with @opentui/core.
 */
import { HELP } from "../commands";
import { beforeJoin } from "../received";
import type { ReceiptEvent, Received, TypingEvent } from "../session";
import { label, secrecyLine, type ChatView, type Secrecy, type Sending, type Target, type ViewActions } from "../view";
import { InputEditor } from "./editor";
import { frameOf, paneCols, paneHeight, type InputState } from "./frame";
import { actionOf, KEY_HELP, type Action, type Key } from "./keys";
import { ChatModel } from "./model";
import { Pane } from "./pane";
import { paneRows, statusRow, type Row } from "./render";
import { Screen } from "./screen";
import { Switcher } from "./switcher";
import { Typists } from "./typists";

const COMMANDS = ["/jump", "/dm", "/g", "/to", "/file", "/history", "/who", "/info", "/set", "/groups", "/group", "/verify", "/trust", "/search", "/open", "/help", "/quit"];

export class TuiView implements ChatView {
  readonly json = false;
  private readonly model: ChatModel;
  private readonly editor = new InputEditor();
  private readonly switcher = new Switcher();
  private readonly typists = new Typists();
  private actions?: ViewActions;
  /** The pane's movement, once there are actions to fetch and mark read with. */
  private pane?: Pane;
  private notify = true;
  /** Ctrl-C was pressed once with a draft: a second one leaves. */
  private confirming = false;
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
      wheel: (rowsUp) => view.pane?.scrollBy(rowsUp),
      focus: (focused) => view.focus(focused),
      resized: () => view.draw(),
    });
    return view;
  }

  open(actions: ViewActions): void {
    this.actions = actions;
    this.pane = new Pane(this.model, actions, { size: () => this.paneSize(), looking: () => this.focused, draw: () => this.draw() });
    void actions
      .conversations()
      .then((convs) => {
        for (const c of convs) {
          const conv = this.model.conv(c.target, c.conv);
          if (conv.key !== this.model.current) conv.unread = Math.max(conv.unread, c.unread);
          if (conv.items.length === 0 && c.conv >= 0) void this.pane?.loadOlder(conv);
        }
        this.draw();
      })
      .catch(() => {});
    this.draw();
  }

  // --- what the session says ---

  message(m: Received): void {
    const cols = paneCols(this.screen.size);
    const before = this.model.currentConv?.scroll ? this.paneRowCount(cols) : 0;
    const { added, current, conv } = this.model.add(m);
    if (!added) return;
    // Scrolled up, the view stays where it is, and what arrived below it is not shown (so not read) yet.
    if (current && conv.scroll > 0) conv.scroll += this.paneRowCount(cols) - before;
    // With no conversation open yet, the first message from someone opens theirs: a reply typed at once goes to them.
    if (!this.model.current && m.from !== this.model.me && !this.opening) {
      this.opening = true;
      void this.actions?.switchTo(conv.target);
    }
    // On screen and looked at is read; anything else the person hears about.
    if (current && conv.scroll === 0 && this.focused) this.actions?.shown(m.conv, m.seq);
    else if (m.from !== this.model.me && this.notify && !beforeJoin(m)) this.ring(m);
    this.typists.stopped(m.conv, m.from);
    this.draw();
  }

  private paneRowCount(cols: number): number {
    const c = this.model.currentConv;
    return c ? paneRows(this.model, c, cols).length : 0;
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
    this.typists.saw(t.conv, t.from);
    this.draw();
  }

  status(text: string): void {
    this.model.note(`* ${text}`);
    this.draw();
  }

  secrecy(notice: Secrecy): void {
    // Said where it belongs (a /to to another conversation is told there, not here), and kept in the status bar.
    this.model.conv(notice.target).secrecy = { forwardSecret: notice.forwardSecret, doubt: notice.doubt !== undefined };
    this.model.noteIn(notice.target, `* ${secrecyLine(notice)}`);
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
    this.pane?.markShown(c);
    if (c.conv !== undefined)
      void this.actions
        ?.receipts(c.conv)
        .then((rs) => {
          for (const r of rs) this.model.receipt(r);
          this.draw();
        })
        .catch(() => {});
    if (c.items.filter((i) => i.kind === "message").length < 20) void this.pane?.loadOlder(c);
    this.draw();
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

  /** The terminal's window gained or lost focus: nothing is read while it is away, what is on screen is once it is back. */
  private focus(focused: boolean): void {
    this.focused = focused;
    const c = this.model.currentConv;
    if (focused && c) this.pane?.markShown(c);
  }

  private key(key: Key): void {
    const action = actionOf(key);
    if (!action) return;
    if (action.do !== "interrupt") this.confirming = false;
    if (this.switcher.open) {
      const chosen = this.switcher.key(action, this.model.ordered());
      if (chosen) void this.actions?.switchTo(chosen.target);
      return this.draw();
    }
    if (this.act(action) !== "quit") this.draw();
  }

  private act(action: Action): "quit" | void {
    switch (action.do) {
      case "submit":
        return this.submit();
      case "insert":
        this.editor.insert(action.text);
        // A command is not a message to the conversation: its people are not told that one is typing it.
        if (!this.editor.text.startsWith("/")) this.actions?.typing();
        return;
      case "edit":
        return this.editor[action.op]();
      case "complete":
        this.editor.complete(this.editor.text.startsWith("/") && !this.editor.text.includes(" ") ? COMMANDS : this.model.names());
        return;
      case "page":
        return this.pane?.page(action.by);
      case "goto": {
        const c = this.model.ordered()[action.index];
        if (c) void this.actions?.switchTo(c.target);
        return;
      }
      case "cycle": {
        const all = this.model.ordered();
        if (all.length === 0) return;
        const at = all.findIndex((c) => c.key === this.model.current);
        void this.actions?.switchTo(all[(at + action.by + all.length) % all.length]!.target);
        return;
      }
      case "unread": {
        const next = this.model.nextUnread();
        if (next) void this.actions?.switchTo(next.target);
        else this.status("no conversation has unread messages");
        return;
      }
      case "switcher":
        // Ctrl-K cuts to the end of the line when there is something after the cursor; otherwise it opens the switcher.
        if (!this.editor.atEnd) this.editor.killToEnd();
        else this.switcher.start();
        return;
      case "interrupt":
        if ((this.editor.text.trim() !== "" || this.model.hasDrafts()) && !this.confirming) {
          this.confirming = true;
          return;
        }
        this.actions?.quit();
        return "quit";
      case "eof":
        if (this.editor.text === "") {
          this.actions?.quit();
          return "quit";
        }
        return this.editor.deleteForward();
      case "escape":
        return;
      case "redraw":
        return this.screen.redraw();
    }
  }

  private submit(): void {
    const line = this.editor.submit();
    const c = this.model.currentConv;
    if (c) {
      c.draft = "";
      c.scroll = 0;
      this.pane?.markShown(c);
    }
    const search = /^\/search\s+(.+)$/s.exec(line.trim());
    const jump = /^\/jump\s+(\d+)$/.exec(line.trim());
    if (search) this.pane?.search(search[1]!);
    else if (jump) void this.pane?.jump(Number(jump[1]));
    else if (line.trim() !== "") this.actions?.submit(line);
  }

  private paste(text: string): void {
    // A pasted block is one message, its lines kept (said in /help); Enter sends it.
    this.editor.insert(text.replace(/\r\n?/g, "\n").replace(/\n+$/, ""));
    this.draw();
  }

  // --- drawing ---

  private input(): InputState {
    if (this.switcher.open) return { prompt: this.switcher.prompt, text: "", cursor: 0 };
    const c = this.model.currentConv;
    return { prompt: c ? `${label(c.target)}> ` : "> ", text: this.editor.text, cursor: this.editor.cursor };
  }

  private paneSize(): { cols: number; height: number } {
    return { cols: paneCols(this.screen.size), height: paneHeight(this.screen.size, this.input()) };
  }

  private statusBar(): Row {
    const c = this.model.currentConv;
    const now = Date.now();
    return statusRow({
      connection: this.actions?.connection(),
      encryption: c === undefined ? undefined : c.target.kind === "group" ? "group" : this.actions?.keyChanged(c.target.name) ? "changed" : "pinned",
      secrecy: c?.secrecy?.doubt ? "doubt" : c?.secrecy?.forwardSecret === false ? "not forward secret" : undefined,
      typing: this.typists.in(c?.conv, now),
      confirming: this.confirming,
      switcher: this.switcher.open ? this.switcher.matches(this.model.ordered()).map((m) => label(m.target)) : undefined,
      now,
      cols: paneCols(this.screen.size),
    });
  }

  private draw(): void {
    if (this.closed) return;
    this.screen.paint(frameOf(this.model, this.screen.size, this.input(), this.statusBar()));
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
