/**
 * What the session uses of MLS: publish this device at login, seal a direct
 * message as one MLS ciphertext when the conversation is on MLS (undefined
 * otherwise, and the session seals an envelope), and read an MLS body. MLS
 * keys are used once, so a message read again later (history, a file's
 * announcement) comes from this device's own copy in store.db, not from the
 * ciphertext. CHATTERBOX_MLS=off keeps a device on envelopes (for comparison
 * runs; it still reads MLS messages addressed to it), and so does a device
 * whose store is in memory only, unless CHATTERBOX_MLS=on.
 */
import type { IdentityKeys, PublicIdentity } from "../../crypto/keys";
import type { WireMessage } from "../../protocol/messages";
import { decodeContent } from "../content";
import type { Opened } from "../codec";
import { dmLabel, labelOf } from "../e2e";
import type { StoredMessage } from "../store";
import { MlsAccount, type Call } from "./account";
import { MlsConversations, type Place } from "./conversations";
import { Frontier } from "./frontier";
import { HistoryBackup } from "./history-backup";
import { SecrecyWatch, type SecrecyNotice } from "./secrecy";
import { MlsLocal, type KeyValues } from "./local";
import type { Database } from "bun:sqlite";

import { isCommit } from "./body";

export { isMlsBody } from "./body";

/** A member added this recently (by the server's clock) may still be waiting for the admin's commit... */
const RECENT_ADD_MS = 10_000;
/** ...which a sender waits for this long at most before it encrypts. */
const WAIT_FOR_ADD_MS = 3_000;

/** How long a send refused as from an old epoch waits for this device to take in the newer commits. */
const CATCH_UP_MS = 10_000;

/** What reading an MLS body gives (the codec's Opened). */
export type MlsRead = Opened;

export interface MlsClientDeps {
  user: string;
  store: KeyValues & { db: Database; device(): { id: string }; history(conv: number, before: number, limit: number): StoredMessage[]; keep(m: StoredMessage): void };
  keys: () => IdentityKeys;
  keyOf(name: string): Promise<{ key: PublicIdentity; changed: boolean }>;
  call: Call;
  /** A group chat's members as the server lists them (the session's cached copy). */
  groupMembers(group: string): Promise<{ name: string; role: string; since?: number }[]>;
  /**
   * Whether the device keeps its store on disk. One that does not (tests,
   * scripted one-off sessions) stays on envelopes unless CHATTERBOX_MLS=on:
   * its MLS groups, signing key and key packages would live in its in-memory
   * store for the process's life only, so each start would be a new MLS
   * device under the same device id (a new key in the account's list, a
   * removal and an add in every conversation it is in), reading nothing sent
   * before it started, and two such processes of one device would each
   * publish their own key and push the other out.
   */
  persistent: boolean;
  /** A conversation's messages went as envelopes (not forward secret), and why; or moved to MLS after that. */
  onSecrecy?(notice: SecrecyNotice): void;
}

export class MlsClient {
  readonly account: MlsAccount;
  readonly conversations: MlsConversations;
  readonly backup: HistoryBackup;
  private readonly frontier: Frontier;
  private readonly secrecy: SecrecyWatch;
  private readonly enabled: boolean;
  /** Sends the server refused as from an old epoch (E_MLS_STALE_EPOCH) and that were sealed again: for tests and the bench. */
  staleRetries = 0;

  constructor(private readonly deps: MlsClientDeps) {
    const local = new MlsLocal(deps.store.db, deps.store);
    this.account = new MlsAccount({ user: deps.user, deviceId: () => deps.store.device().id, keys: deps.keys, keyOf: (n) => deps.keyOf(n), call: deps.call, local });
    this.frontier = new Frontier((conv) => {
      const row = deps.store.db.query("select received from convs where conv = ?").get(conv) as { received: number } | null;
      return row?.received ?? 0;
    });
    this.conversations = new MlsConversations(deps.user, this.account, local, deps.call, this.frontier, (place, doubt) =>
      deps.onSecrecy?.({ target: place.target, forwardSecret: true, doubt }),
    );
    this.secrecy = new SecrecyWatch((n) => deps.onSecrecy?.(n));
    // A store in memory holds MLS groups as well as one on disk (MlsLocal over the same SQLite, ":memory:"), but
    // only for the process's life (see `persistent`): such a device speaks MLS only when asked to.
    this.enabled = process.env.CHATTERBOX_MLS === "on" || (deps.persistent && process.env.CHATTERBOX_MLS !== "off");
    this.backup = new HistoryBackup({ user: deps.user, kv: deps.store, call: deps.call, keep: (m) => deps.store.keep(m) });
  }

  loggedIn(): void {
    if (!this.enabled) return;
    void this.account.loggedIn();
    // a new device reads the opt-in history backup, if the account has one, at its first login
    void this.backup.restore().catch(() => {});
  }

  passwordLogin(wrapKey: Uint8Array): void {
    this.backup.passwordLogin(wrapKey);
  }

  /** The session took in (or stored) the message at `seq` of `conv`: how far this device is in each conversation. */
  passed(conv: number, seq: number): void {
    this.frontier.passed(conv, seq);
  }

  /** A message this device kept: into the history backup, if it is on. */
  kept(m: StoredMessage): void {
    this.backup.kept(m);
  }

  /** What leaving waits for: this login's publishing, and the history backup's last batch. */
  settled(): Promise<unknown> {
    return Promise.all([this.account.ready(), this.backup.flush().catch(() => {})]);
  }

  /** Resolves when this login's publishing (device list, key packages) is done or has failed. */
  published(): Promise<void> {
    return this.account.ready();
  }

  /** A device of the account was revoked: publish the list without it. */
  async devicesChanged(): Promise<void> {
    if (this.enabled) await this.account.loggedIn();
  }

  /** A direct message's body, or undefined for an envelope. */
  async sealDm(to: string, cmid: string, content: Uint8Array): Promise<Uint8Array | undefined> {
    const place = this.dm(to);
    if (!this.enabled && !this.conversations.has(place.label)) return this.sealed(place, undefined);
    return this.sealed(place, await this.conversations.seal(place, cmid, content));
  }

  /** Tells the view whether the conversation is forward secret, when that is news; returns the body. */
  private sealed(place: Place, body: Uint8Array | undefined): Uint8Array | undefined {
    const reason = body
      ? undefined
      : !this.enabled && !this.deps.persistent
        ? "this device keeps nothing on disk (persist: false), so it stays on envelopes (CHATTERBOX_MLS=on moves it to MLS, for this process's life)"
        : process.env.CHATTERBOX_MLS === "off"
          ? "MLS is off on this device (CHATTERBOX_MLS=off)"
          : (this.conversations.whyNot(place.label) ?? "it is not on MLS yet");
    this.secrecy.sealed(place.label, place.target, reason);
    return body;
  }

  /** A group message's body, or undefined for an envelope (the group is not on MLS yet, and this user is no admin to move it). */
  async sealGroup(group: string, cmid: string, content: Uint8Array): Promise<Uint8Array | undefined> {
    const place = await this.group(group);
    if (!this.enabled && !this.conversations.has(place.label)) return this.sealed(place, undefined);
    // Someone added a moment ago: the admin's commit that gives them the keys is on its way, and a message
    // made before this device takes it in would be from an epoch they never had. Wait for it a little.
    const members = await this.deps.groupMembers(group);
    const recent = members.filter((m) => m.since !== undefined && Date.now() - m.since < RECENT_ADD_MS).map((m) => m.name);
    if (recent.length > 0) await this.conversations.awaitLeaves(place.label, recent, WAIT_FOR_ADD_MS);
    return this.sealed(place, await this.conversations.seal(place, cmid, content));
  }

  /** After the server accepted a new group: its creator's device makes the MLS group with every member in it. */
  async groupCreated(group: string): Promise<void> {
    if (!this.enabled) return;
    await this.conversations.ensure(await this.group(group));
  }

  /** After the server accepted an admin's add: this device commits the new members' devices. Returns who could not be added. */
  async groupAdded(group: string, users: string[]): Promise<string[]> {
    if (!this.enabled) return [];
    return this.conversations.addUsers(await this.group(group), users);
  }

  /** After the server accepted a promotion or a removal: this admin's device commits it into the group's own admin list and leaves. False: this device is no admin there. */
  async groupRolesChanged(group: string, change: { promote?: string; remove?: string[] }): Promise<boolean> {
    if (!this.enabled && !this.conversations.has(`group:${group}`)) return true;
    return this.conversations.changeRoles(await this.group(group), change);
  }

  /**
   * The server refused a message as from an MLS epoch the conversation has left
   * (E_MLS_STALE_EPOCH): waits until this device took in the newer commits, which
   * the server delivers in order, so that the message can be sealed again on the
   * new epoch. A commit this device refused (a forgery, shown where it came)
   * never lets it get there: false, and the send fails for good.
   */
  async caughtUp(target: { to: string } | { group: string }): Promise<boolean> {
    this.staleRetries++;
    const place = "group" in target ? await this.group(target.group) : this.dm(target.to);
    const server = async () => {
      const r = await this.deps.call("mls.epoch", target);
      return { epoch: r.epoch as number, ...(r.groupId instanceof Uint8Array ? { groupId: new Uint8Array(r.groupId) } : {}) };
    };
    return this.conversations.reachEpoch(place.label, server, CATCH_UP_MS);
  }

  /** Members the server lists as admins whom the group's own (MLS) admin list does not name. */
  unconfirmedAdmins(group: string, admins: string[]): Promise<string[]> {
    return this.conversations.unconfirmedAdmins(`group:${group}`, admins);
  }

  /** Members the server lists who were never added to the group's MLS group by an admin's commit. */
  unconfirmed(group: string, members: string[]): Promise<string[]> {
    return this.conversations.unconfirmed(`group:${group}`, members);
  }

  /** An MLS body: taken in if it comes in the conversation's order (`inOrder`), else this device's copy. */
  async read(message: WireMessage, inOrder: boolean): Promise<MlsRead> {
    if (!inOrder) return isCommit(message.body) ? { status: "control" } : this.stored(message);
    const place = message.group !== undefined ? await this.group(message.group) : this.dm(message.from === this.deps.user ? message.to : message.from);
    const opened = await this.conversations.open(place, message);
    if (opened.status === "ok") return { status: "ok", content: decodeContent(opened.content) };
    if (opened.status === "local") {
      const kept = this.stored(message);
      return kept.status === "stored" ? kept : { status: "control" };
    }
    return opened;
  }

  private stored(message: WireMessage): MlsRead {
    const [kept] = this.deps.store.history(message.conv, message.seq + 1, 1);
    if (kept && kept.seq === message.seq) return { status: "stored", stored: kept };
    return this.conversations.unreadable(labelOf(message), message.seq);
  }

  private async group(name: string): Promise<Place> {
    const members = await this.deps.groupMembers(name);
    const me = members.find((m) => m.name === this.deps.user);
    return {
      label: `group:${name}`,
      users: members.map((m) => m.name),
      target: { group: name },
      admin: me?.role === "admin",
      admins: members.filter((m) => m.role === "admin").map((m) => m.name),
    };
  }

  private dm(other: string): Place {
    const label = dmLabel(this.deps.user, other);
    return { label, users: [...new Set([this.deps.user, other])].sort(), target: { to: other } };
  }
}

