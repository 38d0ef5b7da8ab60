/**
 * The interactive line: raw-mode input with a prompt that incoming messages
 * print above, redrawing the half-typed line, so nobody has to press Enter to
 * see what arrived.
 */
export interface LineEditor {
  /** Prints a line above the prompt and redraws the prompt with what was typed. */
  print(text: string): void;
  setPrompt(prompt: string): void;
  close(): void;
}

export function lineEditor(onLine: (line: string) => void, onEnd: () => void, onTyping: () => void = () => {}): LineEditor {
  const stdin = process.stdin;
  const out = process.stdout;
  let prompt = "> ";
  let typed = "";
  let closed = false;
  const redraw = () => {
    if (!closed) out.write(`\r\x1b[2K${prompt}${typed}`);
  };
  const onData = (chunk: Buffer) => {
    // Arrow keys and other escape sequences are not part of the line.
    for (const ch of chunk.toString("utf8").replace(/\x1b(\[[0-9;]*[A-Za-z~]|O.)?/g, "")) {
      if (ch === "\r" || ch === "\n") {
        const line = typed;
        typed = "";
        out.write("\r\n");
        onLine(line);
        redraw();
      } else if (ch === "\u0003" || (ch === "\u0004" && typed === "")) {
        onEnd();
        return;
      } else if (ch === "\u007f" || ch === "\b") {
        typed = [...typed].slice(0, -1).join("");
        redraw();
      } else if (ch === "\u0015") {
        typed = "";
        redraw();
      } else if (ch >= " " && ch !== "\u007f") {
        typed += ch;
        out.write(ch);
        onTyping();
      }
    }
  };
  stdin.setRawMode(true);
  stdin.resume();
  stdin.on("data", onData);
  redraw();
  return {
    print(text) {
      if (closed) return void out.write(`${text}\n`);
      out.write(`\r\x1b[2K${text.replace(/\n/g, "\r\n")}\r\n`);
      redraw();
    },
    setPrompt(p) {
      prompt = p;
      redraw();
    },
    close() {
      if (closed) return;
      closed = true;
      stdin.off("data", onData);
      stdin.setRawMode(false);
      stdin.pause();
      out.write("\r\n");
    },
  };
}
