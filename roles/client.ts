/**
 * The client role: the one-shot commands (signup, send, inbox, history) and the
 * interactive chat, each wiring the session, the formatting and the terminal.
 */
import { createInterface } from "node:readline";
import { askBalancer } from "../balancer/ask";
import { HELP, parse, type Command } from "../client/commands";
import { checkPassword, signupAccount } from "../client/account";
import { line, sanitize } from "../client/format";
import { saveIdentity } from "../client/keystore";
import { ChatSession, type Received } from "../client/session";
import { lineEditor } from "../client/terminal";
import { Link } from "../net/link";
import { ChatError } from "../protocol/errors";

export interface ClientOptions {
  balancer: string;
  user: string;
  password: () => Promise<string>;
}

/** Makes the account's identity keys here, and registers their public halves and a password-wrapped backup. */
export async function signup(options: ClientOptions): Promise<void> {
  const password = await options.password();
  checkPassword(password);
  const link = await Link.connect(await askBalancer(options.balancer), { hello: { role: "client" } });
  try {
    saveIdentity(options.user, await signupAccount(link, options.user, password));
  } finally {
    link.close();
  }
}

/** The safety number of the user and a contact, to compare in person or on a call. */
export async function verify(options: ClientOptions & { with: string }): Promise<string> {
  const session = await ChatSession.open({ ...options });
  try {
    return await session.safetyNumber(options.with);
  } finally {
    await session.close();
  }
}

export async function passwd(options: ClientOptions & { newPassword: () => Promise<string> }): Promise<void> {
  const session = await ChatSession.open({ ...options });
  try {
    await session.changePassword(await options.password(), await options.newPassword());
  } finally {
    await session.close();
  }
}

/** Resolves only once the server has stored the message. */
export async function send(options: ClientOptions & { to: string; text: string; timeoutMs?: number }): Promise<{ msg: number }> {
  const session = await ChatSession.open({ ...options });
  try {
    const sent = session.sendText(options.to, options.text);
    const timeout = new Promise<never>((_, reject) =>
      setTimeout(() => reject(new ChatError("E_TIMEOUT", "The server did not acknowledge the message in time")), options.timeoutMs ?? 30_000).unref(),
    );
    return await Promise.race([sent, timeout]);
  } finally {
    await session.close();
  }
}

/** Prints every message waiting for the user, oldest first, and acknowledges them. */
export async function inbox(options: ClientOptions & { json: boolean; print?: (line: string) => void }): Promise<number> {
  const print = options.print ?? ((l: string) => console.log(l));
  let count = 0;
  const session = await ChatSession.open({
    ...options,
    onMessage(m) {
      if (m.from === options.user) return;
      count++;
      print(line(m, options.json));
    },
  });
  await session.close();
  return count;
}

export async function history(options: ClientOptions & { with: string; limit: number; json: boolean }): Promise<Received[]> {
  const session = await ChatSession.open({ ...options });
  try {
    const messages = await session.history(options.with, options.limit);
    for (const m of messages) console.log(line(m, options.json));
    return messages;
  } finally {
    await session.close();
  }
}

/**
 * The interactive client. On a terminal, a prompt with live messages printed
 * above it; otherwise, commands read line by line and each event printed as a
 * line (a JSON object a line with --json), so it can be scripted.
 */
export async function chat(options: ClientOptions & { json: boolean }): Promise<void> {
  const interactive = process.stdin.isTTY === true && !options.json;
  let current: string | undefined;
  let out: (text: string) => void = (text) => console.log(text);
  const event = (type: string, fields: Record<string, unknown>, human: string) =>
    out(options.json ? JSON.stringify({ type, ...fields }) : human);

  let finish!: () => void;
  const finished = new Promise<void>((resolve) => (finish = resolve));
  const session = await ChatSession.open({
    ...options,
    onMessage: (m) => out(line(m, options.json)),
    onStatus: (status) => event(status.startsWith("WARNING") ? "warning" : "status", { text: status }, `* ${status}`),
    onEnd: (error) => {
      event("error", { code: error.code, message: error.message }, `* ${error.message}`);
      finish();
    },
  });
  event("status", { text: `logged in as ${options.user}` }, `* logged in as ${options.user}; /help for commands`);

  const sendTo = (to: string, text: string) =>
    session.sendText(to, text).then(
      (r) => {
        if (options.json) event("sent", { id: r.msg, to, time: new Date(r.at).toISOString(), text }, "");
        else if (!interactive) out(`[sent ${r.msg}] ${options.user} → ${to}: ${sanitize(text)}`);
      },
      (e: ChatError) => event("error", { code: e.code, message: e.message }, `* not sent to ${to}: ${e.message}`),
    );

  const sends = new Set<Promise<void>>();
  const track = (p: Promise<void>) => {
    sends.add(p);
    void p.finally(() => sends.delete(p));
  };

  const run = async (command: Command) => {
    switch (command.kind) {
      case "say":
        if (!current) return event("error", { code: "E_BAD_REQUEST", message: "no conversation" }, "* no conversation yet: /dm USER first");
        return track(sendTo(current, command.text));
      case "to":
        return track(sendTo(command.user, command.text));
      case "dm":
        current = command.user;
        editor?.setPrompt(`${current}> `);
        return event("status", { text: `talking to ${current}` }, `* talking to ${current}`);
      case "history": {
        if (!current) return event("error", { code: "E_BAD_REQUEST", message: "no conversation" }, "* /dm USER first");
        const messages = await session.history(current, command.limit);
        for (const m of messages) out(line(m, options.json));
        return;
      }
      case "who": {
        const users = await session.who();
        return event("who", { users }, `* online: ${users.join(", ") || "nobody"}`);
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
  const handle = (text: string) => {
    const command = parse(text);
    if (command) void run(command).catch((e: Error) => event("error", { code: (e as ChatError).code, message: e.message }, `* ${e.message}`));
  };

  const editor = interactive ? lineEditor(handle, () => finish()) : undefined;
  if (editor) {
    out = (text) => editor.print(text);
    editor.setPrompt("> ");
  } else {
    const reader = createInterface({ input: process.stdin });
    reader.on("line", handle);
    reader.on("close", () => finish());
  }
  await finished;
  editor?.close();
  // Whatever was typed before the end is sent before we leave.
  await Promise.allSettled([...sends]);
  await session.close();
}
