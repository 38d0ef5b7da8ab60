/**
 * Conversations over MLS, from this device: the group of each conversation
 * (kept in store.db), sealing a plaintext as one MLS ciphertext, and taking in
 * what the server delivers, in its order: commits (with the welcome of the
 * devices they add), and application messages. A conversation is moved to MLS
 * by its first sender, once every device of every member has published key
 * packages and a device list; until then the session uses envelopes.
 */
import { decodeKeyPackage, DeviceGroup, MlsError, type GroupRoles, type Received as MlsReceived } from "../../crypto/mls/index.ts";
import { ChatError } from "../../protocol/errors";
import type { WireMessage } from "../../protocol/messages";
import type { MlsAccount, Call } from "./account";
import { applicationBody, applicationPlaintext, commitBody, parseApplicationPlaintext, parseMlsBody } from "./body";
import type { MlsLocal } from "./local";
import { generationOf, groupIdOf, joinFromWelcome } from "./join";
import { equalBytes } from "../../crypto/bytes.ts";
import { clearHeader } from "../../crypto/mls/wire.ts";
import { planLeaves } from "./reconcile";
import { GroupSlots, type Held } from "./slots";
import type { Frontier } from "./frontier";
import { unreadable, type Unreadable } from "./unreadable";

/** A leaf update (a commit with no proposals) after this many sends from this device, or this long: post-compromise security. */
export const UPDATE_EVERY_MESSAGES = 100;
export const UPDATE_EVERY_MS = 24 * 3600_000;
/** After a conversation was found not ready for MLS, how long before asking again. */
const NOT_READY_MS = 30_000;

/** What became of a commit this device tried to make. */
type Committed = "stored" | "stale" | "behind";

export type Opened =
  | { status: "ok"; content: Uint8Array; device: string }
  | { status: "failed"; code: string; reason: string }
  /** A commit (or a welcome for other devices): nothing to show. */
  | { status: "control" }
  /** Not readable again (MLS keys are used once): this device's own copy, if it kept one. */
  | { status: "local" }
  /** A commit to show as a line: a reset that left devices out, said by this device from the groups it holds. */
  | { status: "notice"; text: string };

/** Who a conversation is with, and how to address the server about it. */
export interface Place {
  label: string;
  /** Everyone whose devices may be in the group (the user included): for a group chat, the members the server lists. */
  users: string[];
  target: { to: string } | { group: string };
  /**
   * For a group chat: whether this user is an admin (the server's word). Only
   * an admin's device makes the group; and a user enters a group chat's MLS
   * group only by an admin's explicit add (addUsers), never because the
   * server lists them. Once the group is on MLS, what counts is the admin
   * list in the group itself (crypto/mls/roles.ts), which every member checks
   * each commit against.
   */
  admin?: boolean;
  /** For a group chat: its admins as the server lists them, which the MLS group takes as its first admin list when it is made. */
  admins?: string[];
}

export class MlsConversations {
  private readonly notReady = new Map<string, number>();
  /** Why each conversation is not on MLS, as last found: what the warning says. */
  private readonly why = new Map<string, string>();
  /** Devices found without a usable key package ("user/device"), until when. */
  private readonly noPackage = new Map<string, number>();

  private readonly slots: GroupSlots;
  /** What this device's own resets left out, by "label#seq", said when the reset comes back in the conversation's order. */
  private readonly resetNotes = new Map<string, string>();

  constructor(
    private readonly me: string,
    private readonly account: MlsAccount,
    private readonly local: MlsLocal,
    private readonly call: Call,
    private readonly frontier: Frontier,
    /** This device joined the conversation's group by a welcome whose add it does not trust (shown as a warning). */
    private readonly onDoubt?: (place: Place, why: string) => void,
  ) {
    this.slots = new GroupSlots(local, account.book);
  }

  /** Whether this device holds an MLS group for the conversation. */
  has(label: string): boolean {
    return this.slots.peek(label) !== undefined;
  }

  /**
   * The body to send for a message: one MLS ciphertext, or undefined when the
   * conversation is not (yet) on MLS and the caller seals an envelope.
   */
  seal(place: Place, cmid: string, content: Uint8Array): Promise<Uint8Array | undefined> {
    return this.slots.serial(place.label, () => this.sealNow(place, cmid, content));
  }

  private async sealNow(place: Place, cmid: string, content: Uint8Array): Promise<Uint8Array | undefined> {
    let held = await this.slots.loaded(place.label);
    if (!held) {
      if ((this.notReady.get(place.label) ?? 0) > Date.now()) return undefined;
      if ("group" in place.target && !place.admin) {
        this.why.set(place.label, "the group is not on MLS yet: an admin's device moves it, at the admin's next message");
        await this.notOnMls(place);
        this.notReady.set(place.label, Date.now() + NOT_READY_MS);
        return undefined;
      }
      held = await this.start(place);
      if (!held) {
        this.notReady.set(place.label, Date.now() + NOT_READY_MS);
        return undefined;
      }
    }
    if (held.group.removed) {
      this.why.set(place.label, "this device was removed from the conversation's MLS group");
      return undefined;
    }
    // the group is stopped (a commit no member could take in won its epoch): this device makes it again if it may
    if (this.local.stopped(place.label) !== undefined && this.mayReset(place, held)) held = (await this.resetNow(place, held)) ?? held;
    await this.account.refresh(place.users);
    await this.reconcile(place, held);
    if (held.sent >= UPDATE_EVERY_MESSAGES || Date.now() - held.since > UPDATE_EVERY_MS) await this.update(place, held);
    for (;;) {
      const ciphertext = await held.group.encrypt(applicationPlaintext(cmid, content));
      // Saved before it is sent: a crash must never let the same key and nonce encrypt a second message.
      held.sent++;
      if (this.slots.save(place.label, held, 0)) return applicationBody(ciphertext);
      // Another process of this device used the group meanwhile: take its state and encrypt again.
      held = await this.slots.loaded(place.label, true);
      if (!held) return undefined;
    }
  }

  /** Makes the conversation's MLS group now if it has none and may (a new group chat, by its creator's device). */
  ensure(place: Place): Promise<boolean> {
    return this.slots.serial(place.label, async () => (await this.slots.loaded(place.label)) !== undefined || (await this.start(place)) !== undefined);
  }

  /**
   * A member's device with no MLS group for a group chat: fine while the group
   * is not on MLS (an envelope goes); once it is, an envelope would reach
   * whoever the server lists, so this device waits to be added instead.
   */
  private async notOnMls(place: Place): Promise<undefined> {
    if (((await this.call("mls.epoch", place.target)).epoch as number) === 0) return undefined;
    throw new ChatError("E_NOT_MEMBER", "This device is not in the group's MLS group yet: an admin adds new members' devices, and a new device of a member is added by that member's other device or an admin's, at its next message");
  }

  /**
   * Adds users' devices to a group chat's MLS group: what an admin's device
   * does right after the server accepted the add. A user with a device that has
   * no key package is left out (returned), and shown as not added.
   */
  async addUsers(place: Place, users: string[]): Promise<string[]> {
    for (let attempt = 0; ; attempt++) {
      const tried = await this.slots.serial(place.label, () => this.addUsersNow(place, users));
      if (tried.stored === "stored") return tried.left;
      // Another commit of the epoch came first: it is taken in on the conversation's lane (so not waited for
      // inside it), then the add is made again on the new epoch.
      if (attempt >= 5) throw new MlsError("E_MLS_STALE_COMMIT", "The add lost its epoch five times in a row");
      await this.settle(place.label, tried.epoch, tried.stored);
    }
  }

  private async addUsersNow(place: Place, users: string[]): Promise<{ stored: Committed; left: string[]; epoch: bigint }> {
    const held = await this.slots.loaded(place.label);
    if (!held) return { stored: "stored", left: [], epoch: 0n };
    if (!held.group.isAdmin(this.me)) {
      // the commit that made this user an admin may still be on its way: wait for the server's epoch, then try again
      if (((await this.call("mls.epoch", place.target)).epoch as number) > Number(held.group.epoch)) return { stored: "stale", left: [], epoch: held.group.epoch };
      return { stored: "stored", left: users, epoch: held.group.epoch };
    }
    await this.account.refresh(users, true);
    const packages: Uint8Array[] = [];
    const left: string[] = [];
    for (const user of users) {
      const { claimed, usable, missing } = await this.claimListed(user);
      if (missing > 0 || usable.length === 0 || usable.length < claimed) left.push(user);
      else packages.push(...usable.map((p) => p.keyPackage));
    }
    const epoch = held.group.epoch;
    const stored = packages.length === 0 ? "stored" : await this.commitChange(place, held, packages, []);
    return { stored, left, epoch };
  }

  /**
   * An admin's device, right after the server accepted a promotion or a
   * removal: one commit that puts the group's own admin list (and leaves) in
   * step. False when this device is no admin in the group's own list (then
   * the server's word changes nothing for the other members).
   */
  async changeRoles(place: Place, change: { promote?: string; remove?: string[] }): Promise<boolean> {
    for (let attempt = 0; ; attempt++) {
      const tried = await this.slots.serial(place.label, async () => {
        const held = await this.slots.loaded(place.label);
        if (!held) return { done: "stored" as Committed, ok: true, epoch: 0n };
        const roles = held.group.roles;
        if (!held.group.isAdmin(this.me) || roles?.kind !== "admins") {
          if (((await this.call("mls.epoch", place.target)).epoch as number) > Number(held.group.epoch)) return { done: "stale" as Committed, ok: false, epoch: held.group.epoch };
          return { done: "stored" as Committed, ok: roles === undefined, epoch: held.group.epoch };
        }
        const gone = new Set(change.remove ?? []);
        const admins = [...new Set([...roles.admins, ...(change.promote ? [change.promote] : [])])].filter((u) => !gone.has(u));
        const leaves = held.group.members().filter((m) => gone.has(m.user)).map((m) => m.leaf);
        const same = admins.length === roles.admins.length && admins.every((u) => roles.admins.includes(u));
        if (same && leaves.length === 0) return { done: "stored" as Committed, ok: true, epoch: held.group.epoch };
        const epoch = held.group.epoch;
        return { done: await this.commitChange(place, held, [], leaves, same ? undefined : admins), ok: true, epoch };
      });
      if (tried.done === "stored") return tried.ok;
      if (attempt >= 5) throw new MlsError("E_MLS_STALE_COMMIT", "The change lost its epoch five times in a row");
      await this.settle(place.label, tried.epoch, tried.done);
    }
  }

  /** Why this device does not trust the group's membership (it was added by a non-admin's commit), if so. */
  joinDoubt(label: string): string | undefined {
    return this.local.joinDoubt(label);
  }

  /** Users the server lists as admins whom the group's own admin list does not name (none while it is not on MLS, or has no roles). */
  async unconfirmedAdmins(label: string, admins: string[]): Promise<string[]> {
    const roles = (await this.slots.loaded(label))?.group.roles;
    if (roles?.kind !== "admins") return [];
    // added by someone with no right to: the admin list came with that add, as untrusted as the rest
    if (this.local.joinDoubt(label)) return admins;
    return admins.filter((u) => !roles.admins.includes(u));
  }

  /**
   * Waits (outside the conversation's lane, which takes the commits in) until
   * this device's group is the server's (`server`, asked again every half
   * second: a reset may replace the group meanwhile) at its epoch at least,
   * or `ms` passed; whether it got there.
   */
  async reachEpoch(label: string, server: () => Promise<{ epoch: number; groupId?: Uint8Array }>, ms: number): Promise<boolean> {
    const deadline = Date.now() + ms;
    let want = await server();
    let asked = Date.now();
    for (;;) {
      const held = await this.slots.serial(label, () => this.slots.loaded(label));
      if (!held) return true;
      const sameGroup = want.groupId === undefined || equalBytes(held.group.groupId, want.groupId);
      if (sameGroup && held.group.epoch >= BigInt(want.epoch)) return true;
      if (Date.now() >= deadline) return false;
      await Bun.sleep(20);
      if (Date.now() - asked >= 500) {
        want = await server();
        asked = Date.now();
      }
    }
  }

  /**
   * Waits (up to 15 s) until a commit that was not stored may be made again:
   * for "stale", until this process's group for the label is past `epoch`; for
   * "behind", until it took in what was stored below its own last commit.
   */
  private async settle(label: string, epoch: bigint, why: Committed): Promise<void> {
    const deadline = Date.now() + 15_000;
    while (Date.now() < deadline) {
      const held = await this.slots.serial(label, () => this.slots.loaded(label));
      if (!held || held.group.epoch > epoch || (why === "behind" && !this.behind(label, held))) return;
      await Bun.sleep(20);
    }
  }

  /** Waits (outside the conversation's lane, which takes the commit in) until these users have leaves, or `ms` passed. */
  async awaitLeaves(label: string, users: string[], ms: number): Promise<void> {
    const deadline = Date.now() + ms;
    while ((await this.unconfirmed(label, users)).length > 0 && Date.now() < deadline) await Bun.sleep(20);
  }

  /** Users the server lists in the conversation who have no leaf in its MLS group (none while it is not on MLS). */
  async unconfirmed(label: string, users: string[]): Promise<string[]> {
    const held = await this.slots.loaded(label);
    if (!held) return [];
    // a doubted join: no one's leaf is an admin's word, except this user's own
    if (this.local.joinDoubt(label)) return users.filter((u) => u !== this.me);
    const inGroup = new Set(held.group.members().map((m) => m.user));
    return users.filter((u) => !inGroup.has(u));
  }

  /**
   * Makes the group's leaves match the members' signed device lists: adds a
   * listed device that is not in it (a new device, or one that lost its state
   * and has a new key), and removes a leaf its owner no longer lists (a revoked
   * device, or the old key of one that came back), in one commit. A device with
   * no key package to claim is asked for again a little later.
   */
  private async reconcile(place: Place, held: Held): Promise<void> {
    // nothing to do unless the epoch, the conversation's users or one of their lists changed since the last look
    const book = this.account.book;
    const stamp = `${held.group.epoch}|${place.users.map((u) => `${u}:${book.get(u)?.version ?? "-"}`).join(",")}`;
    if (held.checked === stamp && this.noPackage.size === 0) return;
    // who this device may add devices of (crypto/mls/roles.ts): in a DM either person's; in a group chat, as an admin
    // any member's with a leaf, else only its own account's; and nothing while it doubts its own join (a fork)
    const admin = held.group.isAdmin(this.me);
    const doubted = this.local.joinDoubt(place.label) !== undefined;
    // users this device's reset left out (no package then): added again like members with a leaf, while the server lists them
    const inGroup = new Set(held.group.members().map((m) => m.user));
    const before = this.local.leftOut(place.label);
    const leftOut = before.filter((u) => !inGroup.has(u) && place.users.includes(u));
    if (leftOut.length < before.length) this.local.setLeftOut(place.label, leftOut);
    const plan = planLeaves(held.group.members(), held.group.ownLeaf, place.users, (u) => book.get(u), {
      mayAdd: (user, hasLeaf) => "to" in place.target || (!doubted && (hasLeaf || (admin && leftOut.includes(user))) && (admin || user === this.me)),
      removeUsers: "group" in place.target && held.group.isAdmin(this.me),
      skip: (user, id) => (this.noPackage.get(`${user}/${id}`) ?? 0) > Date.now(),
    });
    const packages: Uint8Array[] = [];
    for (const [user, devices] of plan.add) {
      const claim = (await this.call("mls.keypackages.claim", { user, devices })) as { packages: { device: string; keyPackage: Uint8Array }[] };
      for (const id of devices) {
        const got = claim.packages.find((p) => p.device === id);
        const key = book.get(user)!.devices.find((d) => d.deviceId === id)!.mlsKey;
        // a package from the device's earlier key (before it lost its state) would add a leaf its owner no longer lists
        if (got && Buffer.from(decodeKeyPackage(new Uint8Array(got.keyPackage)).leafNode.signaturePublicKey).equals(Buffer.from(key))) packages.push(new Uint8Array(got.keyPackage));
        else this.noPackage.set(`${user}/${id}`, Date.now() + NOT_READY_MS);
      }
    }
    for (const [k, until] of this.noPackage) if (until <= Date.now()) this.noPackage.delete(k);
    // an admin's device also drops from the group's admin list whoever is no longer a member
    const roles = held.group.roles;
    const admins = roles?.kind === "admins" && held.group.isAdmin(this.me) ? roles.admins.filter((u) => place.users.includes(u)) : undefined;
    const pruned = admins !== undefined && roles?.kind === "admins" && admins.length < roles.admins.length ? admins : undefined;
    if (packages.length > 0 || plan.remove.length > 0 || pruned) await this.commitChange(place, held, packages, plan.remove, pruned);
    else held.checked = stamp;
  }

  /**
   * "stale" when another commit of the epoch was stored first
   * (E_MLS_STALE_COMMIT): it is taken in, in order, and the caller may try
   * again; "behind" when nothing was sent, since this device has not yet taken
   * in what was stored below its own last commit.
   */
  private async commitChange(place: Place, held: Held, packages: Uint8Array[], remove: number[], admins?: string[]): Promise<Committed> {
    if (this.behind(place.label, held)) return "behind";
    const epoch = held.group.epoch;
    const out = await held.group.change(packages, remove, admins);
    try {
      const r = await this.call("mls.commit", { ...place.target, cmid: crypto.randomUUID(), epoch: Number(epoch), body: commitBody(out.commit, out.welcome) });
      await held.group.receive(out.commit);
      this.ownCommitStored(place.label, held, r.conv as number, r.seq as number);
      return "stored";
    } catch (error) {
      if (!(error instanceof ChatError) || error.code !== "E_MLS_STALE_COMMIT") throw error;
      return "stale";
    }
  }

  /**
   * Whether messages stored before this device's own last commit are still on
   * their way to it. They were sent on the epoch that commit ended, whose keys
   * the group keeps for one epoch more: another commit now would drop them
   * before those messages are read.
   */
  private behind(_label: string, held: Held): boolean {
    return held.ownAt !== undefined && !this.frontier.reached(held.ownAt.conv, held.ownAt.seq - 1);
  }

  /**
   * The position to save with this device's own commit, stored at `seq`: the
   * messages just before it may not have been delivered to this device yet (they
   * are taken in after it, on the last epoch's keys), so the saved position says
   * "taken in up to here" only when nothing is missing below it.
   */
  private ownCommitStored(label: string, held: Held, conv: number, seq: number): void {
    const taken = this.slots.seq(label);
    held.ownAt = { conv, seq };
    this.frontier.passed(conv, seq);
    this.slots.saveOver(label, held, taken === seq - 1 ? seq : taken);
  }

  /** A commit with a fresh leaf; losing the epoch to another commit is fine, the next message tries again. */
  private async update(place: Place, held: Held): Promise<void> {
    if (this.behind(place.label, held)) return;
    const epoch = held.group.epoch;
    const out = await held.group.update();
    try {
      const r = await this.call("mls.commit", { ...place.target, cmid: crypto.randomUUID(), epoch: Number(epoch), body: commitBody(out.commit) });
      await held.group.receive(out.commit);
      held.sent = 0;
      held.since = Date.now();
      this.ownCommitStored(place.label, held, r.conv as number, r.seq as number);
    } catch (error) {
      if (!(error instanceof ChatError) || error.code !== "E_MLS_STALE_COMMIT") throw error;
    }
  }

  /**
   * Makes the conversation's group: claims a key package for every device of
   * every member (this device's own aside), adds them, and sends the commit
   * with its welcome. If another device's commit for the same epoch came
   * first, undefined: this message goes as an envelope, and the winner's
   * welcome, taken in in the conversation's order, brings this device in.
   */
  private async start(place: Place): Promise<Held | undefined> {
    await this.account.ready();
    const not = (why: string): undefined => {
      this.why.set(place.label, why);
      return undefined;
    };
    // The group exists already and this device is not in it: a member's device adds it (never a second group).
    const server = await this.call("mls.epoch", place.target);
    if ((server.epoch as number) > 0) return not("its MLS group exists, and this device is not in it yet (a member's next message adds it)");
    if (!(await this.account.refresh(place.users, true))) {
      const unlisted = place.users.filter((u) => !this.account.book.get(u));
      return not(
        unlisted.length > 0
          ? `${unlisted.join(", ")} ${unlisted.length === 1 ? "has" : "have"} published no MLS device list (no device of theirs runs a client with MLS yet)`
          : "the identity key of someone in it changed: compare safety numbers with /verify, then /trust them",
      );
    }
    const packages: Uint8Array[] = [];
    for (const user of place.users) {
      const claim = (await this.call("mls.keypackages.claim", { user, complete: true })) as { packages: { device: string; keyPackage: Uint8Array }[]; missing: string[] };
      const mine = this.account.device.deviceId;
      const missing = claim.missing.filter((d) => user !== this.me || d !== mine);
      if (missing.length > 0) return not(`${user}'s device${missing.length === 1 ? "" : "s"} ${missing.join(", ")} ${missing.length === 1 ? "has" : "have"} no MLS key packages`);
      // someone who never logged in from a device has none to add: they could not read anything
      if (user !== this.me && claim.packages.length === 0) return not(`${user} has no device with MLS key packages`);
      for (const p of claim.packages) if (!(user === this.me && p.device === mine)) packages.push(new Uint8Array(p.keyPackage));
      // every claimed device must be on its owner's signed list: one not yet listed keeps the conversation on envelopes
      const unlisted = claim.packages.find((p) => !this.account.book.get(user)?.devices.some((d) => d.deviceId === p.device));
      if (unlisted) return not(`${user}'s device ${unlisted.device} is not on their signed device list yet`);
    }
    // who may change the membership from now on is the group's own word: for a group chat, its admins as listed now
    // and the creator's identity signs that first list, for this group and conversation: what a joiner checks it against
    const groupId = groupIdOf(place.label);
    const admins = place.admins ?? [this.me];
    const roles: GroupRoles =
      "group" in place.target ? { kind: "admins", admins, origin: this.account.origin({ groupId, label: place.label, conv: server.conv as number }, admins) } : { kind: "peers" };
    const group = await DeviceGroup.create(groupId, this.account.device, this.account.book, roles);
    let out;
    try {
      out = await group.add(packages);
    } catch (error) {
      if (error instanceof MlsError) return not(`a key package was refused: ${error.message}`);
      throw error;
    }
    try {
      const r = await this.call("mls.commit", { ...place.target, cmid: crypto.randomUUID(), epoch: 0, body: commitBody(out.commit, out.welcome) });
      await group.receive(out.commit);
      const held: Held = { group, version: 0, sent: 0, since: Date.now() };
      if (!this.slots.save(place.label, held, r.seq as number)) return this.slots.loaded(place.label, true);
      return held;
    } catch (error) {
      // Another device made the group first: its welcome reaches this device in the conversation's order
      // (not waited for here, since it is taken in on the same lane); this message goes as an envelope.
      if (!(error instanceof ChatError) || error.code !== "E_MLS_STALE_COMMIT") throw error;
      return not("another device made its MLS group at the same moment: this device joins that one");
    }
  }

  /** Why a message at `seq` that this device cannot open, and kept no copy of, is not readable (history, read out of order). */
  unreadable(label: string, seq: number): Unreadable {
    return unreadable(seq, this.local.joinPoint(label));
  }

  /** Why the conversation's last message went as an envelope (undefined: it did not, or no reason was found). */
  whyNot(label: string): string | undefined {
    return this.why.get(label);
  }

  /**
   * Takes in one MLS message the server delivered, in the conversation's
   * order. `users` is who may have devices in the group: a welcome into a
   * group with anyone else's device is refused.
   */
  open(place: Place, message: WireMessage): Promise<Opened> {
    return this.slots.serial(place.label, () => this.openNow(place, message));
  }

  private async openNow(place: Place, message: WireMessage): Promise<Opened> {
    // this device's own reset, come back in the server's order: what it left out is said there
    const note = this.resetNotes.get(`${place.label}#${message.seq}`);
    if (note !== undefined) {
      this.resetNotes.delete(`${place.label}#${message.seq}`);
      return { status: "notice", text: note };
    }
    let body;
    try {
      body = parseMlsBody(message.body);
    } catch {
      return failed("E_MLS_FORMAT", "the MLS message is malformed");
    }
    const held = await this.slots.loaded(place.label);
    // every leaf and sender is checked against these lists: a restarted device has none in memory yet
    await this.account.refresh(place.users);
    // Another process of this device took this message in already: what it showed is in the store.
    if (held && this.slots.seq(place.label) >= message.seq) return { status: "local" };
    try {
      if (body.type === "commit") return await this.takeCommit(place, message, held, body.commit, body.welcome);
      if (!held) return unreadable(message.seq, this.local.joinPoint(place.label));
      const got = (await this.fromReplaced(place, held, body.message)) ?? (await this.receive(place, held, body.message, message.seq));
      if (got.kind !== "application") return failed("E_MLS_FORMAT", "not an application message");
      if (got.sender.user !== message.from) return failed("E_SIGNATURE", `the server says it is from ${message.from}, but it is from ${got.sender.user}'s device`);
      const { cmid, content } = parseApplicationPlaintext(got.plaintext);
      if (cmid !== message.cmid) return failed("E_REPLAY", "the server's record of this message does not match what was encrypted");
      return { status: "ok", content, device: got.sender.deviceId };
    } catch (error) {
      if (error instanceof MlsError) {
        if (error.reason === "E_MLS_OWN") return { status: "local" };
        return failed(error.reason, error.message.toLowerCase());
      }
      throw error;
    }
  }

  private async takeCommit(place: Place, message: WireMessage, held: Held | undefined, commit: Uint8Array, welcome: Uint8Array | undefined): Promise<Opened> {
    // a commit of another group of this conversation, with a welcome: a reset made it again
    const header = clearHeader(commit);
    const reset = held !== undefined && header !== undefined && !equalBytes(header.groupId, held.group.groupId);
    if (held && !held.group.removed && !reset) {
      try {
        await this.receive(place, held, commit, message.seq).catch(async (error) => {
          // a device listed since this device last asked (the commit adds it), or revoked since (a member's commit
          // removes it, which is refused while the list held still names it): once more with fresh lists
          if (!(error instanceof MlsError) || (error.reason !== "E_MLS_UNTRUSTED_MEMBER" && error.reason !== "E_MLS_NOT_ADMIN")) throw error;
          await this.account.refresh(place.users, true);
          return this.receive(place, held, commit, message.seq);
        });
        return { status: "control" };
      } catch (error) {
        // The server stores one commit per epoch: one from an epoch this group has passed was taken in already
        // (this device's own, fetched back to fill its place in the order, or another process's)
        if (error instanceof MlsError && error.reason === "E_MLS_STALE_COMMIT") return { status: "control" };
        // A commit for an epoch this device's group never reached: the group was made again without it; a welcome may be for it.
        if (!(error instanceof MlsError) || error.reason !== "E_MLS_EPOCH" || !welcome) {
          // The server stored it as the winner of this device's epoch, and this device cannot take it in: nor can any
          // honest member, so the group is stopped here. A device that may make it again does so now (after this).
          if (error instanceof MlsError && error.reason !== "E_MLS_EPOCH") this.stoppedAt(place, held, message.seq, header?.groupId ?? held.group.groupId);
          throw error;
        }
      }
    }
    if (!welcome) return { status: "control" };
    let joined;
    try {
      joined = await joinFromWelcome(welcome, place, message.conv, this.account);
    } catch (error) {
      // a welcome this device refuses (a stranger's leaf, another group's, an origin its creator did not sign): shown with its code,
      // and what it then cannot read is a warning too, not history from before it joined
      if (error instanceof MlsError) {
        if (!held) this.local.refusedAt(place.label, message.seq);
        return failed(error.reason, `not joined: ${error.message.toLowerCase()}`);
      }
      throw error;
    }
    // a reset without this device: said, and an admin's device adds it again once it has a key package
    if (!joined) return reset ? { status: "notice", text: leftOutLine([{ user: this.me, deviceId: this.account.device.deviceId }], undefined, true) } : { status: "control" };
    const { group, used } = joined;
    let doubt = joined.doubt;
    if (reset) {
      try {
        this.checkReset(held!.group, group);
      } catch (error) {
        // the server moved on to that group, and honest members did not: stopped, as by any refused commit
        this.stoppedAt(place, held!, message.seq, header!.groupId);
        throw error;
      }
      doubt = this.local.joinDoubt(place.label);
      this.local.setStopped(place.label, undefined);
    }
    for (const ref of used) this.local.dropPackage(ref);
    this.local.setJoinDoubt(place.label, doubt);
    if (doubt && !reset) this.onDoubt?.(place, doubt);
    const fresh: Held = { group, version: this.local.version(place.label) ?? 0, sent: 0, since: Date.now() };
    this.slots.saveOver(place.label, fresh, message.seq);
    const gone = reset ? held!.group.members().filter((m) => !group.members().some((n) => n.user === m.user && n.deviceId === m.deviceId)) : [];
    return gone.length > 0 ? { status: "notice", text: leftOutLine(gone, group.joinedBy!.user) } : { status: "control" };
  }

  /**
   * A reset is checked against the group this device held, which the joiner
   * of a fresh group cannot do: only someone who could change its membership
   * may make it again, with the same admins and no one new.
   */
  private checkReset(old: DeviceGroup, group: DeviceGroup): void {
    const by = group.joinedBy!;
    const allowed = old.roles?.kind === "peers" ? old.members().some((m) => m.user === by.user) : old.roles?.kind === "admins" ? old.isAdmin(by.user) : true;
    if (!allowed) throw new MlsError("E_MLS_NOT_ADMIN", `${by.user}/${by.deviceId} made the conversation's MLS group again, but is not an admin of it`);
    const before = old.roles;
    const after = group.roles;
    if (before?.kind === "admins" && (after?.kind !== "admins" || after.admins.join() !== [...new Set(before.admins)].sort().join()))
      throw new MlsError("E_MLS_NOT_ADMIN", `${by.user}'s reset of the conversation's MLS group changes its admins`);
    const strangers = group.members().filter((m) => !old.members().some((o) => o.user === m.user));
    if (strangers.length > 0) throw new MlsError("E_MLS_NOT_ADMIN", `${by.user}'s reset of the conversation's MLS group adds ${strangers[0]!.user}, who was not in it`);
  }

  /**
   * A message for the group this device's own reset replaced, stored just
   * before the reset (sent while the group was not yet known to be stopped)
   * and delivered after this device moved on: read with the old group, kept
   * for that (store.db), so that nothing the server accepted is lost.
   */
  private async fromReplaced(place: Place, held: Held, message: Uint8Array): Promise<MlsReceived | undefined> {
    const header = clearHeader(message);
    if (!header || equalBytes(header.groupId, held.group.groupId)) return undefined;
    const saved = this.local.replaced(place.label);
    if (!saved) return undefined;
    const old = await DeviceGroup.restore(saved, this.account.book);
    if (!equalBytes(old.groupId, header.groupId)) return undefined;
    const got = await old.receive(message);
    this.local.setReplaced(place.label, old.save());
    return got;
  }

  /**
   * Claims a package for each of the user's devices (with `complete`, none
   * unless every device has one; with `devices`, for those only, each that has
   * one: a one-time package, else its last-resort one), and keeps those whose
   * leaf key is the one the user's signed device list gives that device: a
   * package the server made, or one for a device no longer listed, is dropped.
   */
  private async claimListed(user: string, which: { complete: true } | { devices: string[] } = { complete: true }): Promise<{ claimed: number; missing: number; usable: { device: string; keyPackage: Uint8Array }[] }> {
    const claim = (await this.call("mls.keypackages.claim", { user, ...which })) as { packages: { device: string; keyPackage: Uint8Array }[]; missing?: string[] };
    const listed = this.account.book.get(user)?.devices ?? [];
    const usable = claim.packages
      .map((p) => ({ device: p.device, keyPackage: new Uint8Array(p.keyPackage) }))
      .filter((p) => listed.some((d) => d.deviceId === p.device && equalBytes(d.mlsKey, decodeKeyPackage(p.keyPackage).leafNode.signaturePublicKey)));
    return { claimed: claim.packages.length, missing: claim.missing?.length ?? 0, usable };
  }

  /** Who may make a stopped group again: an admin of the group's own list, or either person of a direct conversation. */
  private mayReset(place: Place, held: Held): boolean {
    const roles = held.group.roles;
    return "to" in place.target ? roles?.kind !== "admins" : roles?.kind === "admins" && held.group.isAdmin(this.me);
  }

  private stoppedAt(place: Place, held: Held, seq: number, serverGroup: Uint8Array): void {
    this.local.setStopped(place.label, { seq, groupId: serverGroup.slice() });
    this.slots.saveOver(place.label, held, seq);
    if (!this.mayReset(place, held)) return;
    // on the conversation's lane, after the message being taken in now
    void this.slots.serial(place.label, async () => {
      const now = await this.slots.loaded(place.label);
      if (now && this.local.stopped(place.label) !== undefined) await this.resetNow(place, now);
    }).catch(() => {});
  }

  /**
   * Makes the conversation's MLS group again, for the same people and admins:
   * a new group (the next generation's id, epoch 0) with a package for every
   * listed device of every user who had a leaf, sent as a reset commit from
   * the server's current epoch, which orders it like any commit. Messages the
   * server refused meanwhile (from the stopped group) are sealed again by
   * their senders once their devices take its welcome in. Undefined when
   * another commit or reset came first.
   */
  private async resetNow(place: Place, held: Held): Promise<Held | undefined> {
    // past both this device's group and the one the server has now (a refused reset's, which must not be taken for this one)
    const server = (await this.call("mls.epoch", place.target)) as { conv: number; epoch: number; groupId?: Uint8Array };
    const theirs = server.groupId instanceof Uint8Array ? (generationOf(place.label, new Uint8Array(server.groupId)) ?? 0) : 0;
    const generation = Math.max(generationOf(place.label, held.group.groupId) ?? 0, theirs) + 1;
    const users = [...new Set(held.group.members().map((m) => m.user))].filter((u) => place.users.includes(u) || "to" in place.target);
    await this.account.refresh(users, true);
    const packages: Uint8Array[] = [];
    const mine = this.account.device.deviceId;
    // every listed device that has a package (its last-resort one if no one-time package is left); the others are said
    const left: { user: string; deviceId: string }[] = [];
    const usersLeft: string[] = [];
    for (const user of users) {
      const listed = (this.account.book.get(user)?.devices ?? []).map((d) => d.deviceId).filter((id) => !(user === this.me && id === mine));
      if (listed.length === 0) continue;
      const { usable } = await this.claimListed(user, { devices: listed });
      packages.push(...usable.map((p) => p.keyPackage));
      for (const id of listed) if (!usable.some((p) => p.device === id)) left.push({ user, deviceId: id });
      if (usable.length === 0 && user !== this.me) usersLeft.push(user);
    }
    // the same admins; a new group, so a new origin, signed by this admin's identity as the one who made it again
    const groupId = groupIdOf(place.label, generation);
    const kept = held.group.roles ?? ("group" in place.target ? { kind: "admins", admins: place.admins ?? [this.me] } : { kind: "peers" });
    const roles: GroupRoles =
      kept.kind === "admins" ? { kind: "admins", admins: kept.admins, origin: this.account.origin({ groupId, label: place.label, conv: server.conv }, kept.admins) } : kept;
    const group = await DeviceGroup.create(groupId, this.account.device, this.account.book, roles);
    const out = await group.add(packages);
    // the group the server moved to when this device's stopped (not whatever it has now: another reset may have come since)
    const replaces = this.local.stopped(place.label)?.groupId ?? held.group.groupId;
    try {
      const r = await this.call("mls.commit", { ...place.target, cmid: crypto.randomUUID(), epoch: server.epoch, reset: true, replaces, body: commitBody(out.commit, out.welcome) });
      await group.receive(out.commit);
      const fresh: Held = { group, version: held.version, sent: 0, since: Date.now() };
      this.local.setStopped(place.label, undefined);
      this.local.setReplaced(place.label, held.group.save());
      this.local.setLeftOut(place.label, [...new Set([...this.local.leftOut(place.label), ...usersLeft])]);
      if (left.length > 0) this.resetNotes.set(`${place.label}#${r.seq as number}`, leftOutLine(left, "this device"));
      this.ownCommitStored(place.label, fresh, r.conv as number, r.seq as number);
      return fresh;
    } catch (error) {
      if (!(error instanceof ChatError) || error.code !== "E_MLS_STALE_COMMIT") throw error;
      return undefined;
    }
  }

  private async receive(place: Place, held: Held, bytes: Uint8Array, seq: number): Promise<MlsReceived> {
    const got = await held.group.receive(bytes);
    this.slots.saveOver(place.label, held, seq);
    // a commit means someone's devices changed: this device asks for the lists again before it next reconciles
    if (got.kind === "commit") this.account.forget(place.users);
    return got;
  }
}

function failed(code: string, reason: string): Opened {
  return { status: "failed", code, reason };
}

/** The line a reset that left devices out is shown with: who made the group again (if known) without which devices, and what happens next. */
function leftOutLine(devices: { user: string; deviceId: string }[], by: string | undefined, self = false): string {
  const one = devices.length === 1;
  const names = self ? "this device" : devices.map((d) => `${d.user}'s device ${d.deviceId}`).join(", ");
  return `the conversation's MLS group was made again${by ? ` by ${by}` : ""} without ${names}: no key package could be claimed for ${one ? "it" : "them"}; ${one ? "it reads" : "they read"} nothing sent until an admin's device (or one of the same account) adds ${one ? "it" : "them"} again, once ${one ? "it has" : "they have"} a key package`;
}
