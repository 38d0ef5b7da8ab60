// Forward secrecy, post-compromise security and removal, each shown with a state an attacker kept:
// the attacker bypasses every check of ours (tests/support/mls.ts), so only missing keys can stop it.
import { expect, test } from "bun:test";
import { attackerDecrypt, conversation, read, text, World } from "./support/mls.ts";

test("forward secrecy: a state taken after a message was read cannot decrypt it once the epoch moved on", async () => {
  const world = new World();
  world.account("alice");
  world.account("bob");
  const { log, groups } = await conversation(world, [world.device("alice"), world.device("bob")]);
  const [alice, bob] = groups as [NonNullable<(typeof groups)[0]>, NonNullable<(typeof groups)[0]>];

  const secret = await alice.encrypt(text("the launch code is 0000"));
  log.append(secret, alice);
  const beforeReading = bob.save();
  // the attacker's tool works: a state that still holds the key reads the message
  expect(await attackerDecrypt(beforeReading, secret)).toBe("the launch code is 0000");

  expect((await log.deliver(bob)).map((r) => (r instanceof Error ? r.message : read(r)))).toEqual(["the launch code is 0000"]);
  // the message key is deleted as soon as it is used
  expect(await attackerDecrypt(bob.save(), secret)).toBeUndefined();

  // a message of the same epoch that bob never read (lost on the way): only the epoch's keys could open it
  const unread = await alice.encrypt(text("never delivered"));
  const atThatEpoch = bob.save();
  expect(await attackerDecrypt(atThatEpoch, unread)).toBe("never delivered");

  for (const g of [alice, bob, alice]) {
    log.append((await g.update()).commit);
    await log.deliverAll([alice, bob]);
  }
  expect(bob.epoch).toBe(4n);
  expect(await attackerDecrypt(bob.save(), secret)).toBeUndefined();
  expect(await attackerDecrypt(alice.save(), secret)).toBeUndefined();
  expect(await attackerDecrypt(bob.save(), unread)).toBeUndefined();
  await expect(bob.receive(unread)).rejects.toMatchObject({ reason: "E_MLS_EPOCH" });
});

test("post-compromise security: a stolen state stops decrypting after the victim's update", async () => {
  const world = new World();
  for (const u of ["alice", "bob", "carol"]) world.account(u);
  const { log, groups } = await conversation(world, [world.device("alice"), world.device("bob"), world.device("carol")]);
  const [alice, bob, carol] = groups as [NonNullable<(typeof groups)[0]>, NonNullable<(typeof groups)[0]>, NonNullable<(typeof groups)[0]>];

  const stolen = bob.save();
  const before = await alice.encrypt(text("read by the thief"));
  log.append(before, alice);
  await log.deliverAll([alice, bob, carol]);
  expect(await attackerDecrypt(stolen, before)).toBe("read by the thief");

  const { commit } = await bob.update();
  log.append(commit);
  await log.deliverAll([alice, bob, carol]);

  // the thief cannot follow the victim's own commit: its new path secrets were sealed to the others only
  const { DeviceGroup } = await import("../crypto/mls/index.ts");
  const thief = await DeviceGroup.restore(stolen, { isTrusted: () => true });
  await thief.receive(before).catch(() => undefined);
  await expect(thief.receive(commit)).rejects.toThrow();
  expect(thief.epoch).toBe(bob.epoch - 1n);

  const after = await alice.encrypt(text("not for the thief"));
  log.append(after, alice);
  expect((await log.deliver(carol)).map((r) => (r instanceof Error ? r.message : read(r)))).toEqual(["not for the thief"]);
  expect(await attackerDecrypt(stolen, after)).toBeUndefined();
  expect(await attackerDecrypt(thief.save(), after)).toBeUndefined();
});

test("removal: a removed device's kept state cannot decrypt what follows, and its group says it is out", async () => {
  const world = new World();
  for (const u of ["alice", "bob", "carol"]) world.account(u);
  const { log, groups } = await conversation(world, [world.device("alice"), world.device("bob"), world.device("carol")]);
  const [alice, bob, carol] = groups as [NonNullable<(typeof groups)[0]>, NonNullable<(typeof groups)[0]>, NonNullable<(typeof groups)[0]>];

  const kept = carol.save();
  log.append((await alice.remove([{ user: "carol", deviceId: "carol-d1" }])).commit);
  await log.deliverAll([alice, bob]);
  const [seen] = await log.deliver(carol);
  expect(seen).toMatchObject({ kind: "commit", removedSelf: true });
  expect(alice.members().map((m) => m.user)).toEqual(["alice", "bob"]);

  const later = await bob.encrypt(text("after carol left"));
  log.append(later, bob);
  expect((await log.deliver(alice)).map((r) => (r instanceof Error ? r.message : read(r)))).toEqual(["after carol left"]);
  const [refused] = await log.deliver(carol);
  expect(refused).toMatchObject({ reason: "E_MLS_REMOVED" });
  expect(await attackerDecrypt(kept, later)).toBeUndefined();
  expect(await attackerDecrypt(carol.save(), later)).toBeUndefined();
});

test("a revoked device is shown as such until it is removed, and is cut off after its removal", async () => {
  const world = new World();
  world.account("alice");
  const bobAccount = world.account("bob", 2);
  const { log, groups } = await conversation(world, [world.device("alice"), world.device("bob", 1), world.device("bob", 2)]);
  const [alice, bob1, bob2] = groups as [NonNullable<(typeof groups)[0]>, NonNullable<(typeof groups)[0]>, NonNullable<(typeof groups)[0]>];

  // bob revokes his second device: his identity signs a list without it, and the clients take it in
  bobAccount.devices.pop();
  world.publish(bobAccount);

  log.append(await bob2.encrypt(text("from the revoked device")), bob2);
  for (const g of [alice, bob1]) expect((await log.deliver(g))[0]).toMatchObject({ reason: "E_MLS_UNTRUSTED_MEMBER" });

  const kept = bob2.save();
  log.append((await alice.remove([{ user: "bob", deviceId: "bob-d2" }])).commit);
  await log.deliverAll([alice, bob1]);
  expect(alice.members().map((m) => m.deviceId)).toEqual(["alice-d1", "bob-d1"]);
  const later = await alice.encrypt(text("bob's phone is gone"));
  log.append(later, alice);
  expect((await log.deliver(bob1)).map((r) => (r instanceof Error ? r.message : read(r)))).toEqual(["bob's phone is gone"]);
  expect(await attackerDecrypt(kept, later)).toBeUndefined();
});
