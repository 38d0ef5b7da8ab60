// The server (or a member's patched client) cannot put a device into a conversation that its owner's
// identity never listed: the committer refuses it, every receiver refuses the commit, a joiner refuses the group.
import { expect, test } from "bun:test";
import { DeviceGroup, makeKeyPackage, newMlsDevice, signDeviceList, verifyDeviceList, DeviceListBook } from "../crypto/mls/index.ts";
import { conversation, text, World } from "./support/mls.ts";

test("a signed device list round-trips, and a changed byte, another identity or another user is refused", () => {
  const world = new World();
  const bob = world.account("bob", 2);
  const signed = world.signed.get("bob")!;
  const list = verifyDeviceList(signed, bob.identity.signPublic, "bob");
  expect(list.devices.map((d) => d.deviceId)).toEqual(["bob-d1", "bob-d2"]);
  expect(list.devices[1]!.mlsKey).toEqual(bob.devices[1]!.publicKey);

  const tampered = signed.slice();
  tampered[40]! ^= 1;
  expect(() => verifyDeviceList(tampered, bob.identity.signPublic, "bob")).toThrow(expect.objectContaining({ reason: "E_MLS_DEVICE_LIST" }));
  const mallory = world.account("mallory");
  expect(() => verifyDeviceList(signed, mallory.identity.signPublic, "bob")).toThrow(expect.objectContaining({ reason: "E_MLS_DEVICE_LIST" }));
  expect(() => verifyDeviceList(signed, bob.identity.signPublic, "mallory")).toThrow(expect.objectContaining({ reason: "E_MLS_DEVICE_LIST" }));
  expect(() => verifyDeviceList(new Uint8Array(10), bob.identity.signPublic, "bob")).toThrow(expect.objectContaining({ reason: "E_MLS_FORMAT" }));
});

test("an older device list is refused once a newer one was seen, so a revoked device cannot be replayed back", () => {
  const world = new World();
  const bob = world.account("bob", 2);
  const old = world.signed.get("bob")!;
  bob.devices.pop();
  world.publish(bob);
  const book = new DeviceListBook();
  book.accept("bob", world.signed.get("bob")!, bob.identity.signPublic);
  expect(() => book.accept("bob", old, bob.identity.signPublic)).toThrow(expect.objectContaining({ reason: "E_MLS_DEVICE_LIST" }));
  expect(book.isTrusted({ user: "bob", deviceId: "bob-d2" }, bob.devices[0]!.publicKey)).toBe(false);
  expect(book.get("bob")!.devices.map((d) => d.deviceId)).toEqual(["bob-d1"]);
});

test("the committer refuses a key package for a device missing from its owner's list, or with another key", async () => {
  const world = new World();
  world.account("alice");
  world.account("bob");
  const alice = await DeviceGroup.create(text("g"), world.device("alice"), world.book());
  // the server substitutes its own key under bob's device id, and invents a device bob never listed
  const substituted = await makeKeyPackage(newMlsDevice({ user: "bob", deviceId: "bob-d1" }));
  const invented = await makeKeyPackage(newMlsDevice({ user: "bob", deviceId: "bob-server-made" }));
  await expect(alice.add([substituted.encoded])).rejects.toMatchObject({ reason: "E_MLS_UNTRUSTED_MEMBER" });
  await expect(alice.add([invented.encoded])).rejects.toMatchObject({ reason: "E_MLS_UNTRUSTED_MEMBER" });
  await expect(alice.add([new Uint8Array([0, 1, 2, 3])])).rejects.toMatchObject({ reason: "E_MLS_FORMAT" });
  // and bob's real package is accepted
  const real = await makeKeyPackage(world.device("bob"));
  expect((await alice.add([real.encoded])).welcome).toBeInstanceOf(Uint8Array);
});

test("a forged add committed by a patched client is refused by every other member and by the joiner", async () => {
  const world = new World();
  for (const u of ["alice", "bob", "carol"]) world.account(u);
  const { log, groups } = await conversation(world, [world.device("alice"), world.device("bob")]);
  const [alice, bob] = groups as [DeviceGroup, DeviceGroup];
  // bob's client is patched to trust anything: it adds carol and a device bob's identity never listed
  const rogue = await DeviceGroup.restore(bob.save(), { isTrusted: () => true });
  const carolPackage = await makeKeyPackage(world.device("carol"));
  const forged = await makeKeyPackage(newMlsDevice({ user: "bob", deviceId: "bob-wiretap" }));
  const { commit, welcome } = await rogue.add([carolPackage.encoded, forged.encoded]);
  log.append(commit);

  const [seen] = await log.deliver(alice);
  expect(seen).toMatchObject({ reason: "E_MLS_UNTRUSTED_MEMBER" });
  expect((seen as Error).message).toContain("bob/bob-wiretap");
  expect(alice.epoch).toBe(1n);
  await expect(DeviceGroup.join(welcome!, carolPackage, world.book())).rejects.toMatchObject({ reason: "E_MLS_UNTRUSTED_MEMBER" });

  // the honest members stay together in the epoch before the forgery
  const after = await alice.encrypt(text("still just us"));
  const got = await bob.receive(after);
  expect(got.kind === "application" && new TextDecoder().decode(got.plaintext)).toBe("still just us");
});

test("a device list signed by someone else's identity cannot vouch for a device", () => {
  const world = new World();
  const bob = world.account("bob");
  const mallory = world.account("mallory");
  const fake = signDeviceList({ user: "bob", version: 99, issuedAt: Date.now(), devices: [{ deviceId: "bob-evil", mlsKey: mallory.devices[0]!.publicKey }] }, mallory.identity.signPrivate);
  const book = world.book();
  expect(() => book.accept("bob", fake, bob.identity.signPublic)).toThrow(expect.objectContaining({ reason: "E_MLS_DEVICE_LIST" }));
  expect(book.isTrusted({ user: "bob", deviceId: "bob-evil" }, mallory.devices[0]!.publicKey)).toBe(false);
});
