/**
 * The interactive client: one session, one view, and the commands between
 * them. The view is line mode (a prompt on a terminal with --plain, or lines
 * read and printed for a script), JSON lines (--json), or the full-screen
 * client on a terminal. Commands run one after another, in the order typed,
 * whichever view typed them.
 */
import { existsSync, statSync } from "node:fs";
import { basename } from "node:path";
import { ChatError } from "../protocol/errors";
import { HELP, parse, type Command } from "./commands";
import { line, shown } from "./format";
import { saveFile } from "./save";
import { newDeviceLine } from "./own-devices";
import { progressBar } from "./progress";
import { beforeJoin } from "./received";
import { ChatSession, describeFile, type Received } from "./session";
import { label, type ChatView, type Target, type ViewActions } from "./view";

export interface ChatOptions {
  balancer: string;
  user: string;
  password: () => Promise<string>;
  json: boolean;
  /** Line mode even on a terminal. */
  plain?: boolean;
  deviceName?: string;
  passwordGiven?: boolean;
  waitMs?: number;
}

/** How often this client tells the other side that its user is typing. */
const TYPING_SEND_MS = 3_000;

/** Names a file's opener would run rather than show: someone else's file is never run by /open. */
const RUNNABLE = /\.(desktop|sh|bash|command|app|exe|bat|cmd|com|msi|jar|py|pl|rb|js|appimage|run|bin|deb|rpm|pkg|dmg)$/i;

function openRefusal(path: string): string | undefined {
  if (RUNNABLE.test(path)) return `not opening ${basename(path)}: a file of that kind would run, not open; it is in ${path}`;
  return undefined;
}

/** Picks the view: JSON lines, line mode, or the full-screen client on a terminal. */
async function makeView(options: ChatOptions): Promise<ChatView> {
  if (options.json) return new (await import("./views/json")).JsonView();
  const tty = process.stdin.isTTY === true && process.stdout.isTTY === true;
  if (tty && !options.plain) return await (await import("./tui/view")).TuiView.create(options.user);
  return new (await import("./views/line")).LineView(options.user, process.stdin.isTTY === true);
}

export async function chat(options: ChatOptions): Promise<void> {
  const view = await makeView(options);
  try {
    await runChat(options, view);
  } finally {
    await view.close();
  }
}

/** Runs a chat on any view until the person leaves or the session ends; exported for tests. */
export async function runChat(options: Omit<ChatOptions, "json">, view: ChatView): Promise<void> {
  let current: Target | undefined;
  const problem = (e: Error) => view.event("error", { code: (e as ChatError).code ?? "E_INTERNAL", message: e.message }, `* ${e.message}`);

  let finish!: () => void;
  const finished = new Promise<void>((resolve) => (finish = resolve));
  // Files that arrive are fetched one after another, while chatting goes on.
  let downloads: Promise<void> = Promise.resolve();
  // What arrives while logging in is shown after the "logged in" line.
  let early: Received[] | undefined = [];
  let opened: ChatSession | undefined;
  let retryAt: number | undefined;
  /** The last file saved in each conversation, for /open. */
  const saved = new Map<number, string>();
  const deliver = (m: Received) => {
    view.message(m);
    if (m.file)
      downloads = downloads.then(async () => {
        const path = await saveFile(opened!, m, view.json, (text) => view.fileLine(text));
        if (path) saved.set(m.conv, path);
      });
  };
  const session: ChatSession = await ChatSession.open({
    ...options,
    onMessage: (m) => (early ? early.push(m) : deliver(m)),
    onReceipt: (r) => view.receipt(r),
    onRead: (conv, seq) => view.read(conv, seq),
    onTyping: (t) => view.typing(t),
    onStatus: (status) => view.status(status),
    onSecrecy: (n) => view.secrecy({ target: "group" in n.target ? { kind: "group", name: n.target.group } : { kind: "dm", name: n.target.to }, forwardSecret: n.forwardSecret, ...(n.reason !== undefined ? { reason: n.reason } : {}), ...(n.doubt !== undefined ? { doubt: n.doubt } : {}) }),
    onNewDevice: (d) => view.event("device.new", { id: d.id, name: d.name, created: d.created }, newDeviceLine(d)),
    onRetry: (at) => (retryAt = at),
    onEnd: (error) => {
      view.ended(error);
      finish();
    },
  });
  opened = session;

  /** Sends in flight: the command queue does not wait for them (the outbox keeps their order), leaving does. */
  const inFlight = new Set<Promise<void>>();
  const send = async (target: Target, text: string): Promise<void> => {
    if (!session.connected) view.event("status", { text: `queued for ${label(target)}: not connected, sent on reconnect` }, `* not connected: queued for ${label(target)}, sent on reconnect`);
    const mark = view.pending(target, text);
    const sending = (async () => {
      try {
        mark.stored(target.kind === "group" ? await session.sendGroupText(target.name, text) : await session.sendText(target.name, text));
      } catch (e) {
        mark.failed(e as Error);
        view.event("error", { code: (e as ChatError).code, message: (e as Error).message }, `* not sent to ${label(target)}: ${(e as Error).message}`);
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
  const convOf = (t: Target) => session.conversationOf(t.kind === "group" ? { group: t.name } : { with: t.name });
  /** Makes a conversation current once the server knows it: "/dm nosuchuser" is refused here, not at each send. */
  const switchTo = async (target: Target) => {
    const conv = await convOf(target);
    current = target;
    view.switched(target, conv);
    view.event("status", { text: `talking ${target.kind === "group" ? "in" : "to"} ${label(target)}` }, `* talking ${target.kind === "group" ? "in" : "to"} ${label(target)}`);
  };

  const run = async (command: Command): Promise<void> => {
    switch (command.kind) {
      case "say":
        if (!current) return view.event("error", { code: "E_BAD_REQUEST", message: "no conversation" }, "* no conversation yet: /dm USER or /g GROUP first");
        return send(current, command.text);
      case "to":
        return send(await resolve(command.target), command.text);
      case "file": {
        if (!existsSync(command.path)) return view.event("error", { code: "E_BAD_REQUEST", message: `no such file: ${command.path}` }, `* no such file: ${command.path}`);
        const target = command.target !== undefined ? await resolve(command.target) : current;
        if (!target) return view.event("error", { code: "E_BAD_REQUEST", message: "no conversation" }, "* /file USER|GROUP PATH, or /dm or /g first");
        const size = statSync(command.path, { throwIfNoEntry: false })?.size ?? 0;
        const sent = await session.sendFile(target.kind === "group" ? { group: target.name } : { to: target.name }, command.path, progressBar(`sending ${basename(command.path)}`, size, false));
        return view.event("sent", { id: sent.msg, file: { id: sent.file.id, name: sent.file.name, size: sent.file.size } }, `* sent ${describeFile(sent.file)} to ${label(target)}`);
      }
      case "dm":
        return switchTo({ kind: "dm", name: command.user });
      case "g":
        return switchTo({ kind: "group", name: command.group });
      case "history": {
        if (!current) return view.event("error", { code: "E_BAD_REQUEST", message: "no conversation" }, "* /dm USER or /g GROUP first");
        const messages = current.kind === "group" ? await session.groupHistory(current.name, command.limit) : await session.history(current.name, command.limit);
        for (const m of messages) view.message(m);
        return;
      }
      case "who": {
        const contacts = await session.who();
        const online = contacts.filter((c) => c.online).map((c) => c.name);
        const away = contacts.filter((c) => !c.online).map((c) => `${c.name} (${c.lastSeen ? `last seen ${new Date(c.lastSeen).toLocaleString("en-GB")}` : "never seen"})`);
        return view.event("who", { users: online, contacts }, `* online: ${online.join(", ") || "nobody"}${away.length ? `\n* offline: ${away.join(", ")}` : ""}`);
      }
      case "info": {
        if (!current) return view.event("error", { code: "E_BAD_REQUEST", message: "no conversation" }, "* /dm USER or /g GROUP first");
        const conv = await convOf(current);
        const mine = session.localHistory(conv, 500).filter((m) => m.from === options.user && (command.id === undefined || m.id === command.id));
        const m = mine[mine.length - 1];
        if (!m) return view.event("error", { code: "E_BAD_REQUEST", message: "no such message of yours here" }, "* no message of yours to show receipts for here");
        const receipts = await session.receipts(conv);
        const readBy = receipts.filter((r) => (r.read ?? 0) >= m.seq).map((r) => r.user);
        const delivered = receipts.filter((r) => (r.delivered ?? 0) >= m.seq).map((r) => r.user);
        const total = receipts.length;
        const hidden = !session.settings.readReceipts ? " (your read receipts are off, so you see no one's)" : "";
        return view.event(
          "info",
          { id: m.id, conv, seq: m.seq, delivered, read: readBy, of: total },
          `* message ${m.id} (${new Date(m.at).toLocaleString("en-GB")}): delivered to ${delivered.length} of ${total}, read by ${readBy.length} of ${total}${readBy.length ? ` (${readBy.join(", ")})` : ""}${hidden}`,
        );
      }
      case "set": {
        const now = await session.setReadReceipts(command.value);
        return view.event("settings", { settings: now }, `* read receipts are ${now.readReceipts ? "on" : "off"}`);
      }
      case "notify":
        return view.event("settings", { notify: command.value }, `* notifications are ${command.value ? "on" : "off"}`);
      case "open": {
        if (!current) return view.event("error", { code: "E_BAD_REQUEST", message: "no conversation" }, "* /dm USER or /g GROUP first");
        const path = saved.get(await convOf(current));
        if (!path) return view.event("error", { code: "E_BAD_REQUEST", message: "no file received here yet" }, "* no file received in this conversation since chat started");
        const refused = openRefusal(path);
        if (refused) return view.event("error", { code: "E_BAD_REQUEST", message: refused }, `* ${refused}`);
        Bun.spawn([process.platform === "darwin" ? "open" : "xdg-open", path], { stdio: ["ignore", "ignore", "ignore"] }).unref();
        return view.event("status", { text: `opening ${path}` }, `* opening ${path}`);
      }
      case "search": {
        const found = session.search(command.text, 20);
        const human = found.length ? [`* ${found.length} found on this device for "${command.text}", newest first:`, ...found.map((m) => `  ${line(m, false)}`)].join("\n") : `* nothing on this device matches "${command.text}"`;
        return view.event("search", { text: command.text, messages: found.map(shown) }, human);
      }
      case "groups": {
        const groups = await session.groups();
        const human = groups.length === 0 ? "* you are in no group" : groups.map((g) => `* #${g.name}: ${g.members} members, ${g.unread} unread${g.role === "admin" ? ", you are an admin" : ""}`).join("\n");
        return view.event("groups", { groups }, human);
      }
      case "group": {
        if (command.op === "members") {
          const { members } = await session.groupMembers(command.group);
          return view.event("members", { group: command.group, members }, `* #${command.group}: ${members.map((m) => `${m.name}${m.role === "admin" ? (m.adminUnconfirmed ? " (admin by the server's word only: the group's MLS admin list does not name them)" : " (admin)") : ""}${m.unconfirmed ? " (listed by the server, but no admin's MLS commit added them: they cannot read)" : ""}`).join(", ")}`);
        }
        if (command.op === "create") await session.createGroup(command.group, command.users);
        else await session.changeGroup(command.op, command.group, command.users);
        if (command.op === "create") await switchTo({ kind: "group", name: command.group });
        return;
      }
      case "verify": {
        const number = await session.safetyNumber(command.user);
        return view.event(
          "safety",
          { with: command.user, number },
          `* safety number for you and ${command.user}:\n    ${number}\n  It matches on both sides only if nobody swapped your keys. Compare it with ${command.user} in person or on a call.`,
        );
      }
      case "trust": {
        const shownNow = await session.trust(command.user);
        return view.event("status", { text: `trusting the current key of ${command.user}` }, `* now trusting the current key of ${command.user}; ${shownNow} held message(s) shown`);
      }
      case "help":
        return view.event("help", { text: HELP }, HELP);
      case "quit":
        return finish();
      case "error":
        return view.event("error", { code: "E_BAD_REQUEST", message: command.message }, `* ${command.message}`);
    }
  };

  let queue: Promise<void> = Promise.resolve();
  // When each conversation was last told (by name): typing in one must not hold back the next one's notice.
  const typingSent = new Map<string, number>();
  const actions: ViewActions = {
    submit(text) {
      const command = parse(text);
      if (command) queue = queue.then(() => run(command).catch(problem));
    },
    typing() {
      if (!current) return;
      const key = `${current.kind}:${current.name}`;
      if (Date.now() - (typingSent.get(key) ?? 0) < TYPING_SEND_MS) return;
      typingSent.set(key, Date.now());
      session.typing(current.kind === "group" ? { group: current.name } : { to: current.name });
    },
    // Shown is what may be marked read, never more (a conversation not on screen stays unread).
    shown: (conv, seq) => session.markRead(conv, seq),
    switchTo: (target) => (queue = queue.then(() => switchTo(target).catch(problem))),
    async older(target, before, limit) {
      const local = session.localHistory(await convOf(target), limit, before);
      if (local.length >= limit) return local;
      const from = local[0]?.seq ?? before;
      const server = target.kind === "group" ? await session.groupHistory(target.name, limit - local.length, from) : await session.history(target.name, limit - local.length, from);
      return [...server.filter((m) => m.seq < from), ...local];
    },
    search: (text) => session.search(text, 50),
    async conversations() {
      const unread = new Map<number, number>();
      // a message from before this device joined is not unread here: nothing on this device can show it
      for (const m of session.unread()) if (!beforeJoin(m)) unread.set(m.conv, (unread.get(m.conv) ?? 0) + 1);
      const [groups, contacts] = await Promise.all([session.groups().catch(() => []), session.who().catch(() => [])]);
      const dms = await Promise.all(
        contacts.map(async (c) => ({ target: { kind: "dm" as const, name: c.name }, conv: await session.conversationOf({ with: c.name }).catch(() => -1) })),
      );
      return [
        ...groups.map((g) => ({ target: { kind: "group" as const, name: g.name }, conv: g.conv, unread: Math.max(g.unread, unread.get(g.conv) ?? 0) })),
        ...dms.filter((d) => d.conv >= 0).map((d) => ({ ...d, unread: unread.get(d.conv) ?? 0 })),
      ];
    },
    receipts: (conv) => session.receipts(conv),
    connection: () => ({ connected: session.connected, server: session.serverAddress, pending: session.pendingSends, ...(session.connected || retryAt === undefined ? {} : { retryAt }) }),
    keyChanged: (user) => session.heldFrom(user) > 0,
    quit: () => finish(),
  };
  view.event("status", { text: `logged in as ${options.user}` }, `* logged in as ${options.user}; /help for commands`);
  view.open(actions);
  const waiting = early;
  early = undefined;
  for (const m of waiting) deliver(m);

  await finished;
  // Whatever was typed before the end is sent, and what arrived is saved, before we leave;
  // what cannot be sent now stays in the outbox for the next start.
  await queue;
  for (let grace = Date.now() + 2_000; inFlight.size > 0 && (session.connected || Date.now() < grace); ) await Bun.sleep(20);
  await downloads;
  await session.close();
}
