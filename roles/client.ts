/**
 * The client role: the one-shot commands (signup, send, inbox, history) and the
 * interactive chat, each wiring the session, the formatting and the terminal.
 */
import { statSync } from "node:fs";
import { basename } from "node:path";
import { askBalancerPatiently } from "../balancer/ask";
import { checkPassword, signupAccount } from "../client/account";
import { line, sanitize } from "../client/format";
import { saveIdentity } from "../client/keystore";
import { progressBar } from "../client/progress";
import { saveFile } from "../client/save";
import { DEFAULT_WAIT_MS } from "../client/connection";
import { ChatSession, type Received } from "../client/session";
import { Link } from "../net/link";
import { ChatError } from "../protocol/errors";

export interface ClientOptions {
  balancer: string;
  user: string;
  password: () => Promise<string>;
  /** How long to keep trying the balancer (and a server) before giving up, in ms; default 30 s. */
  waitMs?: number;
}

/** Makes the account's identity keys here, and registers their public halves and a password-wrapped backup. */
export async function signup(options: ClientOptions): Promise<void> {
  const password = await options.password();
  checkPassword(password);
  const addr = await askBalancerPatiently(options.balancer, options.waitMs ?? DEFAULT_WAIT_MS, (e) => console.error(`chatterbox: ${e.message}; trying again`));
  const link = await Link.connect(addr, { hello: { role: "client" } });
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

/** Resolves only once the server has stored the message (and, for a file, every chunk). */
export async function send(options: ClientOptions & { to?: string; group?: string; text?: string; file?: string; timeoutMs?: number }): Promise<{ msg: number }> {
  if ((options.to === undefined) === (options.group === undefined)) throw new ChatError("E_BAD_REQUEST", "Give either --to USER or --group GROUP");
  if ((options.text === undefined) === (options.file === undefined)) throw new ChatError("E_BAD_REQUEST", "Give either a text or --file PATH");
  const session = await ChatSession.open({ ...options });
  try {
    if (options.file !== undefined) {
      const target = options.group !== undefined ? { group: options.group } : { to: options.to! };
      return await session.sendFile(target, options.file, progressBar(`sending ${basename(options.file)}`, statSync(options.file, { throwIfNoEntry: false })?.size ?? 0));
    }
    const sent = options.group !== undefined ? session.sendGroupText(options.group, options.text!) : session.sendText(options.to!, options.text!);
    const timeout = new Promise<never>((_, reject) =>
      setTimeout(() => reject(new ChatError("E_TIMEOUT", "The server did not acknowledge the message in time")), options.timeoutMs ?? 30_000).unref(),
    );
    return await Promise.race([sent, timeout]);
  } finally {
    await session.close();
  }
}

/**
 * Prints every message waiting for the user, oldest first, saves the files
 * among them under downloads/, and acknowledges them. Each is printed as it is
 * shown, not after the whole backlog: an inbox killed half way has printed
 * what it acknowledged, and the next one starts after that. (A file is saved
 * right after its line, once the session is open; later lines wait for it.)
 */
export async function inbox(options: ClientOptions & { json: boolean; print?: (line: string) => void }): Promise<number> {
  const print = options.print ?? ((l: string) => console.log(l));
  let opened!: (session: ChatSession) => void;
  const ready = new Promise<ChatSession>((resolve) => (opened = resolve));
  let output: Promise<void> = Promise.resolve();
  let count = 0;
  const session = await ChatSession.open({
    ...options,
    onMessage: (m) => {
      count++;
      output = output.then(async () => {
        print(line(m, options.json));
        if (m.file) await saveFile(await ready, m, options.json, print);
      });
    },
  });
  opened(session);
  try {
    await output;
  } finally {
    await session.close();
  }
  return count;
}

/** Downloads a file again, found by its id. */
export async function fetch(options: ClientOptions & { file: string; json: boolean }): Promise<string> {
  const session = await ChatSession.open({ ...options });
  try {
    const got = await session.fetchFileById(options.file, (file) => progressBar(`receiving ${file.name}`, file.size));
    console.log(options.json ? JSON.stringify({ type: "file", id: got.file.id, from: got.from, saved: got.path }) : `Saved ${got.file.name} from ${got.from} to ${got.path}`);
    return got.path;
  } finally {
    await session.close();
  }
}

export async function history(options: ClientOptions & { with?: string; group?: string; limit: number; json: boolean }): Promise<Received[]> {
  if ((options.with === undefined) === (options.group === undefined)) throw new ChatError("E_BAD_REQUEST", "Give either --with USER or --group GROUP");
  const session = await ChatSession.open({ ...options });
  try {
    const messages = options.group !== undefined ? await session.groupHistory(options.group, options.limit) : await session.history(options.with!, options.limit);
    for (const m of messages) console.log(line(m, options.json));
    return messages;
  } finally {
    await session.close();
  }
}

export { chat } from "../client/chat";
