/**
 * The full-screen client's keys, as names the view acts on: one table, so
 * that the help and the handling agree.
 */
import { helpTable } from "../commands";

export interface Key {
  name: string;
  ctrl: boolean;
  meta: boolean;
  shift: boolean;
  sequence: string;
}

export type Action =
  | { do: "submit" }
  | { do: "insert"; text: string }
  | { do: "edit"; op: "left" | "right" | "home" | "end" | "wordLeft" | "wordRight" | "backspace" | "deleteForward" | "killWord" | "killToStart" | "killToEnd" | "up" | "down" }
  | { do: "complete" }
  | { do: "page"; by: 1 | -1 }
  | { do: "goto"; index: number }
  | { do: "cycle"; by: 1 | -1 }
  | { do: "unread" }
  | { do: "switcher" }
  | { do: "interrupt" }
  | { do: "eof" }
  | { do: "escape" }
  | { do: "redraw" };

/** The keys as a table like the commands' (client/commands.ts HELP), so that each wraps under its own description. */
export const KEY_HELP = helpTable("Keys:", [
  ["Alt-1…9, Ctrl-N/Ctrl-P", "switch conversation"],
  ["Alt-A", "the next conversation with unread messages (those naming you first)"],
  ["Ctrl-K", "pick a conversation by name (with the cursor at the end of the line; elsewhere it cuts to the end)"],
  ["PageUp/PageDown", "scroll (older history is fetched at the top)"],
  ["Left/Right, Home/End", "move in the line (Ctrl-A/Ctrl-E too); Alt-B/Alt-F or Ctrl-Left/Right by word"],
  ["Ctrl-W, Ctrl-U", "cut the word before the cursor, or everything before it"],
  ["Up/Down", "the lines you typed before"],
  ["Tab", "complete a command or a name"],
  ["a pasted block", "one message, its lines kept"],
  ["Ctrl-C", "leave (asks first if a draft is unsent)"],
  ["Ctrl-L", "redraw the screen"],
]);

export function actionOf(key: Key): Action | undefined {
  const { name, ctrl, meta } = key;
  if (meta && !ctrl && /^[1-9]$/.test(name)) return { do: "goto", index: Number(name) - 1 };
  // irssi's and weechat's key for "where something happened".
  if (meta && !ctrl && name === "a") return { do: "unread" };
  if (ctrl) {
    const ctrlKeys: Record<string, Action> = {
      c: { do: "interrupt" },
      d: { do: "eof" },
      n: { do: "cycle", by: 1 },
      p: { do: "cycle", by: -1 },
      k: { do: "switcher" },
      w: { do: "edit", op: "killWord" },
      u: { do: "edit", op: "killToStart" },
      a: { do: "edit", op: "home" },
      e: { do: "edit", op: "end" },
      b: { do: "edit", op: "left" },
      f: { do: "edit", op: "right" },
      h: { do: "edit", op: "backspace" },
      l: { do: "redraw" },
      left: { do: "edit", op: "wordLeft" },
      right: { do: "edit", op: "wordRight" },
      backspace: { do: "edit", op: "killWord" },
    };
    return ctrlKeys[name];
  }
  if (meta && (name === "b" || name === "left")) return { do: "edit", op: "wordLeft" };
  if (meta && (name === "f" || name === "right")) return { do: "edit", op: "wordRight" };
  if (meta && name === "backspace") return { do: "edit", op: "killWord" };
  switch (name) {
    case "return":
    case "enter":
    case "linefeed":
      return { do: "submit" };
    case "left":
    case "right":
    case "home":
    case "end":
    case "backspace":
    case "up":
    case "down":
      return { do: "edit", op: name };
    case "delete":
      return { do: "edit", op: "deleteForward" };
    case "tab":
      return { do: "complete" };
    case "pageup":
      return { do: "page", by: 1 };
    case "pagedown":
      return { do: "page", by: -1 };
    case "escape":
      return { do: "escape" };
  }
  if (!meta && key.sequence && [...key.sequence].every((ch) => ch >= " " && ch !== "\x7f")) return { do: "insert", text: key.sequence };
  return undefined;
}
