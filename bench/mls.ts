/**
 * The group bench's MLS client (--mls): each simulated client is an MLS
 * device with one key package on the server; each group's first member makes
 * its MLS group with every member in one commit (ordered by the server, with
 * the welcome), every other member joins from that welcome as it is
 * delivered, and from then on a message is one MLS ciphertext, encrypted by
 * its sender and decrypted by each member that receives it: the real crypto of
 * client/mls, without the device lists (every leaf is trusted: that check is
 * a map lookup) and without a store.
 */
import { DeviceGroup, makeKeyPackage, newMlsDevice, type MemberTrust, type MlsDevice, type OwnKeyPackage } from "../crypto/mls/index.ts";
import { applicationBody, applicationPlaintext, commitBody, isMlsBody, parseApplicationPlaintext, parseMlsBody } from "../client/mls/body";
import { groupIdOf } from "../client/mls/join";
import { ChatError } from "../protocol/errors";
import type { WireMessage } from "../protocol/messages";
import type { SimClient } from "./client";

const TRUST_ALL: MemberTrust = { isTrusted: () => true };

export class BenchMls {
  private readonly device: MlsDevice;
  private own?: OwnKeyPackage;
  /** By group name. */
  private readonly groups = new Map<string, DeviceGroup>();
  /** Groups this client is making: the server echoes its commit back to it, and that echo is no welcome to join from. */
  private readonly making = new Set<string>();

  constructor(private readonly client: SimClient) {
    this.device = newMlsDevice({ user: client.name, deviceId: client.deviceKey! });
  }

  /** One one-time key package on the server, in place of any earlier run's. */
  async publish(): Promise<void> {
    this.own = await makeKeyPackage(this.device);
    await this.client.request("mls.keypackages.put", { oneTime: [this.own.encoded], replace: true });
  }

  /** The first member's part: the group with every other member's device, in one commit, with its welcome. */
  async create(group: string, others: string[], deadline: number): Promise<void> {
    const packages: Uint8Array[] = [];
    for (const user of others) {
      for (;;) {
        const claim = (await this.client.request("mls.keypackages.claim", { user, complete: true })) as { packages: { keyPackage: Uint8Array; lastResort: boolean }[] };
        const got = claim.packages.find((p) => !p.lastResort);
        if (got) {
          packages.push(new Uint8Array(got.keyPackage));
          break;
        }
        // not published yet (another worker's client)
        if (Date.now() > deadline) throw new ChatError("E_TIMEOUT", `${user} published no MLS key package`);
        await Bun.sleep(200);
      }
    }
    this.making.add(group);
    const made = await DeviceGroup.create(groupIdOf(`group:${group}`), this.device, TRUST_ALL, { kind: "admins", admins: [this.client.name] });
    const out = await made.add(packages);
    await this.client.request("mls.commit", { group, cmid: crypto.randomUUID(), epoch: 0, body: commitBody(out.commit, out.welcome) });
    await made.receive(out.commit);
    this.groups.set(group, made);
  }

  has(group: string): boolean {
    return this.groups.has(group);
  }

  /** A message's body: one MLS ciphertext binding its cmid, as the real client makes it. */
  async seal(group: string, cmid: string, content: Uint8Array): Promise<Uint8Array> {
    const g = this.groups.get(group);
    if (!g) throw new Error(`not in ${group}'s MLS group`);
    return applicationBody(await g.encrypt(applicationPlaintext(cmid, content)));
  }

  /**
   * A delivered message: a commit with the welcome joins the group ("control"),
   * an application message is decrypted ("ok" when it opens to its cmid).
   */
  async open(m: WireMessage): Promise<"control" | "ok" | "failed"> {
    const body = new Uint8Array(m.body);
    if (!isMlsBody(body) || m.group === undefined) return "failed";
    const parsed = parseMlsBody(body);
    if (parsed.type === "commit") {
      if (this.groups.has(m.group) || this.making.has(m.group) || !parsed.welcome || !this.own) return "control";
      this.groups.set(m.group, await DeviceGroup.join(parsed.welcome, this.own, TRUST_ALL));
      return "control";
    }
    const g = this.groups.get(m.group);
    if (!g) return "failed";
    const got = await g.receive(parsed.message).catch(() => undefined);
    if (got?.kind !== "application") return "failed";
    return parseApplicationPlaintext(got.plaintext).cmid === m.cmid ? "ok" : "failed";
  }
}
