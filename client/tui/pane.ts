/**
 * The message pane's movement and what it counts as seen: scrolling by rows,
 * pages and the wheel, fetching older history at the top, /search and /jump,
 * and marking read what is at the bottom of the pane while the person looks
 * (not scrolled up, and the terminal focused).
 */
import { sanitize } from "../format";
import type { Received } from "../session";
import type { ViewActions } from "../view";
import type { ChatModel, Conv } from "./model";
import { paneRows, visible } from "./render";

export type PaneActions = Pick<ViewActions, "older" | "shown" | "switchTo" | "search">;

/** What the pane needs of the screen around it. */
export interface PaneScreen {
  /** The pane's width and height in cells now. */
  size(): { cols: number; height: number };
  /** Whether the person is looking: the terminal has focus (one that never reports it counts as focused). */
  looking(): boolean;
  draw(): void;
}

export class Pane {
  private fetching = false;
  /** The last /search's matches, for /jump. */
  private results: Received[] = [];

  constructor(
    private readonly model: ChatModel,
    private readonly actions: PaneActions,
    private readonly screen: PaneScreen,
  ) {}

  /** What is at the bottom of the pane is on screen when it is not scrolled up: marked read up to there. */
  markShown(c: Conv): void {
    if (c.scroll > 0 || c.key !== this.model.current || !this.screen.looking()) return;
    const theirs = c.items.filter((i) => i.kind === "message" && !i.own);
    const last = theirs[theirs.length - 1];
    if (last && last.kind === "message" && c.conv !== undefined) this.actions.shown(c.conv, last.m.seq);
  }

  page(by: 1 | -1): void {
    this.scrollBy(by * Math.max(1, this.screen.size().height - 2));
  }

  /** Scrolls the messages up (positive) or down; at the top, older ones are fetched. */
  scrollBy(rowsUp: number): void {
    const c = this.model.currentConv;
    if (!c) return;
    const { cols, height } = this.screen.size();
    const shown = visible(paneRows(this.model, c, cols), height, c.scroll + rowsUp);
    c.scroll = shown.scroll;
    if (c.scroll === 0) this.markShown(c);
    if (rowsUp > 0 && shown.atTop) void this.loadOlder(c);
    this.screen.draw();
  }

  /** /search TEXT here: the matches as numbered lines; /jump N opens one's conversation with it in view. */
  search(text: string): void {
    this.results = this.actions.search(text);
    if (this.results.length === 0) return this.model.note(`* nothing on this device matches "${text}"`);
    const lines = this.results.map((m, i) => {
      const where = m.group !== undefined ? `#${m.group}` : m.from === this.model.me ? m.to : m.from;
      return `  [${i + 1}] ${new Date(m.at).toLocaleString("en-GB", { dateStyle: "short", timeStyle: "short" })} ${where} · ${m.from}: ${sanitize(m.text)}`;
    });
    this.model.note([`* ${this.results.length} on this device match "${text}", newest first; /jump N to go there:`, ...lines].join("\n"));
  }

  async jump(n: number): Promise<void> {
    const m = this.results[n - 1];
    if (!m) return this.model.note(`* no result ${n}: /search first`);
    const target = this.model.targetOf(m);
    await this.actions.switchTo(target);
    const c = this.model.conv(target, m.conv);
    // Hold everything from the match on, then put it at the top of the pane.
    while (!c.items.some((i) => i.kind === "message" && i.m.seq <= m.seq) && !c.complete) await this.loadOlder(c, true);
    const { cols, height } = this.screen.size();
    const rows = paneRows(this.model, c, cols);
    const at = rows.findIndex((r) => r.some((seg) => seg.seq === m.seq));
    if (at >= 0) c.scroll = Math.max(0, rows.length - at - height);
    this.screen.draw();
  }

  /** Older messages for a conversation: this device's copy, then the server's. */
  async loadOlder(c: Conv, wait = false): Promise<void> {
    while (wait && this.fetching) await Bun.sleep(20);
    if (this.fetching || c.complete) return;
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
    this.screen.draw();
  }
}
