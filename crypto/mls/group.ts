// One conversation as an MLS group of devices, from one device's point of view: membership commits,
// application messages, and the rule that the server's order decides which commit of an epoch wins.
import {
  createApplicationMessage,
  createCommit,
  createGroup,
  decodeGroupState,
  emptyPskIndex,
  encodeGroupState,
  joinGroup,
  processPrivateMessage,
  zeroOutUint8Array,
  type CiphersuiteImpl,
  type ClientState,
  type Proposal,
} from "ts-mls";
import { makeKeyPackageRef } from "ts-mls/keyPackage.js";
import { decryptGroupInfo, decryptGroupSecrets } from "ts-mls/welcome.js";
import { decryptSenderData } from "ts-mls/privateMessage.js";
import { allSecretTreeValues } from "ts-mls/secretTree.js";
import { equalBytes } from "../bytes.ts";
import { clientConfig } from "./config.ts";
import { parseCredential, type DeviceRef } from "./credential.ts";
import { MlsError, MlsReasons, type MlsReason } from "./errors.ts";
import { decodeKeyPackage, makeKeyPackage, type MlsDevice, type OwnKeyPackage } from "./key-packages.ts";
import { refusal, ROLES_EXTENSION, rolesExtension, rolesOf, type GroupRoles, type RoleView } from "./roles.ts";
import { TrustGate, type MemberTrust } from "./trust.ts";
import { decodePrivateMessage, decodeWelcome, encodeMessage, encodePrivateMessage, encodeWelcome } from "./wire.ts";
import { mlsSuite } from "./suite.ts";

export interface Member extends DeviceRef {
  leaf: number;
  /** The key the leaf signs with: what the owner's device list must name for it. */
  signatureKey: Uint8Array;
}

/** What a device sends to the server for ordering; a welcome goes only to the devices it adds. */
export interface Outgoing {
  commit: Uint8Array;
  welcome?: Uint8Array;
}

export type Received =
  | { kind: "application"; plaintext: Uint8Array; sender: DeviceRef; epoch: bigint }
  /** `lostOwn`: this device had a commit waiting for the same epoch, and the server ordered another first. */
  | { kind: "commit"; epoch: bigint; own: boolean; lostOwn: boolean; removedSelf: boolean; committer?: DeviceRef };

interface Pending {
  commit: Uint8Array;
  state: ClientState;
  consumed: Uint8Array[];
}

export class DeviceGroup {
  private pending: Pending | undefined;
  /** ts-mls states are values: two overlapping operations would each start from the same one, and one would be lost. */
  private queue: Promise<unknown> = Promise.resolve();

  private constructor(
    private state: ClientState,
    private readonly gate: TrustGate,
    private readonly cs: CiphersuiteImpl,
    /**
     * For a group this device joined by a welcome (in this process): the leaf
     * whose device signed the welcome's GroupInfo, i.e. the committer of the add.
     * ts-mls checks that signature and the signer's device-list binding, but
     * not whether the signer was allowed to add anyone: see joinDoubt (roles.ts).
     */
    readonly joinedBy?: Member,
  ) {}

  /**
   * `roles`: who may change the membership, kept in the group's context (crypto/mls/roles.ts) and checked
   * by every member on every commit; without it (the pure-crypto tests) any member may commit anything.
   */
  static async create(groupId: Uint8Array, device: MlsDevice, trust: MemberTrust, roles?: GroupRoles): Promise<DeviceGroup> {
    const cs = await mlsSuite();
    const gate = new TrustGate(trust);
    const own = await makeKeyPackage(device);
    const extensions = roles ? [rolesExtension(roles)] : [];
    const state = await gate.guard(() => createGroup(groupId, own.publicPackage, own.privatePackage, extensions, cs, clientConfig(gate)));
    return new DeviceGroup(state, gate, cs);
  }

  /**
   * Joins from a welcome, with whichever of the device's own key packages it was made for. Every leaf of
   * the group's tree must be in its owner's signed device list.
   */
  static async join(welcome: Uint8Array, candidates: OwnKeyPackage | OwnKeyPackage[], trust: MemberTrust): Promise<DeviceGroup> {
    const cs = await mlsSuite();
    const gate = new TrustGate(trust);
    const decoded = decodeWelcome(welcome);
    const own = await welcomedPackage(decoded.secrets.map((s) => s.newMember), [candidates].flat(), cs);
    const state = await gate
      .guard(() => joinGroup(decoded, own.publicPackage, own.privatePackage, emptyPskIndex, cs, undefined, undefined, clientConfig(gate)))
      .catch(rethrowAs("E_MLS_DECRYPT"));
    // joinGroup verified the GroupInfo's signature by its signer's leaf; it does not say which leaf that was
    const signer = await welcomeSigner(decoded, own, cs);
    const node = state.ratchetTree[signer * 2];
    if (node?.nodeType !== "leaf") throw new MlsError("E_MLS_FORMAT", "The welcome's signer has no leaf");
    const joinedBy: Member = { ...parseCredential(node.leaf.credential), leaf: signer, signatureKey: node.leaf.signaturePublicKey };
    return new DeviceGroup(state, gate, cs, joinedBy);
  }

  /** A group saved by `save()` (it holds the device's secrets: store it as such). */
  static async restore(saved: Uint8Array, trust: MemberTrust): Promise<DeviceGroup> {
    const cs = await mlsSuite();
    const gate = new TrustGate(trust);
    const decoded = (() => {
      try {
        return decodeGroupState(saved, 0);
      } catch {
        return undefined;
      }
    })();
    if (!decoded || decoded[1] !== saved.length) throw new MlsError("E_MLS_FORMAT", "Not a saved MLS group");
    return new DeviceGroup({ ...decoded[0], clientConfig: clientConfig(gate) }, gate, cs);
  }

  save(): Uint8Array {
    return encodeGroupState(this.state);
  }

  get epoch(): bigint {
    return this.state.groupContext.epoch;
  }

  get groupId(): Uint8Array {
    return this.state.groupContext.groupId;
  }

  /** Equal on every member exactly when they are in the same epoch of the same group. */
  get epochAuthenticator(): Uint8Array {
    return this.state.keySchedule.epochAuthenticator;
  }

  /** Who may change the membership, as the group itself says (undefined: a group made before roles were kept). */
  get roles(): GroupRoles | undefined {
    return rolesOf(this.state.groupContext.extensions);
  }

  /** Whether this user may add and remove people: an admin in the group's own list, or anyone in a group without roles. */
  isAdmin(user: string): boolean {
    const roles = this.roles;
    return roles === undefined || (roles.kind === "admins" && roles.admins.includes(user));
  }

  get removed(): boolean {
    return this.state.groupActiveState.kind === "removedFromGroup";
  }

  members(): Member[] {
    const out: Member[] = [];
    this.state.ratchetTree.forEach((node, i) => {
      if (node?.nodeType === "leaf") out.push({ ...parseCredential(node.leaf.credential), leaf: i / 2, signatureKey: node.leaf.signaturePublicKey });
    });
    return out;
  }

  /** Adds devices by their key packages. Each must be in its owner's signed device list, checked here first. */
  add(keyPackages: Uint8Array[]): Promise<Outgoing> {
    return this.serial(() => this.addNow(keyPackages));
  }

  private async addNow(keyPackages: Uint8Array[]): Promise<Outgoing> {
    const proposals: Proposal[] = keyPackages.map((bytes) => {
      const keyPackage = decodeKeyPackage(bytes);
      const device = parseCredential(keyPackage.leafNode.credential);
      if (!this.gate.trustedNow(device, keyPackage.leafNode.signaturePublicKey))
        throw new MlsError("E_MLS_UNTRUSTED_MEMBER", `${device.user}/${device.deviceId} is not in ${device.user}'s signed device list`);
      return { proposalType: "add", add: { keyPackage } };
    });
    return this.commit(proposals);
  }

  /** This device's own leaf. */
  get ownLeaf(): number {
    return this.state.privatePath.leafIndex;
  }

  /**
   * One commit that adds devices by their key packages (each checked against
   * its owner's signed list first) and removes leaves: how a group follows
   * its members' device lists (a new device, a revoked one, one that lost its state).
   */
  change(keyPackages: Uint8Array[], removeLeaves: number[], admins?: string[]): Promise<Outgoing> {
    return this.serial(async () => {
      const adds = keyPackages.map((bytes) => {
        const keyPackage = decodeKeyPackage(bytes);
        const device = parseCredential(keyPackage.leafNode.credential);
        if (!this.gate.trustedNow(device, keyPackage.leafNode.signaturePublicKey))
          throw new MlsError("E_MLS_UNTRUSTED_MEMBER", `${device.user}/${device.deviceId} is not in ${device.user}'s signed device list`);
        return { proposalType: "add", add: { keyPackage } } as Proposal;
      });
      const removes = removeLeaves.map((leaf) => ({ proposalType: "remove", remove: { removed: leaf } }) as Proposal);
      return this.commit([...removes, ...adds, ...(admins ? [this.adminsProposal(admins)] : [])]);
    });
  }

  remove(devices: DeviceRef[]): Promise<Outgoing> {
    return this.serial(() => this.removeNow(devices));
  }

  private async removeNow(devices: DeviceRef[]): Promise<Outgoing> {
    const members = this.members();
    const proposals: Proposal[] = devices.map((d) => {
      const m = members.find((x) => x.user === d.user && x.deviceId === d.deviceId);
      if (!m) throw new MlsError("E_MLS_FORMAT", `${d.user}/${d.deviceId} is not in the group`);
      return { proposalType: "remove", remove: { removed: m.leaf } };
    });
    return this.commit(proposals);
  }

  /** A commit that makes `admins` the group's admins (only an admin's is accepted by the others). */
  setAdmins(admins: string[]): Promise<Outgoing> {
    return this.serial(() => this.commit([this.adminsProposal(admins)]));
  }

  private adminsProposal(admins: string[]): Proposal {
    const others = this.state.groupContext.extensions.filter((e) => e.extensionType !== ROLES_EXTENSION);
    const roles = this.roles;
    const origin = roles?.kind === "admins" ? roles.origin : undefined;
    return { proposalType: "group_context_extensions", groupContextExtensions: { extensions: [...others, rolesExtension({ kind: "admins", admins, ...(origin ? { origin } : {}) })] } };
  }

  /** What the roles check sees of the group as it is now (before the commit it judges). */
  private roleView(): RoleView {
    const tree = this.state.ratchetTree;
    const users = new Set<string>();
    const leaf = (index: number) => {
      const node = tree[index * 2];
      if (node?.nodeType !== "leaf") return undefined;
      try {
        return { device: parseCredential(node.leaf.credential), signatureKey: node.leaf.signaturePublicKey };
      } catch {
        return undefined;
      }
    };
    for (let i = 0; i * 2 < tree.length; i++) {
      const l = leaf(i);
      if (l) users.add(l.device.user);
    }
    return { roles: this.roles, epoch: this.epoch, leaf, users, trustedNow: (d, k) => this.gate.trustedNow(d, k) };
  }

  /** A commit with no proposals: a fresh leaf key and path, for post-compromise security. */
  update(): Promise<Outgoing> {
    return this.serial(() => this.commit([]));
  }

  encrypt(plaintext: Uint8Array): Promise<Uint8Array> {
    return this.serial(() => this.encryptNow(plaintext));
  }

  private async encryptNow(plaintext: Uint8Array): Promise<Uint8Array> {
    if (this.removed) throw new MlsError("E_MLS_REMOVED");
    const { newState, privateMessage, consumed } = await createApplicationMessage(this.state, plaintext, this.cs);
    this.replace(newState, consumed);
    return encodePrivateMessage(privateMessage);
  }

  /** Everything the server delivers for the conversation, in the server's order. */
  receive(bytes: Uint8Array): Promise<Received> {
    return this.serial(() => this.receiveNow(bytes));
  }

  private serial<T>(op: () => Promise<T>): Promise<T> {
    const run = this.queue.then(op, op);
    this.queue = run.catch(() => undefined);
    return run;
  }

  private async receiveNow(bytes: Uint8Array): Promise<Received> {
    if (this.removed) throw new MlsError("E_MLS_REMOVED");
    const pm = decodePrivateMessage(bytes);
    if (!equalBytes(pm.groupId, this.groupId)) throw new MlsError("E_MLS_FORMAT", "The message is for another group");
    if (pm.contentType === "commit") return this.receiveCommit(bytes, pm);
    if (pm.contentType !== "application") throw new MlsError("E_MLS_FORMAT", "Stand-alone proposals are not used");
    if (pm.epoch > this.epoch) throw new MlsError("E_MLS_EPOCH", "The message is from an epoch this device has not reached");
    const epochData = pm.epoch === this.epoch ? this.state : this.state.historicalReceiverData.get(pm.epoch);
    if (!epochData) throw new MlsError("E_MLS_EPOCH");
    const senderDataSecret = "keySchedule" in epochData ? epochData.keySchedule.senderDataSecret : epochData.senderDataSecret;
    const senderData = await decryptSenderData(pm, senderDataSecret, this.cs).catch(() => undefined);
    const node = senderData && epochData.ratchetTree[senderData.leafIndex * 2];
    if (node?.nodeType !== "leaf") throw new MlsError("E_MLS_DECRYPT");
    // MLS never lets a sender decrypt its own message (its key is spent): another process of this device sent it
    if (senderData!.leafIndex === this.state.privatePath.leafIndex) throw new MlsError("E_MLS_OWN");
    const result = await processPrivateMessage(this.state, pm, emptyPskIndex, this.cs).catch(rethrowAs("E_MLS_DECRYPT"));
    if (result.kind !== "applicationMessage") throw new MlsError("E_MLS_FORMAT");
    this.replace(result.newState, result.consumed);
    const sender = parseCredential(node.leaf.credential);
    // a device revoked since it joined keeps its leaf until someone commits its removal: say so, don't show it as them
    if (!this.gate.trustedNow(sender, node.leaf.signaturePublicKey))
      throw new MlsError("E_MLS_UNTRUSTED_MEMBER", `${sender.user}/${sender.deviceId} is no longer in ${sender.user}'s signed device list`);
    return { kind: "application", plaintext: result.message, sender, epoch: pm.epoch };
  }

  private async receiveCommit(bytes: Uint8Array, pm: { epoch: bigint }): Promise<Received> {
    const pending = this.pending;
    if (pending && equalBytes(pending.commit, bytes)) {
      this.pending = undefined;
      this.replace(pending.state, pending.consumed);
      return { kind: "commit", epoch: this.epoch, own: true, lostOwn: false, removedSelf: false };
    }
    if (pm.epoch < this.epoch) throw new MlsError("E_MLS_STALE_COMMIT");
    if (pm.epoch > this.epoch) throw new MlsError("E_MLS_EPOCH", "A commit for an epoch this device has not reached");
    // the committer is checked against the roles in the group's own state, before the commit is taken in
    const view = this.roleView();
    let refused: string | undefined;
    let committer: DeviceRef | undefined;
    const result = await this.gate
      .guard(() =>
        processPrivateMessage(this.state, decodePrivateMessage(bytes), emptyPskIndex, this.cs, (incoming) => {
          if (incoming.kind !== "commit") return "reject";
          committer = incoming.senderLeafIndex === undefined ? undefined : view.leaf(incoming.senderLeafIndex)?.device;
          refused = refusal(view, incoming.senderLeafIndex, incoming.proposals);
          return refused === undefined ? "accept" : "reject";
        }),
      )
      .catch(rethrowAs("E_MLS_DECRYPT"));
    if (refused !== undefined) throw new MlsError("E_MLS_NOT_ADMIN", refused);
    if (result.kind !== "newState" || result.actionTaken !== "accept") throw new MlsError("E_MLS_FORMAT");
    const lostOwn = pending !== undefined;
    this.pending = undefined;
    this.replace(result.newState, result.consumed);
    return { kind: "commit", epoch: this.epoch, own: false, lostOwn, removedSelf: this.removed, ...(committer ? { committer } : {}) };
  }

  /**
   * Makes a commit but keeps the current epoch until the server's order says it won: the commit takes
   * effect when it comes back in `receive`, and is dropped if another commit of the epoch comes first.
   */
  private async commit(extraProposals: Proposal[]): Promise<Outgoing> {
    if (this.removed) throw new MlsError("E_MLS_REMOVED");
    // the same check every other member makes of it: a commit they would refuse is never sent
    const refused = refusal(this.roleView(), this.ownLeaf, extraProposals.map((proposal) => ({ proposal, senderLeafIndex: this.ownLeaf })));
    if (refused !== undefined) throw new MlsError("E_MLS_NOT_ADMIN", refused);
    const result = await this.gate.guard(() =>
      createCommit({ state: this.state, cipherSuite: this.cs }, { extraProposals, ratchetTreeExtension: true }),
    );
    const commit = encodeMessage(result.commit);
    this.pending = { commit, state: result.newState, consumed: result.consumed };
    return result.welcome ? { commit, welcome: encodeWelcome(result.welcome) } : { commit };
  }

  /** Moves to a new state and wipes what the old one no longer needs (used message keys, dropped epochs). */
  private replace(next: ClientState, consumed: Uint8Array[]): void {
    for (const [epoch, data] of this.state.historicalReceiverData)
      if (!next.historicalReceiverData.has(epoch) && epoch !== next.groupContext.epoch) allSecretTreeValues(data.secretTree).forEach(zeroOutUint8Array);
    consumed.forEach(zeroOutUint8Array);
    this.state = next;
  }
}

/** The welcome names its new members by key package reference; find the one this device holds. */
async function welcomedPackage(refs: Uint8Array[], candidates: OwnKeyPackage[], cs: CiphersuiteImpl): Promise<OwnKeyPackage> {
  for (const c of candidates) {
    const ref = await makeKeyPackageRef(c.publicPackage, cs.hash);
    if (refs.some((r) => equalBytes(r, ref))) return c;
  }
  throw new MlsError("E_MLS_FORMAT", "The welcome is not for any key package this device holds");
}

/** The leaf index that signed the welcome's GroupInfo (the groups here use no pre-shared keys). */
async function welcomeSigner(welcome: ReturnType<typeof decodeWelcome>, own: OwnKeyPackage, cs: CiphersuiteImpl): Promise<number> {
  const ref = await makeKeyPackageRef(own.publicPackage, cs.hash);
  const secrets = await decryptGroupSecrets(await cs.hpke.importPrivateKey(own.privatePackage.initPrivateKey), ref, welcome, cs.hpke);
  if (!secrets || secrets.psks.length > 0) throw new MlsError("E_MLS_FORMAT", "The welcome's secrets are not for this device, or use pre-shared keys");
  const info = await decryptGroupInfo(welcome, secrets.joinerSecret, new Uint8Array(cs.kdf.size), cs);
  zeroOutUint8Array(secrets.joinerSecret);
  if (!info) throw new MlsError("E_MLS_FORMAT", "The welcome's group info cannot be read");
  return info.signer;
}

/** ts-mls throws plain errors; the ones a caller must tell apart get their own reason. */
function rethrowAs(reason: MlsReason) {
  return (err: unknown): never => {
    if (err instanceof MlsError) throw err;
    const text = err instanceof Error ? err.message : String(err);
    if (/gen in the past/i.test(text)) throw new MlsError("E_MLS_REPLAY");
    if (/epoch too old/i.test(text)) throw new MlsError("E_MLS_EPOCH");
    throw new MlsError(reason, `${MlsReasons[reason]}: ${text}`);
  };
}
