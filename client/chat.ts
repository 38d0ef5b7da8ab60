/**
 * The interactive client. On a terminal: a prompt, with incoming messages
 * printed above it as they arrive. Otherwise: commands read line by line and
 * each event printed as a line (a JSON object a line with --json), so that it
 * can be scripted. Commands run one after another, in the order typed.
 */
import { createInterface } from "node:readline";
import { ChatError } from "../protocol/errors";
import { HELP, parse, type Command } from "./commands";
import { line, sanitize } from "./format";
import { statSync } from "node:fs";
import { basename } from "node:path";
import { saveFile } from "./save";
import { progressBar } from "./progress";
import { ChatSession, describeFile, type SendResult } from "./session";
import { lineEditor } from "./terminal";

export interface ChatOptions {
  balancer: string;
  user: string;
  password: () => Promise<string>;
  json: boolean;
  deviceName?: string;
  passwordGiven?: boolean;
  waitMs?: number;
}

/** A "typing" line for the same person and conversation at most this often. */
const TYPING_LINE_MS = 5_000;
/** How often this client tells the other side that its user is typing. */
const TYPING_SEND_MS = 3_000;

type Target = { kind: "dm" | "group"; name: string };

export async function chat(options: ChatOptions): Promise<void> {
  const interactive = process.stdin.isTTY === true && !options.json;
  let current: Target | undefined;
  let out: (text: string) => void = (text) => console.log(text);
  const event = (type: string, fields: Record<string, unknown>, human: string) =>
    out(options.json ? JSON.stringify({ type, ...fields }) : human);
  const problem = (e: Error) => event("error", { code: (e as ChatError).code ?? "E_INTERNAL", message: e.message }, `* ${e.message}`);

  let finish!: () => void;
  const finished = new Promise<void>((resolve) => (finish = resolve));
  // Files that arrive are fetched one after another, while chatting goes on.
  let downloads: Promise<void> = Promise.resolve();
  const typingShown = new Map<string, number>();
  // What the replay printed before the session was returned: marked read once it is.
  const shownEarly: { conv: number; seq: number }[] = [];
  let opened: ChatSession | undefined;
  const session: ChatSession = await ChatSession.open({
    ...options,
    onMessage: (m) => {
      out(line(m, options.json));
      // Printed is shown: the read marker may move past it (never past what was not printed).
      if (m.from !== options.user) opened ? opened.markRead(m.conv, m.seq) : shownEarly.push(m);
      if (m.file) downloads = downloads.then(() => saveFile(session, m, options.json, out));
    },
    onReceipt: (r) => {
      if (options.json) event("receipt", { conv: r.conv, user: r.user, ...(r.delivered !== undefined ? { delivered: r.delivered } : {}), ...(r.read !== undefined ? { read: r.read } : {}) }, "");
    },
    onRead: (conv, seq) => {
      if (options.json) event("read", { conv, seq }, "");
    },
    onTyping: (t) => {
      const key = `${t.conv}:${t.from}`;
      if (!options.json && Date.now() - (typingShown.get(key) ?? 0) < TYPING_LINE_MS) return;
      typingShown.set(key, Date.now());
      event("typing", { conv: t.conv, from: t.from, ...(t.group ? { group: t.group } : {}) }, `* ${t.from} is typing${t.group ? ` in #${t.group}` : ""}…`);
    },
    onStatus: (status) => event(status.startsWith("WARNING") ? "warning" : "status", { text: status }, `* ${status}`),
    onEnd: (error) => {
      problem(error);
      finish();
    },
  });
  opened = session;
  for (const m of shownEarly) session.markRead(m.conv, m.seq);
  event("status", { text: `logged in as ${options.user}` }, `* logged in as ${options.user}; /help for commands`);

  const label = (t: Target) => (t.kind === "group" ? `#${t.name}` : t.name);
  /** Sends in flight: the command queue does not wait for them (the outbox keeps their order), leaving does. */
  const inFlight = new Set<Promise<void>>();
  const send = async (target: Target, text: string): Promise<void> => {
    if (!session.connected) event("status", { text: `queued for ${label(target)}: not connected, sent on reconnect` }, `* not connected: queued for ${label(target)}, sent on reconnect`);
    const sending = (async () => {
      try {
        const r: SendResult = target.kind === "group" ? await session.sendGroupText(target.name, text) : await session.sendText(target.name, text);
        const fields = { id: r.msg, ...(target.kind === "group" ? { group: target.name } : { to: target.name }), time: new Date(r.at).toISOString(), text };
        if (options.json) event("sent", fields, "");
        else if (!interactive) out(`[sent ${r.msg}] ${options.user} → ${label(target)}: ${sanitize(text)}`);
      } catch (e) {
        event("error", { code: (e as ChatError).code, message: (e as Error).message }, `* not sent to ${label(target)}: ${(e as Error).message}`);
      }
    })();
    inFlight.add(sending);
    void sending.then(() => inFlight.delete(sending));
    // Commands run in order, so a script's output follows its lines; but a
    // send that waits for a reconnect lets the next lines through to the
    // outbox, where they are safe on disk and keep their order.
    while (inFlight.has(sending) && session.connected) await Promise.race([sending, Bun.sleep(50)]);
  };
  /** "#name" is a group; a bare name is a group I am in, or else a user. */
  const resolve = async (name: string): Promise<Target> => {
    if (name.startsWith("#")) return { kind: "group", name: name.slice(1) };
    const mine = await session.groups().catch(() => []);
    return mine.some((g) => g.name === name) ? { kind: "group", name } : { kind: "dm", name };
  };
  const switchTo = (target: Target) => {
    current = target;
    editor?.setPrompt(`${label(target)}> `);
    event("status", { text: `talking ${target.kind === "group" ? "in" : "to"} ${label(target)}` }, `* talking ${target.kind === "group" ? "in" : "to"} ${label(target)}`);
  };

  const run = async (command: Command): Promise<void> => {
    switch (command.kind) {
      case "say":
        if (!current) return event("error", { code: "E_BAD_REQUEST", message: "no conversation" }, "* no conversation yet: /dm USER or /g GROUP first");
        return send(current, command.text);
      case "to":
        return send(await resolve(command.target), command.text);
      case "file": {
        const target = command.target !== undefined ? await resolve(command.target) : current;
        if (!target) return event("error", { code: "E_BAD_REQUEST", message: "no conversation" }, "* /file USER|GROUP PATH, or /dm or /g first");
        const size = statSync(command.path, { throwIfNoEntry: false })?.size ?? 0;
        const sent = await session.sendFile(target.kind === "group" ? { group: target.name } : { to: target.name }, command.path, progressBar(`sending ${basename(command.path)}`, size, interactive));
        return event("sent", { id: sent.msg, file: { id: sent.file.id, name: sent.file.name, size: sent.file.size } }, `* sent ${describeFile(sent.file)} to ${label(target)}`);
      }
      case "dm":
        return switchTo({ kind: "dm", name: command.user });
      case "g":
        await session.groupMembers(command.group);
        return switchTo({ kind: "group", name: command.group });
      case "history": {
        if (!current) return event("error", { code: "E_BAD_REQUEST", message: "no conversation" }, "* /dm USER or /g GROUP first");
        const messages = current.kind === "group" ? await session.groupHistory(current.name, command.limit) : await session.history(current.name, command.limit);
        for (const m of messages) out(line(m, options.json));
        return;
      }
      case "who": {
        const contacts = await session.who();
        const online = contacts.filter((c) => c.online).map((c) => c.name);
        const away = contacts.filter((c) => !c.online).map((c) => `${c.name} (${c.lastSeen ? `last seen ${new Date(c.lastSeen).toLocaleString("en-GB")}` : "never seen"})`);
        return event("who", { users: online, contacts }, `* online: ${online.join(", ") || "nobody"}${away.length ? `\n* offline: ${away.join(", ")}` : ""}`);
      }
      case "info": {
        if (!current) return event("error", { code: "E_BAD_REQUEST", message: "no conversation" }, "* /dm USER or /g GROUP first");
        const conv = await session.conversationOf(current.kind === "group" ? { group: current.name } : { with: current.name });
        const mine = session.localHistory(conv, 500).filter((m) => m.from === options.user && (command.id === undefined || m.id === command.id));
        const m = mine[mine.length - 1];
        if (!m) return event("error", { code: "E_BAD_REQUEST", message: "no such message of yours here" }, "* no message of yours to show receipts for here");
        const receipts = await session.receipts(conv);
        const readBy = receipts.filter((r) => (r.read ?? 0) >= m.seq).map((r) => r.user);
        const delivered = receipts.filter((r) => (r.delivered ?? 0) >= m.seq).map((r) => r.user);
        const total = receipts.length;
        const hidden = !session.settings.readReceipts ? " (your read receipts are off, so you see no one's)" : "";
        return event(
          "info",
          { id: m.id, conv, seq: m.seq, delivered, read: readBy, of: total },
          `* message ${m.id} (${new Date(m.at).toLocaleString("en-GB")}): delivered to ${delivered.length} of ${total}, read by ${readBy.length} of ${total}${readBy.length ? ` (${readBy.join(", ")})` : ""}${hidden}`,
        );
      }
      case "set": {
        const now = await session.setReadReceipts(command.value);
        return event("settings", { settings: now }, `* read receipts are ${now.readReceipts ? "on" : "off"}`);
      }
      case "groups": {
        const groups = await session.groups();
        const human = groups.length === 0 ? "* you are in no group" : groups.map((g) => `* #${g.name}: ${g.members} members, ${g.unread} unread${g.role === "admin" ? ", you are an admin" : ""}`).join("\n");
        return event("groups", { groups }, human);
      }
      case "group": {
        if (command.op === "members") {
          const { members } = await session.groupMembers(command.group);
          return event("members", { group: command.group, members }, `* #${command.group}: ${members.map((m) => (m.role === "admin" ? `${m.name} (admin)` : m.name)).join(", ")}`);
        }
        if (command.op === "create") await session.createGroup(command.group, command.users);
        else await session.changeGroup(command.op, command.group, command.users);
        if (command.op === "create") switchTo({ kind: "group", name: command.group });
        return;
      }
      case "verify": {
        const number = await session.safetyNumber(command.user);
        return event(
          "safety",
          { with: command.user, number },
          `* safety number for you and ${command.user}:\n    ${number}\n  It matches on both sides only if nobody swapped your keys. Compare it with ${command.user} in person or on a call.`,
        );
      }
      case "trust": {
        const shownNow = await session.trust(command.user);
        return event("status", { text: `trusting the current key of ${command.user}` }, `* now trusting the current key of ${command.user}; ${shownNow} held message(s) shown`);
      }
      case "help":
        return options.json ? event("help", { text: HELP }, HELP) : out(HELP);
      case "quit":
        return finish();
      case "error":
        return event("error", { code: "E_BAD_REQUEST", message: command.message }, `* ${command.message}`);
    }
  };

  let queue: Promise<void> = Promise.resolve();
  const handle = (text: string) => {
    const command = parse(text);
    if (command) queue = queue.then(() => run(command).catch(problem));
  };

  let typingSent = 0;
  const typed = () => {
    if (!current || Date.now() - typingSent < TYPING_SEND_MS) return;
    typingSent = Date.now();
    session.typing(current.kind === "group" ? { group: current.name } : { to: current.name });
  };
  const editor = interactive ? lineEditor(handle, () => finish(), typed) : undefined;
  if (editor) {
    out = (text) => editor.print(text);
    editor.setPrompt("> ");
  } else {
    const reader = createInterface({ input: process.stdin });
    reader.on("line", handle);
    reader.on("close", () => void queue.then(() => finish()));
  }
  await finished;
  editor?.close();
  // Whatever was typed before the end is sent, and what arrived is saved, before we leave;
  // what cannot be sent now stays in the outbox for the next start.
  await queue;
  for (let grace = Date.now() + 2_000; inFlight.size > 0 && (session.connected || Date.now() < grace); ) await Bun.sleep(20);
  await downloads;
  await session.close();
}
