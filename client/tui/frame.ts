/**
 * One screenful from the model and the input: how the terminal's cells are
 * shared between the list, the messages, the status bar and the input (which
 * grows to three rows), and what each shows. Pure: the size comes in.
 */
import type { ChatModel } from "./model";
import { inputRows, listRows, paneRows, visible, type Row } from "./render";
import { LIST_COLS, type Frame } from "./screen";

export interface Size {
  cols: number;
  rows: number;
}

/** What the input line holds: the prompt, the text and the cursor in it (in characters). */
export interface InputState {
  prompt: string;
  text: string;
  cursor: number;
}

/** The message pane's width: what the list leaves. */
export function paneCols(size: Size): number {
  return Math.max(20, size.cols - LIST_COLS);
}

/** The message pane's height: what the status bar and the input leave. */
export function paneHeight(size: Size, input: InputState): number {
  return Math.max(1, size.rows - 1 - inputRows(input.prompt, input.text, input.cursor, paneCols(size)).rows.length);
}

/** The frame to paint; the current conversation's scroll is kept within what it has. */
export function frameOf(model: ChatModel, size: Size, input: InputState, bar: Row): Frame {
  const rows = inputRows(input.prompt, input.text, input.cursor, paneCols(size));
  const height = Math.max(1, size.rows - 1 - rows.rows.length);
  const c = model.currentConv;
  const shown = visible(paneRows(model, c, paneCols(size)), height, c?.scroll ?? 0);
  if (c) c.scroll = shown.scroll;
  const pad: Row[] = Array.from({ length: Math.max(0, height - shown.rows.length) }, () => [{ text: "" }]);
  return { list: listRows(model, LIST_COLS - 1), pane: [...pad, ...shown.rows], bar, input: rows.rows, cursor: rows.cursor };
}
