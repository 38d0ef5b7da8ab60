// A device that joins by a welcome checks who made the add: the welcome's GroupInfo is signed by the
// committer's leaf, and only an admin of the group's own list (or the joiner's own account, adding a
// device of its own) may add anyone. A welcome from a non-admin's commit, or one the server made with a
// device of its own, is detected by the joiner; one with a leaf no identity listed is refused outright.
// And the group's first admin list is its creator's signed word (crypto/mls/origin.ts), which no commit changes.
import { expect, test } from "bun:test";
import { createCommit, decodeGroupState } from "ts-mls";
import { clientConfig } from "../crypto/mls/config.ts";
import { decodeKeyPackage, DeviceGroup, joinDoubt, makeKeyPackage, mlsSuite, newMlsDevice, signOrigin, verifyOrigin, type DeviceListBook, type GroupRoles } from "../crypto/mls/index.ts";
import { rolesExtension } from "../crypto/mls/roles.ts";
import { TrustGate } from "../crypto/mls/trust.ts";
import { encodeMessage, encodeWelcome } from "../crypto/mls/wire.ts";
import { text, World } from "./support/mls.ts";

const ADMINS: GroupRoles = { kind: "admins", admins: ["alice"] };

/** A patched client: commits adds from a saved state without the roles check every honest client makes. */
async function rogueAdd(saved: Uint8Array, trust: DeviceListBook, packages: Uint8Array[]): Promise<{ commit: Uint8Array; welcome: Uint8Array }> {
  const cs = await mlsSuite();
  const state = { ...decodeGroupState(saved, 0)![0], clientConfig: clientConfig(new TrustGate(trust)) };
  const extraProposals = packages.map((p) => ({ proposalType: "add" as const, add: { keyPackage: decodeKeyPackage(p) } }));
  const r = await createCommit({ state, cipherSuite: cs }, { extraProposals, ratchetTreeExtension: true });
  return { commit: encodeMessage(r.commit), welcome: encodeWelcome(r.welcome!) };
}

async function aliceAndBob(world: World) {
  const alice = await DeviceGroup.create(text(`g-${crypto.randomUUID()}`), world.device("alice"), world.book(), ADMINS);
  const bobPackage = await makeKeyPackage(world.device("bob"));
  const out = await alice.add([bobPackage.encoded]);
  await alice.receive(out.commit);
  const bob = await DeviceGroup.join(out.welcome!, bobPackage, world.book());
  return { alice, bob, bobJoin: bob.joinedBy };
}

test("a joiner added by an admin's commit trusts the membership; one added by a non-admin's commit is told so", async () => {
  const world = new World();
  for (const u of ["alice", "carol", "dave"]) world.account(u);
  world.account("bob", 2);
  const { alice, bob, bobJoin } = await aliceAndBob(world);
  expect(bobJoin).toMatchObject({ user: "alice", deviceId: "alice-d1" });
  expect(joinDoubt(bob.roles, bobJoin!, "bob")).toBeUndefined();

  // bob is no admin: his patched client adds carol anyway
  const carolPackage = await makeKeyPackage(world.device("carol"));
  const forged = await rogueAdd(bob.save(), world.book(), [carolPackage.encoded]);
  const carol = await DeviceGroup.join(forged.welcome, carolPackage, world.book());
  expect(carol.joinedBy).toMatchObject({ user: "bob", deviceId: "bob-d1" });
  expect(joinDoubt(carol.roles, carol.joinedBy!, "carol")).toContain("added by bob, who is not an admin");
  // and the admin's device refuses that commit: the doubt is never cleared by it
  await expect(alice.receive(forged.commit)).rejects.toMatchObject({ reason: "E_MLS_NOT_ADMIN" });

  // a non-admin adding a device of their own account is the one add the joiner can tell is allowed
  const bob2Package = await makeKeyPackage(world.device("bob", 2));
  const own = await bob.change([bob2Package.encoded], []);
  const bob2 = await DeviceGroup.join(own.welcome!, bob2Package, world.book());
  expect(joinDoubt(bob2.roles, bob2.joinedBy!, "bob")).toBeUndefined();
});

test("a welcome the server made is detected: with a leaf no identity listed it is refused, with an account of its own it is doubted", async () => {
  const world = new World();
  for (const u of ["alice", "carol", "mallory"]) world.account(u);
  const carolPackage = await makeKeyPackage(world.device("carol"));

  // the server makes a device key of its own under alice's name: ts-mls asks the device lists, which do not name it
  const fakeAlice = newMlsDevice({ user: "alice", deviceId: "alice-d1" });
  const lenient = { isTrusted: () => true };
  const byServer = await DeviceGroup.create(text("g-server"), fakeAlice, lenient, ADMINS);
  const out = await byServer.add([carolPackage.encoded]);
  await expect(DeviceGroup.join(out.welcome!, carolPackage, world.book())).rejects.toMatchObject({ reason: "E_MLS_UNTRUSTED_MEMBER" });

  // the server's own account (a real identity, listed, but no admin of the group it names)
  const again = await makeKeyPackage(world.device("carol"));
  const byMallory = await DeviceGroup.create(text("g-mallory"), world.device("mallory"), world.book(), ADMINS);
  const welcomed = await byMallory.add([again.encoded]);
  const carol = await DeviceGroup.join(welcomed.welcome!, again, world.book());
  expect(joinDoubt(carol.roles, carol.joinedBy!, "carol")).toContain("added by mallory, who is not an admin");
});

test("a non-admin adding another member's device is refused by every member and doubted by the joiner; the member's own device adding it is trusted by both", async () => {
  const world = new World();
  for (const u of ["alice", "bob"]) world.account(u);
  world.account("carol", 2);
  const { alice, bob } = await aliceAndBob(world);
  const carolPackage = await makeKeyPackage(world.device("carol"));
  const added = await alice.add([carolPackage.encoded]);
  await alice.receive(added.commit);
  await bob.receive(added.commit);
  const carol = await DeviceGroup.join(added.welcome!, carolPackage, world.book());

  // bob is no admin and not carol: his honest client does not add her second device, and a patched one's add of it is refused
  const second = await makeKeyPackage(world.device("carol", 2));
  await expect(bob.change([second.encoded], [])).rejects.toMatchObject({ reason: "E_MLS_NOT_ADMIN" });
  const forged = await rogueAdd(bob.save(), world.book(), [second.encoded]);
  for (const g of [alice, carol]) await expect(g.receive(forged.commit)).rejects.toMatchObject({ reason: "E_MLS_NOT_ADMIN" });
  const inFork = await DeviceGroup.join(forged.welcome, second, world.book());
  expect(joinDoubt(inFork.roles, inFork.joinedBy!, "carol")).toContain("added by bob, who is not an admin");

  // carol's own device adds it: every member takes that in, and the joiner trusts it
  const again = await makeKeyPackage(world.device("carol", 2));
  const own = await carol.change([again.encoded], []);
  for (const g of [alice, bob, carol]) expect((await g.receive(own.commit)).kind).toBe("commit");
  const carol2 = await DeviceGroup.join(own.welcome!, again, world.book());
  expect(joinDoubt(carol2.roles, carol2.joinedBy!, "carol")).toBeUndefined();
  expect(carol2.epochAuthenticator).toEqual(alice.epochAuthenticator);
});

test("a first admin list the server swapped is detected: the origin must be signed by the creator's pinned identity for this group and conversation, and no commit changes it", async () => {
  const world = new World();
  const aliceAccount = world.account("alice");
  const malloryAccount = world.account("mallory");
  world.account("bob");
  const label = "group:g";
  const where = (groupId: Uint8Array, conv = 7) => ({ groupId, label, conv });
  const groupId = text(`g-${crypto.randomUUID()}`).subarray(0, 16);

  // alice makes the group: her identity signs the first admin list with the group id and the conversation
  const origin = signOrigin(where(groupId), "alice", ["alice"], aliceAccount.identity.signPrivate);
  const alice = await DeviceGroup.create(groupId, world.device("alice"), world.book(), { kind: "admins", admins: ["alice"], origin });
  const bobPackage = await makeKeyPackage(world.device("bob"));
  const made = await alice.add([bobPackage.encoded]);
  await alice.receive(made.commit);
  const bob = await DeviceGroup.join(made.welcome!, bobPackage, world.book());
  const seen = bob.roles;
  expect(seen?.kind === "admins" && seen.origin?.creator).toBe("alice");
  expect(() => verifyOrigin((seen as { origin: typeof origin }).origin, where(bob.groupId), aliceAccount.identity.signPublic)).not.toThrow();

  // the server makes the group itself, with its own account as admin: it cannot sign as alice
  const swapped = signOrigin(where(groupId), "mallory", ["mallory"], malloryAccount.identity.signPrivate);
  const asAlice = { ...swapped, creator: "alice", firstAdmins: ["alice", "mallory"] };
  expect(() => verifyOrigin(asAlice, where(groupId), aliceAccount.identity.signPublic)).toThrow(expect.objectContaining({ reason: "E_MLS_ORIGIN" }));
  // nor reuse alice's genuine origin for another group, or another conversation
  expect(() => verifyOrigin(origin, where(text("another group id..").subarray(0, 16)), aliceAccount.identity.signPublic)).toThrow(expect.objectContaining({ reason: "E_MLS_ORIGIN" }));
  expect(() => verifyOrigin(origin, where(groupId, 8), aliceAccount.identity.signPublic)).toThrow(expect.objectContaining({ reason: "E_MLS_ORIGIN" }));

  // an admin's change of the admin list keeps the origin; a commit that replaces it is refused, an admin's too
  const promote = await alice.setAdmins(["alice", "bob"]);
  await alice.receive(promote.commit);
  await bob.receive(promote.commit);
  expect(bob.roles).toEqual({ kind: "admins", admins: ["alice", "bob"], origin });
  const cs = await mlsSuite();
  const state = { ...decodeGroupState(alice.save(), 0)![0], clientConfig: clientConfig(new TrustGate(world.book())) };
  const other = signOrigin(where(groupId), "alice", ["alice", "mallory"], aliceAccount.identity.signPrivate);
  const rewrite = await createCommit(
    { state, cipherSuite: cs },
    { extraProposals: [{ proposalType: "group_context_extensions", groupContextExtensions: { extensions: [rolesExtension({ kind: "admins", admins: ["alice", "bob"], origin: other })] } }] },
  );
  await expect(bob.receive(encodeMessage(rewrite.commit))).rejects.toMatchObject({ reason: "E_MLS_NOT_ADMIN" });
});
