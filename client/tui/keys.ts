/**
 * The full-screen client's keys, as names the view acts on: one table, so
 * that the help and the handling agree.
 */
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

export const KEY_HELP = [
  "Keys: Alt-1…9 or Ctrl-N/Ctrl-P switch conversation, Alt-A to the next with unread (mentions first), Ctrl-K to pick one by name;",
  "  PageUp/PageDown scroll (older history is fetched at the top);",
  "  Left/Right, Home/End (Ctrl-A/Ctrl-E), Alt-B/Alt-F or Ctrl-Left/Right by word; Ctrl-W, Ctrl-U, Ctrl-K cut; Up/Down input history; Tab completes;",
  "  a pasted block of several lines is one message (its lines kept); Ctrl-C leaves (asks first if a draft is unsent); Ctrl-L redraws.",
].join("\n");

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
