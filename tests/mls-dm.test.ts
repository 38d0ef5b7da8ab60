/**
 * Direct messages over MLS, end to end through real servers: each device
 * publishes a signed device list and key packages at login; the first sender
 * makes the group (one commit with its welcome, ordered by the server), and
 * every message after is one MLS ciphertext; the server keeps one commit per
 * epoch; a device keeps its group across a restart; and a conversation with a
 * device that has published nothing stays on envelopes, old envelopes readable.
 */
import { afterAll, beforeAll, expect, setDefaultTimeout, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { openDatabase, type Database } from "../db/connect";
import { signDeviceList, newMlsDevice } from "../crypto/mls/index.ts";
import { generateIdentity } from "../crypto/keys";
import { connectPersistent, rawLink, signup, startCluster, uniqueName, until, waitFor, type Cluster, type TestUser } from "./support/cluster";

setDefaultTimeout(60_000);

const homes: string[] = [];
const open: TestUser[] = [];

let cluster: Cluster;
let db: Database;

beforeAll(async () => {
  cluster = await startCluster({ servers: 2 });
  db = openDatabase(cluster.url, { max: 2 });
}, 60_000);

afterAll(async () => {
  for (const u of open) await u.session.close().catch(() => {});
  await db?.close();
  await cluster?.stop();
  for (const h of homes) rmSync(h, { recursive: true, force: true });
});

const refusal = (p: Promise<unknown>) => p.then(() => "accepted", (e: { code?: string }) => e.code ?? String(e));

async function users(...prefixes: string[]): Promise<string[]> {
  const names = prefixes.map((p) => uniqueName(p));
  for (const n of names) await signup(cluster.balancerAddr, n);
  return names;
}

/** MLS needs a device that keeps its store: every session here is one, under this file's home. */
const fileHome = mkdtempSync(join(tmpdir(), "chatterbox-mls-dm-"));
homes.push(fileHome);

async function connect(name: string): Promise<TestUser> {
  const u = await connectPersistent(cluster.balancerAddr, fileHome, name);
  open.push(u);
  return u;
}

/** Published: its device list names it, and it has key packages on the server. */
async function published(name: string): Promise<void> {
  await until(async () => {
    const [row] = await db.sql`select count(*)::int as n from key_packages k join devices d on d.id = k.device_id join users u on u.id = d.user_id
                               join device_lists l on l.user_id = u.id where u.name = ${name} and k.last_resort`;
    return row!.n > 0;
  }, `${name} to publish its MLS device`);
}

/** The bodies stored in the conversation between two users, in order. */
async function bodies(a: string, b: string): Promise<Uint8Array[]> {
  const rows = await db.sql`select m.body from messages m join conversations c on c.id = m.conversation_id
                            join members x on x.conversation_id = c.id join users ux on ux.id = x.user_id and ux.name = ${a}
                            join members y on y.conversation_id = c.id join users uy on uy.id = y.user_id and uy.name = ${b}
                            where c.kind = 'dm' order by m.seq`;
  return rows.map((r) => new Uint8Array(r.body));
}

const MLS = 0x4d;
const ENVELOPE = 0x01;

test("the server keeps a device list only if the account's identity signed it, and only a higher version", async () => {
  const [name] = await users("dl");
  const identity = await signup(cluster.balancerAddr, uniqueName("dlother")); // someone else's key
  const link = await rawLink(cluster.servers[0]!.addr, name!);
  try {
    const device = newMlsDevice({ user: name!, deviceId: "raw-device" });
    const list = { user: name!, version: 1, issuedAt: Date.now(), devices: [{ deviceId: "raw-device", mlsKey: device.publicKey }] };
    expect(await refusal(link.request("mls.devicelist.put", { list: signDeviceList(list, identity.signPrivate) }))).toBe("E_MLS_DEVICE_LIST");
    expect(await refusal(link.request("mls.devicelist.put", { list: signDeviceList(list, generateIdentity().signPrivate) }))).toBe("E_MLS_DEVICE_LIST");
    expect(await refusal(link.request("mls.devicelist.put", { list: new Uint8Array([1, 2, 3]) }))).toBe("E_MLS_DEVICE_LIST");
    expect(await link.request("mls.devicelist.get", { users: [name!] })).toMatchObject({ lists: {} });
    // the real identity: the account's backup, as a client restores it
    const session = await connect(name!);
    await published(name!);
    const held = (await link.request("mls.devicelist.get", { users: [name!] })).lists as Record<string, Uint8Array>;
    expect(held[name!]).toBeDefined();
    // a replay of the list held (same version) is refused, and the server serves on
    expect(await refusal(link.request("mls.devicelist.put", { list: new Uint8Array(held[name!]!) }))).toBe("E_MLS_DEVICE_LIST");
    expect(await link.request("ping", {})).toBeDefined();
    await session.session.close();
  } finally {
    link.close();
  }
});

test("a direct message between MLS devices is one MLS ciphertext after one commit, and reads as sent", async () => {
  const [a, b] = await users("mlsa", "mlsb");
  const alice = await connect(a!);
  const bob = await connect(b!);
  await published(a!);
  await published(b!);
  await alice.session.sendText(b!, "hello over mls");
  await waitFor(() => bob.received.length === 1, "bob to receive");
  expect(bob.received[0]).toMatchObject({ text: "hello over mls", verified: true, from: a });
  await bob.session.sendText(a!, "and back");
  await waitFor(() => alice.received.length === 1, "alice to receive");
  expect(alice.texts()).toEqual(["and back"]);
  const stored = await bodies(a!, b!);
  // the commit that made the group (with its welcome), then two application messages
  expect(stored.map((s) => s[0])).toEqual([MLS, MLS, MLS]);
  expect(stored.map((s) => s[1])).toEqual([2, 1, 1]);
  // the sender reads its own message back from its copy (its MLS key for it is spent)
  expect((await alice.session.history(b!)).map((m) => m.text)).toEqual(["hello over mls", "and back"]);
  console.log(`mls dm: commit+welcome ${stored[0]!.length} B, application message "hello over mls" ${stored[1]!.length} B`);
});

test("the server stores one commit per epoch: a second from the same epoch is E_MLS_STALE_COMMIT", async () => {
  const [a, b] = await users("ep", "epb");
  const link = await rawLink(cluster.servers[1]!.addr, a!);
  try {
    const first = await link.request("mls.commit", { to: b!, cmid: "c1", epoch: 0, body: new Uint8Array([MLS, 2, 0]) });
    expect(first).toMatchObject({ seq: 1, epoch: 1, duplicate: false });
    expect(await refusal(link.request("mls.commit", { to: b!, cmid: "c2", epoch: 0, body: new Uint8Array([MLS, 2, 1]) }))).toBe("E_MLS_STALE_COMMIT");
    expect(await refusal(link.request("mls.commit", { to: b!, cmid: "c3", epoch: 5, body: new Uint8Array([MLS, 2, 1]) }))).toBe("E_MLS_STALE_COMMIT");
    // a retry of the winner is its first copy, not a second commit
    expect(await link.request("mls.commit", { to: b!, cmid: "c1", epoch: 0, body: new Uint8Array([MLS, 2, 0]) })).toMatchObject({ seq: 1, duplicate: true });
    expect(await link.request("mls.commit", { to: b!, cmid: "c4", epoch: 1, body: new Uint8Array([MLS, 2, 2]) })).toMatchObject({ seq: 2, epoch: 2 });
    expect(await link.request("mls.epoch", { to: b! })).toMatchObject({ epoch: 2 });
  } finally {
    link.close();
  }
});

test("when both sides send first at once, one group wins and both end up on it", async () => {
  const [a, b] = await users("race", "raceb");
  const alice = await connect(a!);
  const bob = await connect(b!);
  await published(a!);
  await published(b!);
  await Promise.all([alice.session.sendText(b!, "from alice 1"), bob.session.sendText(a!, "from bob 1")]);
  await waitFor(() => bob.received.length === 1 && alice.received.length === 1, "both first messages");
  expect(bob.texts()).toEqual(["from alice 1"]);
  expect(alice.texts()).toEqual(["from bob 1"]);
  // one group: exactly one commit was stored, and what follows is MLS both ways
  await alice.session.sendText(b!, "from alice 2");
  await bob.session.sendText(a!, "from bob 2");
  await waitFor(() => bob.received.length === 2 && alice.received.length === 2, "both second messages");
  expect(bob.texts()).toEqual(["from alice 1", "from alice 2"]);
  expect(alice.texts()).toEqual(["from bob 1", "from bob 2"]);
  const stored = await bodies(a!, b!);
  expect(stored.filter((s) => s[0] === MLS && s[1] === 2).length).toBe(1);
  expect(stored.slice(-2).map((s) => s[0])).toEqual([MLS, MLS]);
});

test("a device keeps its groups in store.db: after a restart it reads the next MLS message", async () => {
  const [a, b] = await users("keep", "keepb");
  const alice = await connect(a!);
  const bob = await connect(b!);
  await published(a!);
  await published(b!);
  await alice.session.sendText(b!, "before the restart");
  await waitFor(() => bob.received.length === 1, "bob to receive");
  await bob.session.close();
  await alice.session.sendText(b!, "while bob is away");
  await alice.session.close();
  const again = await connect(b!);
  expect(again.received.map((m) => m.problem ?? m.text)).toEqual(["while bob is away"]);
  expect(again.received[0]!.verified).toBe(true);
  expect((await bodies(a!, b!)).map((s) => s[0])).toEqual([MLS, MLS, MLS]);
  // what bob read before the restart comes from his copy, not from spent keys
  expect((await again.session.history(a!)).map((m) => m.text)).toEqual(["before the restart", "while bob is away"]);
});

test("a new device of the account is added by the next sender, and reads from then on, but not before (forward secrecy)", async () => {
  const [a, b] = await users("nd", "ndb");
  const alice = await connect(a!);
  const bob = await connect(b!);
  await published(a!);
  await published(b!);
  await alice.session.sendText(b!, "before the new device");
  await waitFor(() => bob.received.length === 1, "bob to receive");
  // bob's second device: another home, its own device id and MLS key
  const laptopHome = mkdtempSync(join(tmpdir(), "chatterbox-mls-laptop-"));
  homes.push(laptopHome);
  const laptop = await connectPersistent(cluster.balancerAddr, laptopHome, b!);
  open.push(laptop);
  process.env.CHATTERBOX_HOME = fileHome;
  await until(async () => {
    const [row] = await db.sql`select count(*)::int as n from devices d join users u on u.id = d.user_id join key_packages k on k.device_id = d.id
                               where u.name = ${b!} and k.last_resort`;
    return row!.n === 2;
  }, "the laptop to publish");
  // alice's client asks for lists again at most every 10 s; a restarted one asks at once (and keeps its group)
  await alice.session.close();
  const alice2 = await connect(a!);
  await alice2.session.sendText(b!, "after the new device");
  await waitFor(() => laptop.received.length === 1 && bob.received.length === 2, "both of bob's devices to receive");
  expect(laptop.received.map((m) => m.problem ?? m.text)).toEqual(["after the new device"]);
  expect(bob.texts()).toEqual(["before the new device", "after the new device"]);
  // what came before it joined is not readable on the laptop, and says so (sent before its welcome)
  const history = await laptop.session.history(a!);
  expect(history.map((m) => [m.text, m.code])).toEqual([
    ["", "E_MLS_BEFORE_JOIN"],
    ["after the new device", undefined],
  ]);
});

test("a conversation with a device that published no MLS keys stays on envelopes; its envelopes stay readable after it moves", async () => {
  const [a, c] = await users("migr", "migc");
  process.env.CHATTERBOX_MLS = "off";
  const carolOld = await connect(c!).finally(() => delete process.env.CHATTERBOX_MLS);
  const alice = await connect(a!);
  await published(a!);
  await alice.session.sendText(c!, "to the old client");
  await waitFor(() => carolOld.received.length === 1, "carol to receive");
  expect(carolOld.texts()).toEqual(["to the old client"]);
  expect((await bodies(a!, c!)).map((s) => s[0])).toEqual([ENVELOPE]);
  await carolOld.session.close();
  await alice.session.close();

  // carol's device updates (publishes at login); alice's next session moves the conversation to MLS
  const carol = await connect(c!);
  await published(c!);
  const alice2 = await connect(a!);
  await alice2.session.sendText(c!, "now over mls");
  await waitFor(() => carol.received.length === 1, "carol to receive over mls");
  expect(carol.texts()).toEqual(["now over mls"]);
  expect((await bodies(a!, c!)).map((s) => s[0])).toEqual([ENVELOPE, MLS, MLS]);
  expect((await carol.session.history(a!)).map((m) => [m.text, m.verified])).toEqual([
    ["to the old client", true],
    ["now over mls", true],
  ]);
});

test("a revoked device is removed by the next message of its account's other device, its kept state reads nothing after, and an older list replayed by the server does not bring it back", async () => {
  const [a, b] = await users("rv", "rvb");
  const alice = await connect(a!);
  const phone = await connect(b!);
  const laptopHome = mkdtempSync(join(tmpdir(), "chatterbox-mls-revoked-"));
  homes.push(laptopHome);
  const laptop = await connectPersistent(cluster.balancerAddr, laptopHome, b!);
  process.env.CHATTERBOX_HOME = fileHome;
  await until(async () => {
    const [row] = await db.sql`select count(*)::int as n from devices d join users u on u.id = d.user_id join key_packages k on k.device_id = d.id
                               where u.name = ${b!} and k.last_resort`;
    return row!.n === 2;
  }, "both of bob's devices to publish");
  await published(a!);
  await alice.session.sendText(b!, "to both devices");
  await waitFor(() => laptop.received.length === 1 && phone.received.length === 1, "both devices to receive");

  const [{ data: oldList }] = (await db.sql`select l.data from device_lists l join users u on u.id = l.user_id where u.name = ${b!}`) as unknown as [{ data: Uint8Array }];
  const laptopId = (await phone.session.devices()).find((d) => !d.current)!.id;
  await phone.session.revokeDevice(laptopId);
  await waitFor(() => laptop.ended !== undefined, "the laptop's session to end");
  await laptop.session.close();
  await phone.session.sendText(a!, "the laptop is gone");
  await waitFor(() => alice.received.length === 1, "alice to receive");
  expect(alice.texts()).toEqual(["the laptop is gone"]);
  await alice.session.sendText(b!, "only the phone reads this");
  await waitFor(() => phone.received.length === 2, "the phone to receive");

  // what the server stored after the first message: the phone's commit (removing the laptop), then two messages
  const stored = await bodies(a!, b!);
  expect(stored.map((s) => [s[0], s[1]])).toEqual([[MLS, 2], [MLS, 1], [MLS, 2], [MLS, 1], [MLS, 1]]);
  // the laptop's state as it kept it on disk, with every check of ours bypassed
  const { Database } = await import("bun:sqlite");
  const file = new Database(join(laptopHome, b!, "store.db"), { readonly: true });
  const row = file.query("select state from mls_groups").get() as { state: Uint8Array };
  file.close();
  const kept = new Uint8Array(row.state);
  const { attackerDecrypt } = await import("./support/mls.ts");
  const { parseMlsBody } = await import("../client/mls/body");
  for (const body of stored.slice(3)) {
    const parsed = parseMlsBody(body);
    expect(parsed.type).toBe("application");
    expect(await attackerDecrypt(kept, (parsed as { message: Uint8Array }).message)).toBeUndefined();
  }
  // and the commit it would need removes it
  const { DeviceGroup } = await import("../crypto/mls/index.ts");
  // (trusting every device but the laptop itself, which bob's new list leaves out: a member removes only what its owner no longer lists)
  const probe = await DeviceGroup.restore(kept, { isTrusted: () => true });
  const self = probe.members().find((m) => m.leaf === probe.ownLeaf)!;
  const restored = await DeviceGroup.restore(kept, { isTrusted: (d) => d.deviceId !== self.deviceId });
  const removal = await restored.receive((parseMlsBody(stored[2]!) as { commit: Uint8Array }).commit);
  expect(removal).toMatchObject({ kind: "commit", removedSelf: true });

  // a hostile server brings the laptop back: un-revokes it and serves bob's older list (naming it) to alice's
  // restarted client, which remembers the newer one: refused, nothing re-added
  await db.sql`update device_lists set data = ${oldList}, version = 1 where user_id = (select id from users where name = ${b!})`;
  await db.sql`update devices set revoked_at = null where key = ${laptopId}`;
  await alice.session.close();
  const alice2 = await connect(a!);
  await alice2.session.sendText(b!, "after the replayed list");
  await waitFor(() => phone.received.length === 3, "the phone to receive");
  expect((await bodies(a!, b!)).slice(5).map((s) => s[1])).toEqual([1]);
});

test("after 100 messages a device updates its leaf (a commit with a fresh key) before its next one, and the other side follows", async () => {
  const [a, b] = await users("up", "upb");
  const alice = await connect(a!);
  const bob = await connect(b!);
  await published(a!);
  await published(b!);
  for (let i = 1; i <= 101; i++) await alice.session.sendText(b!, `message ${i}`);
  await waitFor(() => bob.received.length === 101, "bob to receive all");
  expect(bob.received.every((m, i) => m.verified && m.text === `message ${i + 1}`)).toBe(true);
  const kinds = (await bodies(a!, b!)).map((s) => s[1]);
  // the group's commit, 100 messages, the update, the 101st
  expect(kinds.length).toBe(103);
  expect(kinds.flatMap((k, i) => (k === 2 ? [i] : []))).toEqual([0, 101]);
  // and bob, on the new epoch, still writes back
  await bob.session.sendText(a!, "still here");
  await waitFor(() => alice.received.length === 1, "alice to receive");
  expect(alice.texts()).toEqual(["still here"]);
});

test("with the opt-in history backup on, a new device of the account reads the MLS history from before it existed", async () => {
  const [a, b] = await users("hb", "hbb");
  const alice = await connect(a!);
  alice.session.setHistoryBackup(true);
  const bob = await connect(b!);
  await published(a!);
  await published(b!);
  await alice.session.sendText(b!, "backed up, mine");
  await bob.session.sendText(a!, "backed up, bob's");
  await waitFor(() => alice.received.length === 1, "alice to receive");
  await alice.session.close();
  // sealed under the account's key: the server holds bytes it cannot read
  const rows = await db.sql`select h.data from history_backups h join users u on u.id = h.user_id where u.name = ${a!}`;
  expect(rows.length).toBeGreaterThan(0);
  expect(rows.every((r) => !Buffer.from(r.data).includes(Buffer.from("backed up")))).toBe(true);

  const newHome = mkdtempSync(join(tmpdir(), "chatterbox-mls-history-"));
  homes.push(newHome);
  const fresh = await connectPersistent(cluster.balancerAddr, newHome, a!);
  open.push(fresh);
  process.env.CHATTERBOX_HOME = fileHome;
  await until(async () => (await fresh.session.history(b!)).filter((m) => m.verified).length === 2, "the new device to restore the backup");
  expect((await fresh.session.history(b!)).map((m) => [m.from, m.text])).toEqual([
    [a!, "backed up, mine"],
    [b!, "backed up, bob's"],
  ]);

  // off (the default), a new device reads none of it
  const [c] = await users("hbc");
  const carol = await connect(c!);
  await published(c!);
  const bob2 = await connect(b!);
  await bob2.session.sendText(c!, "not backed up");
  await waitFor(() => carol.received.length === 1, "carol to receive");
  await carol.session.close();
  const carolHome = mkdtempSync(join(tmpdir(), "chatterbox-mls-nohistory-"));
  homes.push(carolHome);
  const carolNew = await connectPersistent(cluster.balancerAddr, carolHome, c!);
  open.push(carolNew);
  process.env.CHATTERBOX_HOME = fileHome;
  // carol's new device holds no group for the conversation and never did: from before it joined
  expect((await carolNew.session.history(b!)).map((m) => [m.text, m.code])).toEqual([["", "E_MLS_BEFORE_JOIN"]]);
  expect((await db.sql`select count(*)::int as n from history_backups h join users u on u.id = h.user_id where u.name = ${c!}`)[0]!.n).toBe(0);
});
