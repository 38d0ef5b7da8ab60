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
  waitMs?: number;
}

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
  const session: ChatSession = await ChatSession.open({
    ...options,
    onMessage: (m) => {
      out(line(m, options.json));
      if (m.file) downloads = downloads.then(() => saveFile(session, m, options.json, out));
    },
    onStatus: (status) => event(status.startsWith("WARNING") ? "warning" : "status", { text: status }, `* ${status}`),
    onEnd: (error) => {
      problem(error);
      finish();
    },
  });
  event("status", { text: `logged in as ${options.user}` }, `* logged in as ${options.user}; /help for commands`);

  const label = (t: Target) => (t.kind === "group" ? `#${t.name}` : t.name);
  const send = async (target: Target, text: string) => {
    try {
      const r: SendResult = target.kind === "group" ? await session.sendGroupText(target.name, text) : await session.sendText(target.name, text);
      const fields = { id: r.msg, ...(target.kind === "group" ? { group: target.name } : { to: target.name }), time: new Date(r.at).toISOString(), text };
      if (options.json) event("sent", fields, "");
      else if (!interactive) out(`[sent ${r.msg}] ${options.user} → ${label(target)}: ${sanitize(text)}`);
    } catch (e) {
      event("error", { code: (e as ChatError).code, message: (e as Error).message }, `* not sent to ${label(target)}: ${(e as Error).message}`);
    }
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
        const users = await session.who();
        return event("who", { users }, `* online: ${users.join(", ") || "nobody"}`);
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

  const editor = interactive ? lineEditor(handle, () => finish()) : undefined;
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
  // Whatever was typed before the end is sent, and what arrived is saved, before we leave.
  await queue;
  await downloads;
  await session.close();
}
