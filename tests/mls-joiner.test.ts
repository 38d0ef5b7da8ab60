// A device that joins by a welcome checks who made the add: the welcome's GroupInfo is signed by the
// committer's leaf, and only an admin of the group's own list (or the joiner's own account, adding a
// device of its own) may add anyone. A welcome from a non-admin's commit, or one the server made with a
// device of its own, is detected by the joiner; one with a leaf no identity listed is refused outright.
import { expect, test } from "bun:test";
import { createCommit, decodeGroupState } from "ts-mls";
import { clientConfig } from "../crypto/mls/config.ts";
import { confirmsJoin, decodeKeyPackage, DeviceGroup, joinDoubt, makeKeyPackage, mlsSuite, newMlsDevice, type DeviceListBook, type GroupRoles } from "../crypto/mls/index.ts";
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

test("a doubted join is confirmed by the next commit an admin's device makes, and by no one else's", async () => {
  const world = new World();
  for (const u of ["alice", "bob"]) world.account(u);
  world.account("carol", 2);
  const { alice, bob } = await aliceAndBob(world);
  const carolPackage = await makeKeyPackage(world.device("carol"));
  const added = await alice.add([carolPackage.encoded]);
  await alice.receive(added.commit);
  await bob.receive(added.commit);
  // bob's reconcile adds carol's second device (honest, allowed: carol is in the group), and carol-d2 cannot tell
  const second = await makeKeyPackage(world.device("carol", 2));
  const byBob = await bob.change([second.encoded], []);
  await bob.receive(byBob.commit);
  await alice.receive(byBob.commit);
  const carol2 = await DeviceGroup.join(byBob.welcome!, second, world.book());
  expect(joinDoubt(carol2.roles, carol2.joinedBy!, "carol")).toContain("added by bob");

  const fromBob = await bob.update();
  await bob.receive(fromBob.commit);
  await alice.receive(fromBob.commit);
  const seenBob = await carol2.receive(fromBob.commit);
  expect(seenBob.kind === "commit" && confirmsJoin(carol2.roles, seenBob.committer!)).toBe(false);
  const fromAlice = await alice.update();
  const seenAlice = await carol2.receive(fromAlice.commit);
  expect(seenAlice.kind === "commit" && confirmsJoin(carol2.roles, seenAlice.committer!)).toBe(true);
});
