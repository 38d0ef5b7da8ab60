/**
 * A client session: what a user does over a Connection. Every message is
 * sealed here and opened here (the server sees only envelopes), checked
 * against pinned keys before it is shown, or held while a contact's key
 * change waits to be trusted; and groups and files ride on the same path.
 */
import { randomUUID } from "node:crypto";
import type { PublicIdentity } from "../crypto/keys";
import { safetyNumber } from "../crypto/safety";
import { backoffDelay } from "../balancer/backoff";
import { ChatError, isTemporary } from "../protocol/errors";
import type { WireMessage } from "../protocol/messages";
import { changePassword } from "./account";
import { bytesOf, Connection, type ConnectionOptions, type SendResult } from "./connection";
import type { Content, FileMeta } from "./content";
import { dmLabel, E2E, groupLabel, labelOf } from "./e2e";
import { download, upload, type Target } from "./files";
import { Pins } from "./keystore";
import { bytes, progressBar, type Progress } from "./progress";
import { describeSystem } from "./system";
import { safeName } from "./safe-name";

const CONTROL = /[\u0000-\u001f\u007f-\u009f]/g;

export type { SendResult };

export interface SessionOptions extends ConnectionOptions {
  /** A message from someone else, in order, once. */
  onMessage?(message: Received): void;
}

/** A message as its reader sees it: what it says, and whether it could be verified. */
export interface Received extends WireMessage {
  text: string;
  /** For a file message: what the file is, and the key to fetch and open it. */
  file?: FileMeta;
  verified: boolean;
  /** Why it could not be verified or read; the text is then not shown. */
  problem?: string;
  code?: string;
}

export interface GroupInfo {
  name: string;
  conv: number;
  role: string;
  members: number;
  unread: number;
}

export interface MemberInfo {
  name: string;
  role: "admin" | "member";
  since: number;
}

export class ChatSession extends Connection {
  private readonly e2e: E2E;
  private readonly groupTails = new Map<string, Promise<unknown>>();
  /** Each group's membership as last asked, to seal for without a round trip per message. */
  private readonly membership = new Map<string, { epoch: number; members: MemberInfo[] }>();
  private readonly held = new Map<string, WireMessage[]>();
  /** Conversations where a message could not be read before the session closed: nothing after it is shown. */
  private readonly abandoned = new Set<number>();

  private constructor(protected override readonly options: SessionOptions) {
    super(options);
    this.e2e = new E2E(options.user, () => this.keys(), new Pins(options.user, this.persist), (names) => this.fetchKeys(names));
    this.e2e.restoreSeen(this.state.seen);
  }

  /** Connects, logs in and replays everything waiting; throws if the first login is refused. */
  static async open(options: SessionOptions): Promise<ChatSession> {
    const session = new ChatSession(options);
    await session.firstConnect();
    await session.idle();
    return session;
  }

  /** Encrypts to the recipient's pinned key; resolves once the server has stored the message. */
  sendText(to: string, text: string): Promise<SendResult> {
    const cmid = randomUUID();
    return this.inOrder(this.e2e.seal([to], dmLabel(this.user, to), cmid, { kind: "text", text }).then((body) => ({ to, cmid, body })));
  }

  /**
   * Encrypts to every current member of the group. If the membership changes
   * before the commit, the server refuses, and the message is sealed again for
   * the new members: it never reaches someone it was not sealed for.
   */
  sendGroupText(group: string, text: string): Promise<SendResult> {
    return this.sendGroupContent(group, { kind: "text", text }, randomUUID());
  }

  /**
   * One group send at a time per group: a message re-sealed after a membership
   * change must not be overtaken by the ones sent after it.
   */
  private sendGroupContent(group: string, content: Content, cmid: string): Promise<SendResult> {
    const result = (this.groupTails.get(group) ?? Promise.resolve()).then(() => this.sealForGroup(group, content, cmid));
    const tail = result.catch(() => {});
    this.groupTails.set(group, tail);
    void tail.then(() => {
      if (this.groupTails.get(group) === tail) this.groupTails.delete(group);
    });
    return result;
  }

  private async sealForGroup(group: string, content: Content, cmid: string): Promise<SendResult> {
    const sealed = async () => {
      // The membership as last seen: if it changed since, the server says so (E_STALE_MEMBERS) and it is asked again.
      const { epoch, members } = this.membership.get(group) ?? (await this.groupMembers(group));
      const body = await this.e2e.seal(
        members.map((m) => m.name),
        groupLabel(group),
        cmid,
        content,
      );
      return { group, epoch, cmid, body };
    };
    for (let attempt = 0; ; attempt++) {
      try {
        return await this.inOrder(sealed());
      } catch (error) {
        if (!(error instanceof ChatError) || error.code !== "E_STALE_MEMBERS" || attempt >= 5) throw error;
        this.membership.delete(group);
      }
    }
  }

  /**
   * Uploads a file in encrypted chunks, then sends the message that carries its
   * key. Run again after a break, it resumes from the chunks the server has.
   */
  async sendFile(target: Target, path: string, progress: Progress = progressBar(`sending ${path}`, 0, false)): Promise<SendResult & { file: FileMeta }> {
    const sent = await upload(this, path, target, progress);
    const content = { kind: "file" as const, file: sent.meta };
    let result: SendResult;
    if ("to" in target) {
      const cmid = sent.cmid;
      result = await this.inOrder(this.e2e.seal([target.to], dmLabel(this.user, target.to), cmid, content).then((body) => ({ to: target.to, cmid, body })));
    } else {
      result = await this.sendGroupContent(target.group, content, sent.cmid);
    }
    sent.done();
    return { ...result, file: sent.meta };
  }

  /** Fetches a received file into downloads/<sender>/, checked end to end; returns where it was saved. */
  fetchFile(file: FileMeta, from: string, progress?: Progress): Promise<string> {
    return download(this, file, from, progress ?? progressBar(`receiving ${file.name}`, file.size, false));
  }

  /** Finds the message that announced a file (it holds the key) and fetches the file again. */
  async fetchFileById(fileId: string, progress?: (file: FileMeta) => Progress): Promise<{ path: string; file: FileMeta; from: string }> {
    const info = await this.call("file.info", { file: fileId });
    for (let after = (info.after as number) ?? 0; ; ) {
      const page = (await this.call("fetch", { conv: info.conv, after, limit: 500 })).messages as WireMessage[];
      for (const m of page) {
        const received = await this.read(bytesOf(m));
        if (received.file?.id === fileId) {
          return { path: await this.fetchFile(received.file, received.from, progress?.(received.file)), file: received.file, from: received.from };
        }
      }
      if (page.length === 0) throw new ChatError("E_NO_SUCH_FILE", "No message you can read announces that file");
      after = page[page.length - 1]!.seq;
    }
  }

  async createGroup(name: string, members: string[]): Promise<void> {
    await this.request("group.create", { group: name, members: members.length > 0 ? members : undefined });
  }

  async changeGroup(op: "add" | "remove" | "promote" | "leave", group: string, users: string[] = []): Promise<void> {
    if (op === "promote") await this.request("group.promote", { group, user: users[0] });
    else if (op === "leave") await this.request("group.leave", { group });
    else await this.request(`group.${op}`, { group, users });
  }

  async groupMembers(group: string): Promise<{ epoch: number; members: MemberInfo[] }> {
    const reply = await this.request("group.members", { group });
    const membership = { epoch: reply.epoch as number, members: reply.members as MemberInfo[] };
    this.membership.set(group, membership);
    return membership;
  }

  async groups(): Promise<GroupInfo[]> {
    return (await this.request("groups")).groups as GroupInfo[];
  }

  async groupHistory(group: string, limit = 50): Promise<Received[]> {
    const reply = await this.request("history", { group, limit });
    const out: Received[] = [];
    for (const m of reply.messages as WireMessage[]) out.push(await this.read(bytesOf(m)));
    return out;
  }

  async history(other: string, limit = 50): Promise<Received[]> {
    const reply = await this.request("history", { with: other, limit });
    const out: Received[] = [];
    for (const m of reply.messages as WireMessage[]) out.push(await this.read(bytesOf(m)));
    return out;
  }

  async who(): Promise<string[]> {
    return (await this.request("who")).users as string[];
  }

  /**
   * The safety number of this user and a contact. While a key change waits to
   * be trusted, it is computed from the key now offered: comparing it is how
   * the user finds out whether that key is really the contact's.
   */
  async safetyNumber(other: string): Promise<string> {
    const mine = await this.e2e.keyOf(this.user);
    const theirs = await this.e2e.keyOf(other, true);
    const key = theirs.changed ? this.e2e.offered(other)! : theirs.key;
    return safetyNumber({ name: this.user, ...mine.key }, { name: other, ...key });
  }

  /** Accepts a contact's new identity key and shows what was held back because of it. */
  async trust(other: string): Promise<number> {
    await this.e2e.trust(other);
    const held = this.held.get(other) ?? [];
    this.held.delete(other);
    for (const m of held) this.frozen.delete(m.conv);
    for (const m of held) await this.deliver(m);
    for (const conv of new Set(held.map((m) => m.conv))) this.shown(conv, this.sequencer.positions()[conv] ?? 0);
    return held.length;
  }

  heldFrom(other: string): number {
    return this.held.get(other)?.length ?? 0;
  }

  async changePassword(oldPassword: string, newPassword: string): Promise<void> {
    if (!this.link) throw new ChatError("E_CLOSED");
    await changePassword(this.link, this.user, oldPassword, newPassword, this.keys());
    this.state.token = undefined;
    this.save();
  }

  private async fetchKeys(names: string[]): Promise<Record<string, PublicIdentity>> {
    return (await this.request("keys", { users: names })).keys as Record<string, PublicIdentity>;
  }

  /** One message in order: verify it, then show it, hold it, or (our own) just count it. */
  protected async deliver(message: WireMessage): Promise<void> {
    if (message.kind === "system" && message.group !== undefined) this.membership.delete(message.group);
    if (message.from === this.user && message.kind !== "system") {
      this.shown(message.conv, message.seq);
      return;
    }
    const received = this.abandoned.has(message.conv) ? undefined : await this.readPatiently(message);
    if (!received) {
      // Closing before the keys came: not shown, so not acknowledged, and
      // nothing after it in this conversation is either; it comes back at the next login.
      this.abandoned.add(message.conv);
      if (!this.frozen.has(message.conv)) this.frozen.set(message.conv, message.seq - 1);
      return;
    }
    if (received.code === "E_KEY_CHANGED") {
      const list = this.held.get(message.from) ?? [];
      list.push(message);
      this.held.set(message.from, list);
      if (!this.frozen.has(message.conv)) this.frozen.set(message.conv, message.seq - 1);
      if (list.length === 1) this.options.onStatus?.(keyChangedWarning(message.from));
      return;
    }
    this.shown(message.conv, message.seq);
    this.options.onMessage?.(received);
  }

  /**
   * Reads a message, waiting out temporary failures (the server or its
   * database away while the sender's keys are fetched): only a verdict on the
   * message itself is final. Undefined when the session closes first.
   */
  private async readPatiently(message: WireMessage): Promise<Received | undefined> {
    for (let attempt = 0; ; attempt++) {
      try {
        return await this.read(message);
      } catch (error) {
        const code = error instanceof ChatError ? error.code : undefined;
        if (!code || !isTemporary(code)) return { ...message, text: "", verified: false, problem: (error as Error).message, code: code ?? "E_INTERNAL" };
        if (this.closing || this.ended) return undefined;
        if (attempt === 0) this.options.onStatus?.(`a message from ${message.from} waits for their keys: ${(error as Error).message}`);
        await Bun.sleep(backoffDelay(attempt, 100, 2_000));
      }
    }
  }

  private async read(message: WireMessage): Promise<Received> {
    // Membership changes are recorded by the server, not signed by a member: shown as the server's word.
    if (message.kind === "system") return { ...message, text: describeSystem(message, this.user), verified: false, problem: "recorded by the server, not signed by a member" };
    const revealed = await this.e2e.reveal(message, labelOf(message));
    if (revealed.status === "ok") {
      const content = revealed.content;
      if (content.kind === "text") return { ...message, text: content.text, verified: true };
      return { ...message, text: describeFile(content.file), file: content.file, verified: true };
    }
    if (revealed.status === "held") return { ...message, text: "", verified: false, code: "E_KEY_CHANGED", problem: keyChangedWarning(message.from) };
    return { ...message, text: "", verified: false, code: revealed.code, problem: revealed.reason };
  }

  protected override save(): void {
    if (this.persist) this.state.seen = this.e2e.seenList().slice(-5000);
    super.save();
  }
}

export function describeFile(file: FileMeta): string {
  const size = file.width !== undefined ? `, ${file.width}×${file.height}` : "";
  // Name and type come from the sender: nothing in them may drive the terminal or fake a line.
  return `[file] ${safeName(file.name)} (${bytes(file.size)}, ${file.type.replace(CONTROL, "")}${size})`;
}

export function keyChangedWarning(user: string): string {
  return (
    `WARNING: the identity key of ${user} has changed. Their messages are held and nothing is sent to them ` +
    `until you accept the new key. Compare safety numbers with them in person or on a call (/verify ${user}, ` +
    `or \`chatterbox verify --with ${user}\`), then /trust ${user}.`
  );
}

