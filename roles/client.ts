/**
 * The client role: the one-shot commands (signup, send, inbox, history) and the
 * interactive chat, each wiring the session, the formatting and the terminal.
 */
import { statSync } from "node:fs";
import { basename } from "node:path";
import { askBalancerPatiently } from "../balancer/ask";
import { checkPassword, signupAccount } from "../client/account";
import { line, lines, sanitize } from "../client/format";
import { LocalStore } from "../client/store";
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
  /** This device's name, kept from its first login (default: the host name). */
  deviceName?: string;
  /** The password came from CHATTERBOX_PASSWORD (then a resumed session says it did not check it). */
  passwordGiven?: boolean;
  /** How long to keep trying the balancer (and a server) before giving up, in ms; default 30 s. */
  waitMs?: number;
}

/** One-shot commands stay quiet about reconnects, but a warning (a key changed, a wrong password) goes to stderr. */
function warn(line: string): void {
  if (line.startsWith("WARNING")) console.error(`chatterbox: ${line}`);
}

/** Makes the account's identity keys here, and registers their public halves and a password-wrapped backup. */
export async function signup(options: ClientOptions & { confirmPassword?: () => Promise<string> }): Promise<void> {
  const password = await options.password();
  checkPassword(password);
  // Typed at a prompt, it is typed twice: a typo would otherwise only show at the next login.
  if (options.confirmPassword && (await options.confirmPassword()) !== password) throw new ChatError("E_BAD_REQUEST", "The two passwords differ; nothing was created");
  const addr = await askBalancerPatiently(options.balancer, options.waitMs ?? DEFAULT_WAIT_MS, (e) => console.error(`chatterbox: ${e.message}; trying again`));
  const link = await Link.connect(addr, { hello: { role: "client" } });
  try {
    const keys = await signupAccount(link, options.user, password);
    const store = new LocalStore(options.user);
    store.saveIdentity(keys);
    store.close();
  } finally {
    link.close();
  }
}

/** The safety number of the user and a contact, to compare in person or on a call. */
export async function verify(options: ClientOptions & { with: string }): Promise<string> {
  const session = await ChatSession.open({ ...options, onStatus: warn });
  try {
    return await session.safetyNumber(options.with);
  } finally {
    await session.close();
  }
}

export async function passwd(options: ClientOptions & { newPassword: () => Promise<string> }): Promise<void> {
  const session = await ChatSession.open({ ...options, onStatus: warn });
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
  // An empty message would reach the other side as a sender and nothing else.
  if (options.text !== undefined && options.text.trim() === "") throw new ChatError("E_BAD_REQUEST", "The message is empty: nothing was sent");
  const session = await ChatSession.open({ ...options, onStatus: warn });
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
 * Prints every unread message, oldest first in each conversation, saves the
 * files among them under downloads/, and marks read what it printed, one
 * message at a time and as it goes: first what this device already holds
 * unread, then the replay as it arrives. An inbox cut short leaves the rest
 * unread, and the next run starts after what was printed.
 */
export async function inbox(options: ClientOptions & { json: boolean; print?: (line: string) => void }): Promise<number> {
  const print = options.print ?? ((l: string) => console.log(l));
  let output: Promise<void> = Promise.resolve();
  let printed = 0;
  const done = new Set<string>();
  const show = (m: Received) => {
    if (m.from === options.user && m.kind !== "system") return;
    output = output.then(async () => {
      const key = `${m.conv}:${m.seq}`;
      if (done.has(key)) return;
      done.add(key);
      print(line(m, options.json));
      if (m.file) await saveFile(session, m, options.json, print);
      session.markRead(m.conv, m.seq);
      printed++;
    });
  };
  const session = ChatSession.create({ ...options, onMessage: show, onStatus: warn });
  try {
    for (const m of session.unread()) show(m);
    await session.start();
    await session.idle();
    await output;
  } finally {
    await output.catch(() => {});
    await session.close();
  }
  return printed;
}

/** The user's devices; with `revoke`, ends that one's sessions and tokens. */
export async function devices(options: ClientOptions & { revoke?: string; json: boolean }): Promise<void> {
  const session = await ChatSession.open({ ...options, onStatus: warn });
  try {
    if (options.revoke !== undefined) {
      const closed = await session.revokeDevice(options.revoke);
      console.log(options.json ? JSON.stringify({ type: "revoked", device: options.revoke, closed }) : `Revoked ${options.revoke}: its tokens are gone and ${closed} connection(s) were closed`);
      return;
    }
    const list = await session.devices();
    if (options.json) return void console.log(JSON.stringify({ type: "devices", devices: list }));
    for (const d of list) {
      const seen = d.online ? "online now" : `last seen ${new Date(d.lastSeen).toISOString().replace("T", " ").slice(0, 16)} UTC`;
      console.log(`${d.current ? "*" : " "} ${d.id}  ${sanitize(d.name)}  (${seen}; added ${new Date(d.created).toISOString().slice(0, 10)})`);
    }
  } finally {
    await session.close();
  }
}

/** Shows the user's settings, or changes them. */
export async function settings(options: ClientOptions & { readReceipts?: boolean; json: boolean }): Promise<void> {
  const session = await ChatSession.open({ ...options, onStatus: warn });
  try {
    const now = options.readReceipts === undefined ? await session.getSettings() : await session.setReadReceipts(options.readReceipts);
    console.log(options.json ? JSON.stringify({ type: "settings", settings: now }) : `read receipts: ${now.readReceipts ? "on" : "off"}`);
  } finally {
    await session.close();
  }
}

/** Downloads a file again, found by its id. */
export async function fetch(options: ClientOptions & { file: string; json: boolean }): Promise<string> {
  const session = await ChatSession.open({ ...options, onStatus: warn });
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
  const session = await ChatSession.open({ ...options, onStatus: warn });
  try {
    const messages = options.group !== undefined ? await session.groupHistory(options.group, options.limit) : await session.history(options.with!, options.limit);
    for (const l of lines(messages, options.json, options.user)) console.log(l);
    return messages;
  } finally {
    await session.close();
  }
}

export { chat } from "../client/chat";
