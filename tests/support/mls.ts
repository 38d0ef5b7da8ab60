// A small MLS world for the pure-crypto tests: accounts with identity keys and devices, one trust book
// per device, the server's ordered log per conversation, and an attacker who holds a stolen state.
import { decodeGroupState, emptyPskIndex, processPrivateMessage, type ClientState } from "ts-mls";
import { defaultClientConfig } from "ts-mls/clientConfig.js";
import { generateIdentity, type IdentityKeys } from "../../crypto/keys.ts";
import {
  DeviceGroup,
  DeviceListBook,
  makeKeyPackage,
  mlsSuite,
  newMlsDevice,
  signDeviceList,
  type MlsDevice,
  type Received,
} from "../../crypto/mls/index.ts";
import { decodePrivateMessage } from "../../crypto/mls/wire.ts";

export const text = (s: string) => new TextEncoder().encode(s);
export const read = (r: Received) => (r.kind === "application" ? new TextDecoder().decode(r.plaintext) : `<${r.kind}>`);

export interface Account {
  user: string;
  identity: IdentityKeys;
  devices: MlsDevice[];
  version: number;
}

/** The accounts, and the signed device lists the directory (the server) hands out. */
export class World {
  readonly accounts = new Map<string, Account>();
  readonly signed = new Map<string, Uint8Array>();
  private readonly books: DeviceListBook[] = [];

  account(user: string, deviceCount = 1): Account {
    const acc: Account = { user, identity: generateIdentity(), devices: [], version: 0 };
    for (let i = 1; i <= deviceCount; i++) acc.devices.push(newMlsDevice({ user, deviceId: `${user}-d${i}` }));
    this.accounts.set(user, acc);
    this.publish(acc);
    return acc;
  }

  /** The account's identity signs its current device list (a new version on every change). */
  publish(acc: Account): void {
    acc.version++;
    const list = { user: acc.user, version: acc.version, issuedAt: Date.now(), devices: acc.devices.map((d) => ({ deviceId: d.deviceId, mlsKey: d.publicKey })) };
    const signed = signDeviceList(list, acc.identity.signPrivate);
    this.signed.set(acc.user, signed);
    // every client fetches the new list (in the product: from the server, on login and on change)
    for (const book of this.books) book.accept(acc.user, signed, acc.identity.signPublic);
  }

  /** A device's view: every account's newest list, each checked against the identity key it pinned. */
  book(): DeviceListBook {
    const book = new DeviceListBook();
    for (const [user, signed] of this.signed) book.accept(user, signed, this.accounts.get(user)!.identity.signPublic);
    this.books.push(book);
    return book;
  }

  device(user: string, n = 1): MlsDevice {
    return this.accounts.get(user)!.devices[n - 1]!;
  }
}

/** The server's part: one order per conversation. Each member reads the log from its own cursor. */
export class ConversationLog {
  readonly entries: { message: Uint8Array; from?: DeviceGroup }[] = [];
  private readonly cursors = new Map<DeviceGroup, number>();

  /**
   * `from`: the device that sent an application message, which the server does not echo back to it
   * (its client already shows what it sent). Commits go to their sender too: that is how it learns it won.
   */
  append(message: Uint8Array, from?: DeviceGroup): number {
    this.entries.push({ message, from });
    return this.entries.length;
  }

  follow(group: DeviceGroup): void {
    this.cursors.set(group, this.entries.length);
  }

  /** Delivers everything past the member's cursor, in order; returns what the member made of each entry. */
  async deliver(group: DeviceGroup): Promise<(Received | Error)[]> {
    const out: (Received | Error)[] = [];
    for (let at = this.cursors.get(group) ?? 0; at < this.entries.length; at++) {
      const entry = this.entries[at]!;
      if (entry.from !== group) out.push(await group.receive(entry.message).catch((err: Error) => err));
      this.cursors.set(group, at + 1);
    }
    return out;
  }

  /** Delivers to each; a commit that lost its epoch is expected in the log and skipped, any other refusal throws. */
  async deliverAll(groups: DeviceGroup[]): Promise<void> {
    for (const g of groups) {
      const results = await this.deliver(g);
      const failed = results.find((r) => r instanceof Error && (r as { reason?: string }).reason !== "E_MLS_STALE_COMMIT");
      if (failed) throw failed;
    }
  }
}

/**
 * A conversation of the given devices, made by the first: one commit adds the rest, the server logs it,
 * and each added device joins from the welcome. Every device trusts what `world` has published.
 */
export async function conversation(world: World, devices: MlsDevice[]): Promise<{ log: ConversationLog; groups: DeviceGroup[] }> {
  const log = new ConversationLog();
  const [creator, ...rest] = devices;
  const first = await DeviceGroup.create(text(`conv-${crypto.randomUUID()}`), creator!, world.book());
  const packages = await Promise.all(rest.map((d) => makeKeyPackage(d)));
  const groups = [first];
  if (packages.length > 0) {
    const { commit, welcome } = await first.add(packages.map((p) => p.encoded));
    log.append(commit);
    await log.deliverAll([first]);
    for (const p of packages) {
      const g = await DeviceGroup.join(welcome!, p, world.book());
      log.follow(g);
      groups.push(g);
    }
  }
  return { log, groups };
}

/**
 * The attacker: a saved state (a stolen laptop's disk), no checks of its own, every key-retention
 * limit lifted, and the epoch check bypassed, so a failure can only mean the keys are not there.
 */
export async function attackerDecrypt(saved: Uint8Array, message: Uint8Array): Promise<string | undefined> {
  const cs = await mlsSuite();
  const decoded = decodeGroupState(saved, 0);
  if (!decoded) throw new Error("not a saved state");
  const lenient = { ...defaultClientConfig, keyRetentionConfig: { retainKeysForGenerations: 10_000, retainKeysForEpochs: 10_000, maximumForwardRatchetSteps: 10_000 } };
  const pm = decodePrivateMessage(message);
  const base: ClientState = { ...decoded[0], clientConfig: lenient };
  const attempts: ClientState[] = [base, { ...base, groupContext: { ...base.groupContext, epoch: pm.epoch } }];
  for (const state of attempts) {
    try {
      const r = await processPrivateMessage(state, pm, emptyPskIndex, cs);
      if (r.kind === "applicationMessage") return new TextDecoder().decode(r.message);
    } catch {
      // no key for it in this state
    }
  }
  return undefined;
}
