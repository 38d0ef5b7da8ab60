/**
 * The terminal, through @opentui/core: four text areas (the conversation
 * list, the messages, the status bar, the input) painted from rows of
 * segments, and the keys, pastes, wheel, focus changes and resizes that come back. The
 * library owns the terminal: the alternate screen, raw input, key parsing,
 * and restoring everything at the end.
 */
import { BoxRenderable, createCliRenderer, RGBA, StyledText, TextAttributes, TextRenderable, type CliRenderer, type TextChunk } from "@opentui/core";
import type { Key } from "./keys";
import type { Row } from "./render";

/** Columns of the conversation list, its separator included. */
export const LIST_COLS = 22;

/** One screenful: what each area shows, and where the cursor is in the input (from its top left). */
export interface Frame {
  list: Row[];
  pane: Row[];
  bar: Row;
  input: string[];
  cursor: { row: number; col: number };
}

export interface ScreenInput {
  key(key: Key): void;
  paste(text: string): void;
  /** The wheel over the messages: rows up (negative: down). */
  wheel(rowsUp: number): void;
  /** The terminal window gained (true) or lost the person's focus. */
  focus(focused: boolean): void;
  resized(): void;
}

export class Screen {
  private readonly list: TextRenderable;
  private readonly pane: TextRenderable;
  private readonly bar: TextRenderable;
  private readonly input: TextRenderable;
  /** The terminal's size, as the last resize said. */
  size: { cols: number; rows: number };
  private closed = false;

  private constructor(
    private readonly renderer: CliRenderer,
    private readonly color: boolean,
    events: ScreenInput,
  ) {
    const root = new BoxRenderable(renderer, { id: "root", flexDirection: "row", width: "100%", height: "100%" });
    this.list = new TextRenderable(renderer, { id: "list", width: LIST_COLS, height: "100%", wrapMode: "none" });
    const right = new BoxRenderable(renderer, { id: "right", flexDirection: "column", flexGrow: 1, height: "100%" });
    this.pane = new TextRenderable(renderer, { id: "pane", flexGrow: 1, wrapMode: "none" });
    this.bar = new TextRenderable(renderer, { id: "bar", height: 1, wrapMode: "none" });
    this.input = new TextRenderable(renderer, { id: "input", height: 1, wrapMode: "none" });
    right.add(this.pane);
    right.add(this.bar);
    right.add(this.input);
    root.add(this.list);
    root.add(right);
    renderer.root.add(root);
    this.size = { cols: renderer.width, rows: renderer.height };
    renderer.keyInput.on("keypress", (key: Key) => events.key(key));
    renderer.keyInput.on("paste", (event: { bytes: Uint8Array }) => events.paste(new TextDecoder().decode(event.bytes)));
    // The wheel scrolls by three rows, as terminals scroll their own scrollback.
    this.pane.onMouseScroll = (event) => {
      const d = event.scroll?.direction;
      if (d === "up" || d === "down") events.wheel(d === "up" ? 3 : -3);
    };
    // The library parses the terminal's focus reports (CSI I / CSI O) into these.
    renderer.on("focus", () => events.focus(true));
    renderer.on("blur", () => events.focus(false));
    renderer.on("resize", (cols: number, rows: number) => {
      this.size = { cols, rows };
      events.resized();
    });
  }

  static async open(events: ScreenInput): Promise<Screen> {
    // Ctrl-C is the view's to handle (it asks first when a draft is unsent); signals end the process as usual.
    const renderer = await createCliRenderer({ exitOnCtrlC: false, useMouse: true, exitSignals: [] });
    return new Screen(renderer, !process.env.NO_COLOR, events);
  }

  paint(frame: Frame): void {
    if (this.closed) return;
    const { rows } = this.size;
    const listCols = LIST_COLS - 1;
    this.list.content = this.styled(
      Array.from({ length: rows }, (_, i) => {
        const row = frame.list[i] ?? [];
        const w = row.reduce((n, s) => n + Bun.stringWidth(s.text), 0);
        return [...row, { text: `${" ".repeat(Math.max(0, listCols - w))}│`, dim: true }];
      }),
    );
    this.pane.content = this.styled(frame.pane);
    this.bar.content = this.styled([frame.bar]);
    this.input.height = frame.input.length;
    this.input.content = frame.input.join("\n");
    // The terminal's cursor sits where the editor's is (1-based).
    this.renderer.setCursorPosition(LIST_COLS + frame.cursor.col + 1, rows - frame.input.length + frame.cursor.row + 1, true);
    this.renderer.requestRender();
  }

  /** The bell, and a desktop notification (OSC 9 / OSC 777) where the terminal has them. */
  notify(title: string, text: string): void {
    process.stdout.write("\x07");
    try {
      this.renderer.triggerNotification(text.slice(0, 200), title);
    } catch {
      // A terminal without desktop notifications still had the bell.
    }
  }

  redraw(): void {
    this.renderer.requestRender();
  }

  private styled(rows: Row[]): StyledText {
    const chunks: TextChunk[] = [];
    rows.forEach((row, i) => {
      for (const s of row) {
        let attributes = 0;
        if (s.bold) attributes |= TextAttributes.BOLD;
        if (s.dim && this.color) attributes |= TextAttributes.DIM;
        if (s.reverse) attributes |= TextAttributes.INVERSE;
        chunks.push({ __isChunk: true, text: s.text, ...(s.color && this.color ? { fg: RGBA.fromHex(s.color) } : {}), ...(attributes ? { attributes } : {}) });
      }
      if (i < rows.length - 1) chunks.push({ __isChunk: true, text: "\n" });
    });
    return new StyledText(chunks);
  }

  /** Gives the terminal back (the main screen, the cursor, cooked input); resolved once that is written. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.renderer.destroy();
    await this.renderer.closed;
  }
}
