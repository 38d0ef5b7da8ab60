// Admins live in the MLS group itself (crypto/mls/roles.ts): every member checks each commit's committer
// against the group's own admin list, so neither the server's role table nor a patched member's client
// can make someone an admin or bring someone in.
import { expect, test } from "bun:test";
import { createCommit, decodeGroupState, type ClientState, type Proposal } from "ts-mls";
import { defaultClientConfig } from "ts-mls/clientConfig.js";
import { decodeKeyPackage, DeviceGroup, makeKeyPackage, mlsSuite, type GroupRoles, type MlsDevice } from "../crypto/mls/index.ts";
import { rolesExtension } from "../crypto/mls/roles.ts";
import { encodeMessage } from "../crypto/mls/wire.ts";
import { ConversationLog, read, text, World } from "./support/mls.ts";

/** A group chat made by its first device, with the roles given, and every other device joined from the welcome. */
async function groupChat(world: World, devices: MlsDevice[], roles: GroupRoles) {
  const log = new ConversationLog();
  const [creator, ...rest] = devices;
  const first = await DeviceGroup.create(text(`g-${crypto.randomUUID()}`), creator!, world.book(), roles);
  const packages = await Promise.all(rest.map((d) => makeKeyPackage(d)));
  const { commit, welcome } = await first.add(packages.map((p) => p.encoded));
  log.append(commit);
  await log.deliverAll([first]);
  const groups = [first];
  for (const p of packages) {
    const g = await DeviceGroup.join(welcome!, p, world.book());
    log.follow(g);
    groups.push(g);
  }
  return { log, groups };
}

/** A member's client patched to skip every check of its own: it commits whatever it is told. */
async function rogueCommit(saved: Uint8Array, proposals: Proposal[]): Promise<Uint8Array> {
  const cs = await mlsSuite();
  const state: ClientState = { ...decodeGroupState(saved, 0)![0], clientConfig: { ...defaultClientConfig, authService: { validateCredential: async () => true } } };
  const result = await createCommit({ state, cipherSuite: cs }, { extraProposals: proposals, ratchetTreeExtension: true });
  return encodeMessage(result.commit);
}

test("a non-admin's add and a non-admin making themselves admin are refused by every member; the group stays in step", async () => {
  const world = new World();
  for (const u of ["alice", "bob", "carol", "dave"]) world.account(u);
  const { log, groups } = await groupChat(world, [world.device("alice"), world.device("bob"), world.device("carol")], { kind: "admins", admins: ["alice"] });
  const [alice, bob, carol] = groups as [DeviceGroup, DeviceGroup, DeviceGroup];
  for (const g of groups) expect(g.roles).toEqual({ kind: "admins", admins: ["alice"] });
  expect(bob.isAdmin("bob")).toBe(false);

  // bob's honest client will not make the commit at all
  const davePackage = await makeKeyPackage(world.device("dave"));
  await expect(bob.add([davePackage.encoded])).rejects.toMatchObject({ reason: "E_MLS_NOT_ADMIN" });
  await expect(bob.setAdmins(["alice", "bob"])).rejects.toMatchObject({ reason: "E_MLS_NOT_ADMIN" });

  // a patched one does: an add of dave, and a commit that makes bob an admin
  const add = await rogueCommit(bob.save(), [{ proposalType: "add", add: { keyPackage: decodeKeyPackage(davePackage.encoded) } }]);
  log.append(add);
  for (const g of [alice, carol]) {
    const [seen] = await log.deliver(g);
    expect(seen).toMatchObject({ reason: "E_MLS_NOT_ADMIN" });
    expect((seen as Error).message).toContain("bob is not an admin");
    expect(g.members().map((m) => m.user).sort()).toEqual(["alice", "bob", "carol"]);
    expect(g.epoch).toBe(1n);
  }
  const promote = await rogueCommit(bob.save(), [
    { proposalType: "group_context_extensions", groupContextExtensions: { extensions: [rolesExtension({ kind: "admins", admins: ["alice", "bob"] })] } },
  ]);
  log.append(promote);
  for (const g of [alice, carol]) {
    const [seen] = await log.deliver(g);
    expect(seen).toMatchObject({ reason: "E_MLS_NOT_ADMIN" });
    expect(g.roles).toEqual({ kind: "admins", admins: ["alice"] });
  }
  // and the honest members still read each other in the epoch before the forgeries
  const got = await carol.receive(await alice.encrypt(text("still us")));
  expect(read(got)).toBe("still us");
});

test("an admin's commit makes another admin, whose add every member then accepts; a member may still follow device lists: add their own devices, remove revoked ones", async () => {
  const world = new World();
  for (const u of ["alice", "bob", "carol", "dave"]) world.account(u);
  const bobAccount = world.account("bob", 2);
  const { log, groups } = await groupChat(world, [world.device("alice"), world.device("bob"), world.device("carol")], { kind: "admins", admins: ["alice"] });
  const [alice, bob, carol] = groups as [DeviceGroup, DeviceGroup, DeviceGroup];

  // a member adds another device of their own account (bob's second, on his signed list): allowed; carol adding it is not
  const second = await makeKeyPackage(bobAccount.devices[1]!);
  await expect(carol.add([second.encoded])).rejects.toMatchObject({ reason: "E_MLS_NOT_ADMIN" });
  const own = await bob.add([second.encoded]);
  log.append(own.commit);
  await log.deliverAll([alice, bob, carol]);
  expect(alice.members().filter((m) => m.user === "bob").length).toBe(2);

  // but not remove a device its owner still lists
  const bobLeaf = alice.members().find((m) => m.deviceId === "bob-d2")!.leaf;
  await expect(carol.change([], [bobLeaf])).rejects.toMatchObject({ reason: "E_MLS_NOT_ADMIN" });
  // once bob's identity revokes it, any member's commit may take it out
  bobAccount.devices.pop();
  world.publish(bobAccount);
  const removal = await carol.change([], [bobLeaf]);
  log.append(removal.commit);
  await log.deliverAll([alice, bob, carol]);
  expect(alice.members().filter((m) => m.user === "bob").length).toBe(1);

  // alice makes bob an admin, in the group's own state
  const promote = await alice.setAdmins(["alice", "bob"]);
  log.append(promote.commit);
  await log.deliverAll([alice, bob, carol]);
  for (const g of [alice, bob, carol]) expect(g.isAdmin("bob")).toBe(true);
  const dave = await makeKeyPackage(world.device("dave"));
  const add = await bob.add([dave.encoded]);
  log.append(add.commit);
  await log.deliverAll([alice, bob, carol]);
  for (const g of [alice, carol]) expect(g.members().map((m) => m.user)).toContain("dave");
  const daveGroup = await DeviceGroup.join(add.welcome!, dave, world.book());
  expect(daveGroup.roles).toEqual({ kind: "admins", admins: ["alice", "bob"] });
});

test("in a direct conversation no one adds a third person", async () => {
  const world = new World();
  for (const u of ["alice", "bob", "mallory"]) world.account(u);
  const { log, groups } = await groupChat(world, [world.device("alice"), world.device("bob")], { kind: "peers" });
  const [alice, bob] = groups as [DeviceGroup, DeviceGroup];
  const mallory = await makeKeyPackage(world.device("mallory"));
  await expect(bob.add([mallory.encoded])).rejects.toMatchObject({ reason: "E_MLS_NOT_ADMIN" });
  log.append(await rogueCommit(bob.save(), [{ proposalType: "add", add: { keyPackage: decodeKeyPackage(mallory.encoded) } }]));
  const [seen] = await log.deliver(alice);
  expect(seen).toMatchObject({ reason: "E_MLS_NOT_ADMIN" });
  expect(alice.members().map((m) => m.user).sort()).toEqual(["alice", "bob"]);
});
