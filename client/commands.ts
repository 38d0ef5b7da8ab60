/**
 * The chat client's command language, parsed into values: the same for a
 * person at a terminal and for a script piping lines in.
 */
export type Command =
  | { kind: "say"; text: string }
  | { kind: "dm"; user: string }
  | { kind: "to"; user: string; text: string }
  | { kind: "history"; limit: number }
  | { kind: "who" }
  | { kind: "verify"; user: string }
  | { kind: "trust"; user: string }
  | { kind: "help" }
  | { kind: "quit" }
  | { kind: "error"; message: string };

export const HELP = [
  "Plain text goes to the current conversation.",
  "  /dm USER          switch the current conversation to USER",
  "  /to USER TEXT     send one message to USER",
  "  /history [N]      the last N messages of the current conversation (default 20)",
  "  /who              who is online now",
  "  /verify USER      the safety number to compare with USER",
  "  /trust USER       accept USER's new identity key (after comparing safety numbers)",
  "  /help             this list",
  "  /quit             leave (Ctrl-D too)",
].join("\n");

export function parse(line: string): Command | undefined {
  const trimmed = line.trim();
  if (trimmed === "") return undefined;
  if (!trimmed.startsWith("/")) return { kind: "say", text: line };
  const [word, ...rest] = trimmed.split(/\s+/);
  switch (word) {
    case "/dm":
      return rest.length === 1 ? { kind: "dm", user: rest[0]! } : { kind: "error", message: "usage: /dm USER" };
    case "/to": {
      const match = /^\/to\s+(\S+)\s+(.+)$/s.exec(trimmed);
      return match ? { kind: "to", user: match[1]!, text: match[2]! } : { kind: "error", message: "usage: /to USER TEXT" };
    }
    case "/history": {
      const limit = rest.length === 0 ? 20 : Number(rest[0]);
      return Number.isInteger(limit) && limit > 0 && limit <= 1000
        ? { kind: "history", limit }
        : { kind: "error", message: "usage: /history [N], N from 1 to 1000" };
    }
    case "/who":
      return { kind: "who" };
    case "/verify":
    case "/trust":
      return rest.length === 1
        ? { kind: word.slice(1) as "verify" | "trust", user: rest[0]! }
        : { kind: "error", message: `usage: ${word} USER` };
    case "/help":
      return { kind: "help" };
    case "/quit":
    case "/exit":
      return { kind: "quit" };
    default:
      return { kind: "error", message: `unknown command ${word}; /help lists them` };
  }
}
