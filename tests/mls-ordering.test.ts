// The server orders each conversation; MLS state follows that order exactly. One commit per epoch wins,
// the loser rebases, and a replayed or reordered message is refused rather than shown twice or out of place.
import { expect, test } from "bun:test";
import { DeviceGroup, decodeKeyPackage, isLastResort, makeKeyPackageSupply } from "../crypto/mls/index.ts";
import { conversation, read, text, World } from "./support/mls.ts";

async function threeMembers() {
  const world = new World();
  for (const u of ["alice", "bob", "carol"]) world.account(u);
  const { log, groups } = await conversation(world, [world.device("alice"), world.device("bob"), world.device("carol")]);
  return { world, log, groups: groups as [DeviceGroup, DeviceGroup, DeviceGroup] };
}

test("concurrent commits resolve to the one the server ordered first; the loser rebases and all agree", async () => {
  const { log, groups } = await threeMembers();
  const [alice, bob, carol] = groups;
  const epoch = alice.epoch;
  // both commit against the same epoch; the server's order puts bob's first
  const fromAlice = await alice.update();
  const fromBob = await bob.update();
  log.append(fromBob.commit);
  log.append(fromAlice.commit);

  const aliceSaw = await log.deliver(alice);
  expect(aliceSaw[0]).toMatchObject({ kind: "commit", own: false, lostOwn: true, epoch: epoch + 1n });
  expect(aliceSaw[1]).toMatchObject({ reason: "E_MLS_STALE_COMMIT" });
  const bobSaw = await log.deliver(bob);
  expect(bobSaw[0]).toMatchObject({ kind: "commit", own: true, epoch: epoch + 1n });
  expect(bobSaw[1]).toMatchObject({ reason: "E_MLS_STALE_COMMIT" });
  const carolSaw = await log.deliver(carol);
  expect(carolSaw[0]).toMatchObject({ kind: "commit", own: false, lostOwn: false });
  expect(carolSaw[1]).toMatchObject({ reason: "E_MLS_STALE_COMMIT" });
  for (const g of groups) expect(g.epochAuthenticator).toEqual(bob.epochAuthenticator);

  // alice rebases: she makes her update again on the epoch that won
  log.append((await alice.update()).commit);
  await log.deliverAll(groups);
  for (const g of groups) expect(g.epoch).toBe(epoch + 2n);
  for (const g of groups) expect(g.epochAuthenticator).toEqual(alice.epochAuthenticator);
  log.append(await carol.encrypt(text("one history")), carol);
  expect((await log.deliver(alice)).map((r) => (r instanceof Error ? r.message : read(r)))).toEqual(["one history"]);
  expect((await log.deliver(bob)).map((r) => (r instanceof Error ? r.message : read(r)))).toEqual(["one history"]);
});

test("an add that lost to a removal is made again, and the added device joins the epoch that won", async () => {
  const { world, log, groups } = await threeMembers();
  const [alice, bob, carol] = groups;
  world.account("dave");
  const [davePackage] = await makeKeyPackageSupply(world.device("dave"), 1);
  const lost = await alice.add([davePackage!.encoded]);
  log.append((await bob.remove([{ user: "carol", deviceId: "carol-d1" }])).commit);
  log.append(lost.commit);
  expect((await log.deliver(alice)).map((r) => (r instanceof Error ? (r as { reason?: string }).reason : r.kind))).toEqual(["commit", "E_MLS_STALE_COMMIT"]);
  await log.deliverAll([bob]);
  expect((await log.deliver(carol))[0]).toMatchObject({ kind: "commit", removedSelf: true });
  // the welcome of the losing commit leads nowhere the others are
  const orphan = await DeviceGroup.join(lost.welcome!, davePackage!, world.book());
  expect(orphan.epochAuthenticator).not.toEqual(alice.epochAuthenticator);

  const [again] = await makeKeyPackageSupply(world.device("dave"), 1);
  const rebased = await alice.add([again!.encoded]);
  log.append(rebased.commit);
  await log.deliverAll([alice, bob]);
  const dave = await DeviceGroup.join(rebased.welcome!, again!, world.book());
  expect(dave.epochAuthenticator).toEqual(alice.epochAuthenticator);
  expect(dave.members().map((m) => m.user).sort()).toEqual(["alice", "bob", "dave"]);
});

test("a replayed message, a reordered message, a replayed commit and a tampered one are refused", async () => {
  const { log, groups } = await threeMembers();
  const [alice, bob] = groups;
  const m1 = await alice.encrypt(text("one"));
  const m2 = await alice.encrypt(text("two"));
  const m3 = await alice.encrypt(text("three"));
  expect(read(await bob.receive(m1))).toBe("one");
  await expect(bob.receive(m1)).rejects.toMatchObject({ reason: "E_MLS_REPLAY" });
  expect(read(await bob.receive(m3))).toBe("three");
  await expect(bob.receive(m2)).rejects.toMatchObject({ reason: "E_MLS_REPLAY" });

  const { commit } = await alice.update();
  log.append(commit);
  await log.deliverAll(groups);
  await expect(bob.receive(commit)).rejects.toMatchObject({ reason: "E_MLS_STALE_COMMIT" });

  const m4 = await alice.encrypt(text("four"));
  const tampered = m4.slice();
  tampered[tampered.length - 5]! ^= 0x40;
  await expect(bob.receive(tampered)).rejects.toMatchObject({ reason: "E_MLS_DECRYPT" });
  await expect(bob.receive(new Uint8Array([1, 2, 3]))).rejects.toMatchObject({ reason: "E_MLS_FORMAT" });
  // the refusals cost bob nothing: the genuine message still opens
  expect(read(await bob.receive(m4))).toBe("four");
});

test("a message sent just before commits the server ordered first still opens two epochs on; one three epochs old does not", async () => {
  const { log, groups } = await threeMembers();
  const [alice, bob, carol] = groups;
  const late = await alice.encrypt(text("sent before the update"));
  const later = await alice.encrypt(text("two epochs on"));
  const older = await alice.encrypt(text("sent three epochs ago"));
  log.append((await bob.update()).commit);
  await log.deliverAll(groups);
  expect(read(await carol.receive(late))).toBe("sent before the update");
  log.append((await carol.update()).commit);
  await log.deliverAll(groups);
  expect(read(await carol.receive(later))).toBe("two epochs on");
  log.append((await alice.update()).commit);
  await log.deliverAll(groups);
  await expect(bob.receive(older)).rejects.toMatchObject({ reason: "E_MLS_EPOCH" });
});

test("a device's key package supply is one-time packages and one last-resort package, all parseable", async () => {
  const world = new World();
  world.account("erin");
  const supply = await makeKeyPackageSupply(world.device("erin"), 3);
  expect(supply.map((p) => p.lastResort)).toEqual([false, false, false, true]);
  expect(supply.map((p) => isLastResort(decodeKeyPackage(p.encoded)))).toEqual([false, false, false, true]);
  expect(new Set(supply.map((p) => Buffer.from(p.publicPackage.initKey).toString("hex"))).size).toBe(4);
});

test("a device joins with whichever package of its supply the welcome names, and refuses a welcome for none", async () => {
  const world = new World();
  world.account("alice");
  world.account("frank");
  const alice = await DeviceGroup.create(text("supply"), world.device("alice"), world.book());
  const supply = await makeKeyPackageSupply(world.device("frank"), 5);
  const { commit, welcome } = await alice.add([supply[3]!.encoded]);
  await alice.receive(commit);
  await expect(DeviceGroup.join(welcome!, [supply[0]!, supply[1]!], world.book())).rejects.toMatchObject({ reason: "E_MLS_FORMAT" });
  const frank = await DeviceGroup.join(welcome!, supply, world.book());
  expect(frank.epochAuthenticator).toEqual(alice.epochAuthenticator);
});

test("overlapping calls on one group run one at a time, in the order they were made", async () => {
  const { groups } = await threeMembers();
  const [alice, bob] = groups;
  const sent = await Promise.all(["a", "b", "c", "d"].map((t) => alice.encrypt(text(t))));
  const got = await Promise.all(sent.map((m) => bob.receive(m)));
  expect(got.map(read)).toEqual(["a", "b", "c", "d"]);
});
