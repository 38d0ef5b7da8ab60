/**
 * The chat client's command language, parsed into values: the same for a
 * person at a terminal and for a script piping lines in.
 */
export type GroupOp = "create" | "add" | "remove" | "promote" | "leave" | "members";

export type Command =
  | { kind: "say"; text: string }
  | { kind: "dm"; user: string }
  | { kind: "g"; group: string }
  | { kind: "to"; target: string; text: string }
  | { kind: "file"; target?: string; path: string }
  | { kind: "history"; limit: number }
  | { kind: "who" }
  | { kind: "groups" }
  | { kind: "group"; op: GroupOp; group: string; users: string[] }
  | { kind: "verify"; user: string }
  | { kind: "trust"; user: string }
  | { kind: "info"; id?: number }
  | { kind: "set"; value: boolean }
  | { kind: "notify"; value: boolean }
  | { kind: "search"; text: string }
  | { kind: "open" }
  | { kind: "help" }
  | { kind: "quit" }
  | { kind: "error"; message: string };

export const HELP = helpTable("Plain text goes to the current conversation.", [
  ["/dm USER", "talk to USER"],
  ["/g GROUP", "talk in GROUP"],
  ["/to USER|GROUP TEXT", "send one message (#GROUP to mean the group when a user has the same name)"],
  ["/file [USER|GROUP] PATH", "send a file (to the current conversation, or the one named)"],
  ["/history [N]", "the last N messages of the current conversation (default 20)"],
  ["/who", "who of your contacts is online, and when the others were last seen"],
  ["/info [ID]", "who has your last message (or message ID) here: delivered, read"],
  ["/set read-receipts on|off", "send and see read receipts, or neither"],
  ["/set notify on|off", "(full screen) the bell and desktop notification for other conversations"],
  ["/open", "open the last file received here with the system's opener"],
  ["/search TEXT", "search the messages this device holds (the server cannot: it sees ciphertext)"],
  ["/groups", "your groups, with unread counts"],
  ["/group create GROUP [USER...]", "a new group; you are its first admin"],
  ["/group add GROUP USER...", "(admins) add members"],
  ["/group remove GROUP USER...", "(admins) remove members"],
  ["/group promote GROUP USER", "(admins) make a member an admin"],
  ["/group leave GROUP", "leave the group"],
  ["/group members GROUP", "who is in the group"],
  ["/verify USER", "the safety number to compare with USER"],
  ["/trust USER", "accept USER's new identity key (after comparing safety numbers)"],
  ["/help", "this list"],
  ["/quit", "leave (Ctrl-D too)"],
]);

/** The commands (or keys) in two columns, the second aligned after the longest first. */
export function helpTable(heading: string, rows: [command: string, what: string][]): string {
  const width = Math.max(...rows.map(([c]) => c.length)) + 2;
  return [heading, ...rows.map(([c, what]) => `  ${c.padEnd(width)}${what}`)].join("\n");
}

const GROUP_USAGE: Record<GroupOp, [min: number, max: number, usage: string]> = {
  create: [0, Infinity, "/group create GROUP [USER...]"],
  add: [1, Infinity, "/group add GROUP USER..."],
  remove: [1, Infinity, "/group remove GROUP USER..."],
  promote: [1, 1, "/group promote GROUP USER"],
  leave: [0, 0, "/group leave GROUP"],
  members: [0, 0, "/group members GROUP"],
};

export function parse(line: string): Command | undefined {
  const trimmed = line.trim();
  if (trimmed === "") return undefined;
  if (!trimmed.startsWith("/")) return { kind: "say", text: line };
  const [word, ...rest] = trimmed.split(/\s+/);
  const one = (kind: "dm" | "verify" | "trust"): Command =>
    rest.length === 1 ? ({ kind, user: rest[0]! } as Command) : { kind: "error", message: `usage: ${word} USER` };
  switch (word) {
    case "/dm":
    case "/verify":
    case "/trust":
      return one(word.slice(1) as "dm" | "verify" | "trust");
    case "/g":
      return rest.length === 1 ? { kind: "g", group: rest[0]!.replace(/^#/, "") } : { kind: "error", message: "usage: /g GROUP" };
    case "/to": {
      const match = /^\/to\s+(\S+)\s+(.+)$/s.exec(trimmed);
      return match ? { kind: "to", target: match[1]!, text: match[2]! } : { kind: "error", message: "usage: /to USER|GROUP TEXT" };
    }
    case "/file": {
      // A path may hold spaces: everything after the target (if any) is the path.
      const match = /^\/file\s+(?:(#?[a-z0-9_.-]{1,32})\s+)?(.+)$/s.exec(trimmed);
      if (!match) return { kind: "error", message: "usage: /file [USER|GROUP] PATH" };
      if (match[1] !== undefined && rest.length === 1) return { kind: "file", path: rest[0]! };
      return match[1] !== undefined ? { kind: "file", target: match[1], path: match[2]! } : { kind: "file", path: match[2]! };
    }
    case "/history": {
      const limit = rest.length === 0 ? 20 : Number(rest[0]);
      return Number.isInteger(limit) && limit > 0 && limit <= 1000
        ? { kind: "history", limit }
        : { kind: "error", message: "usage: /history [N], N from 1 to 1000" };
    }
    case "/who":
      return { kind: "who" };
    case "/info": {
      if (rest.length === 0) return { kind: "info" };
      const id = Number(rest[0]);
      return rest.length === 1 && Number.isInteger(id) && id > 0 ? { kind: "info", id } : { kind: "error", message: "usage: /info [MESSAGE-ID]" };
    }
    case "/set": {
      const on = rest[1] === "on" || rest[1] === "off" ? rest[1] === "on" : undefined;
      if (rest.length !== 2 || on === undefined) return { kind: "error", message: "usage: /set read-receipts|notify on|off" };
      if (rest[0] === "read-receipts") return { kind: "set", value: on };
      if (rest[0] === "notify") return { kind: "notify", value: on };
      return { kind: "error", message: "usage: /set read-receipts|notify on|off" };
    }
    case "/open":
      return rest.length === 0 ? { kind: "open" } : { kind: "error", message: "usage: /open (the last file received in this conversation)" };
    case "/search": {
      const text = trimmed.slice("/search".length).trim();
      return text ? { kind: "search", text } : { kind: "error", message: "usage: /search TEXT" };
    }
    case "/groups":
      return { kind: "groups" };
    case "/group": {
      const [op, group, ...users] = rest;
      const rule = GROUP_USAGE[op as GroupOp];
      if (!rule) return { kind: "error", message: "usage: /group create|add|remove|promote|leave|members GROUP ..." };
      if (!group || users.length < rule[0] || users.length > rule[1]) return { kind: "error", message: `usage: ${rule[2]}` };
      return { kind: "group", op: op as GroupOp, group: group.replace(/^#/, ""), users };
    }
    case "/help":
      return { kind: "help" };
    case "/quit":
    case "/exit":
      return { kind: "quit" };
    default:
      return { kind: "error", message: `unknown command ${word}; /help lists them` };
  }
}
