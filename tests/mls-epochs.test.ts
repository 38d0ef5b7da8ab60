/**
 * The server refuses an MLS application message from an epoch its
 * conversation has left (E_MLS_STALE_EPOCH), reading the epoch from the
 * message's clear header; the client takes the newer commit in and sends
 * again on the new epoch, nothing lost and the order kept.
 */
import { expect, setDefaultTimeout, test } from "bun:test";
import { Database as Sqlite } from "bun:sqlite";
import { join } from "node:path";
import type { Database } from "../db/connect";
import { mlsWorld } from "./support/mls-world";
import { applicationBody, commitBody, parseMlsBody } from "../client/mls/body";
import { DeviceGroup } from "../crypto/mls/index.ts";
import { clearEpoch } from "../crypto/mls/wire.ts";
import { applicationEpoch } from "../server/mls-epochs";
import { conversation, text, World } from "./support/mls.ts";
import { connectPersistent, uniqueName, until, waitFor, type Cluster, type TestUser } from "./support/cluster";

/** Logs `user` in again (a persistent device: same home) until it is on another server than `other`. */
async function apartFrom(_balancer: string, other: TestUser, user: TestUser, login: (name: string) => Promise<TestUser>): Promise<TestUser> {
  for (let attempt = 0; user.session.serverId === other.session.serverId; attempt++) {
    if (attempt === 6) throw new Error(`could not place ${user.name} apart from ${other.name}`);
    await user.session.close();
    open.splice(open.indexOf(user), 1);
    user = await login(user.name);
  }
  return user;
}

setDefaultTimeout(90_000);

let cluster: Cluster;
let db: Database;
const { open, home: fileHome, people, groupBodies } = mlsWorld("mls-epochs", 2, (c, d) => ((cluster = c), (db = d)));

async function person(name: string): Promise<TestUser> {
  const u = await connectPersistent(cluster.balancerAddr, fileHome, name);
  open.push(u);
  return u;
}

function savedState(user: string, label: string): Uint8Array {
  const file = new Sqlite(join(fileHome, user, "store.db"), { readonly: true });
  const row = file.query("select state from mls_groups where label = ?").get(label) as { state: Uint8Array };
  file.close();
  return new Uint8Array(row.state);
}

test("the epoch the server reads from a message's clear header is the one it was encrypted in; commits and envelopes have none", async () => {
  const world = new World();
  world.account("alice");
  world.account("bob");
  const { log, groups } = await conversation(world, [world.device("alice"), world.device("bob")]);
  const [alice, bob] = groups as [DeviceGroup, DeviceGroup];
  expect(applicationEpoch(applicationBody(await alice.encrypt(text("at one"))))).toBe(1n);
  const update = await bob.update();
  log.append(update.commit);
  await log.deliverAll([alice, bob]);
  expect(applicationEpoch(applicationBody(await alice.encrypt(text("at two"))))).toBe(2n);
  expect(clearEpoch(update.commit)).toEqual({ epoch: 1n, contentType: 3 });
  expect(applicationEpoch(commitBody(update.commit))).toBeUndefined();
  expect(applicationEpoch(Uint8Array.of(0x01, 0x01, 0, 1, 0, 2))).toBeUndefined();
  expect(applicationEpoch(Uint8Array.of(0x4d, 0x01, 0, 1, 0, 2, 0xff))).toBeUndefined();
  expect(applicationEpoch(new Uint8Array())).toBeUndefined();
});

test("a message from an epoch the conversation has left is refused with E_MLS_STALE_EPOCH and not stored; the server serves on", async () => {
  const [alice, bob, carol] = await people("ea", "eb", "ec");
  const group = uniqueName("e");
  await alice!.session.createGroup(group, [bob!.name]);
  await alice!.session.sendGroupText(group, "one");
  await waitFor(() => bob!.texts().includes("one"), "bob to read");
  // bob's device as it was at epoch 1 (a copy, as a slow or patched client would hold it)
  const old = await DeviceGroup.restore(savedState(bob!.name, `group:${group}`), { isTrusted: () => true });
  expect(old.epoch).toBe(1n);

  await alice!.session.changeGroup("add", group, [carol!.name]);
  const before = (await groupBodies(group)).length;
  const stale = applicationBody(await old.encrypt(text("from epoch one")));
  const refused = await bob!.session.call("send", { group, cmid: crypto.randomUUID(), epoch: 0, body: stale }).then(
    () => "accepted",
    (e: { code?: string }) => e.code,
  );
  // (the membership epoch of the request is the server's other check: whichever it is, the MLS one refuses)
  expect(["E_MLS_STALE_EPOCH", "E_STALE_MEMBERS"]).toContain(refused!);
  const { epoch } = (await bob!.session.groupMembers(group)) as { epoch: number };
  const again = await bob!.session.call("send", { group, cmid: crypto.randomUUID(), epoch, body: stale }).then(
    () => "accepted",
    (e: { code?: string }) => e.code,
  );
  expect(again).toBe("E_MLS_STALE_EPOCH");
  expect((await groupBodies(group)).length).toBe(before);

  // bob's own device took the commit in: its next message is on epoch 2, stored, and read by both
  await bob!.session.sendGroupText(group, "from epoch two");
  await waitFor(() => alice!.texts().includes("from epoch two") && carol!.texts().includes("from epoch two"), "alice and carol to read");
  const last = (await groupBodies(group)).at(-1)!;
  expect(applicationEpoch(last)).toBe(2n);
});

test("sends racing the admin's commits: a message sealed on an epoch a commit just ended is refused, sealed again on the new one, and all arrive, in order", async () => {
  const [alice, bob, carol, ...others] = await people("fa", "fb", "fc", "fd", "fe", "ff", "fg", "fh");
  const group = uniqueName("f");
  await alice!.session.createGroup(group, [bob!.name, carol!.name, ...others.map((u) => u.name)]);
  await alice!.session.sendGroupText(group, "start");
  await waitFor(() => bob!.texts().includes("start") && carol!.texts().includes("start"), "members to read");

  // each round the admin makes someone an admin (a commit) while bob sends; whether bob's device took the commit in
  // before it sealed is a race: when it had not, the server refuses the message and bob's client sends it again
  const sent: string[] = [];
  const sending: Promise<unknown>[] = [];
  for (const [i, member] of [carol!, ...others].entries()) {
    const texts = [`b${i}a`, `b${i}b`];
    sent.push(...texts);
    const promoting = alice!.session.changeGroup("promote", group, [member.name]);
    // a little later each round, so that some sends fall between the commit being stored and bob taking it in
    await Bun.sleep(i * 8);
    for (const t of texts) sending.push(bob!.session.sendGroupText(group, t));
    await promoting;
  }
  await Promise.all(sending);
  await waitFor(() => sent.every((t) => alice!.texts().includes(t) && carol!.texts().includes(t)), "alice and carol to read bob's messages");
  for (const u of [alice!, carol!]) {
    const got = u.received.filter((m) => m.group === group && sent.includes(m.text));
    expect(got.map((m) => m.text)).toEqual(sent);
    expect(got.every((m) => m.verified)).toBe(true);
  }
  // each stored message is from the epoch the group was at when it was stored, or (a send checked just
  // before a commit and stored just after it: the race PROTOCOL.md describes) the one before, whose keys the members keep
  let epoch = 0n;
  for (const b of await groupBodies(group)) {
    const parsed = parseMlsBody(b);
    if (parsed.type === "commit") epoch = clearEpoch(parsed.commit)!.epoch + 1n;
    else expect(epoch - applicationEpoch(b)!).toBeLessThanOrEqual(1n);
  }
  const retried = (bob!.session as unknown as { mls: { staleRetries: number } }).mls.staleRetries;
  console.log(`bob's sends refused as from an old epoch, then sent again: ${retried} of ${sent.length}`);
});

test("a device that sealed a message before it took in a commit stored meanwhile: the server refuses it, the device takes the commit in and sends it again, in order", async () => {
  const [alice, bob, carol] = await people("ka", "kb", "kc");
  const group = uniqueName("k");
  await alice!.session.createGroup(group, [bob!.name, carol!.name]);
  await alice!.session.sendGroupText(group, "start");
  await waitFor(() => bob!.texts().includes("start") && carol!.texts().includes("start"), "members to read");

  // bob's device is busy with the conversation (its MLS operations run one at a time, in order)
  type Lanes = { mls: { conversations: { slots: { serial(label: string, op: () => Promise<unknown>): Promise<unknown> } } } };
  let release!: () => void;
  const busy = new Promise<void>((r) => (release = r));
  void (bob!.session as unknown as Lanes).mls.conversations.slots.serial(`group:${group}`, () => busy);
  // it seals two messages behind that; meanwhile alice's commit is stored, and its delivery to bob queues behind them
  const sending = [bob!.session.sendGroupText(group, "sealed on epoch one"), bob!.session.sendGroupText(group, "and another")];
  await Bun.sleep(300);
  await alice!.session.changeGroup("promote", group, [carol!.name]);
  await Bun.sleep(300);
  release();
  await Promise.all(sending);

  await waitFor(() => ["sealed on epoch one", "and another"].every((t) => alice!.texts().includes(t) && carol!.texts().includes(t)), "alice and carol to read bob");
  for (const u of [alice!, carol!]) {
    const got = u.received.filter((m) => m.group === group && m.from === bob!.name);
    expect(got.map((m) => [m.text, m.verified])).toEqual([
      ["sealed on epoch one", true],
      ["and another", true],
    ]);
  }
  expect((bob!.session as unknown as { mls: { staleRetries: number } }).mls.staleRetries).toBeGreaterThanOrEqual(1);
  // stored after the commit, on the epoch it began
  const bodies = await groupBodies(group);
  expect(bodies.slice(-3).map((b) => b[1])).toEqual([2, 1, 1]);
  expect(bodies.slice(-2).map((b) => applicationEpoch(b))).toEqual([2n, 2n]);
});

test("a device that cannot take in the commit it is behind (here one no MLS client can read, stored by a patched client) gives the send up with E_MLS_STALE_EPOCH while no admin's device has made the group again (the only admin is away); nothing is stored", async () => {
  const [alice, bob, carol] = await people("la", "lb", "lc");
  const group = uniqueName("l");
  await alice!.session.createGroup(group, [bob!.name, carol!.name]);
  await alice!.session.sendGroupText(group, "start");
  await waitFor(() => bob!.texts().includes("start") && carol!.texts().includes("start"), "bob and carol to read");
  await alice!.session.close();
  const { epoch } = (await bob!.session.call("mls.epoch", { group })) as { epoch: number };
  await bob!.session.call("mls.commit", { group, cmid: crypto.randomUUID(), epoch, body: commitBody(Uint8Array.of(0, 1, 0, 2, 9, 9)) });
  await until(async () => (await groupBodies(group)).length === 3, "the unreadable commit to be stored");
  const before = (await groupBodies(group)).length;
  const outcome = await carol!.session.sendGroupText(group, "cannot go").then(
    () => "sent",
    (e: { code?: string }) => e.code,
  );
  expect(outcome).toBe("E_MLS_STALE_EPOCH");
  expect((await groupBodies(group)).length).toBe(before);
});

test("a patched admin client's own unreadable commit reaches its own device in the server's order like everyone's: that device stops the group on it and makes it again, and a message sent meanwhile arrives", async () => {
  const [alice, bob] = await people("ea", "eb");
  const group = uniqueName("e");
  await alice!.session.createGroup(group, [bob!.name]);
  await alice!.session.sendGroupText(group, "start");
  await waitFor(() => bob!.texts().includes("start"), "bob to read");
  const { epoch } = (await alice!.session.call("mls.epoch", { group })) as { epoch: number };
  await alice!.session.call("mls.commit", { group, cmid: crypto.randomUUID(), epoch, body: commitBody(Uint8Array.of(0, 1, 0, 2, 9, 9)) });
  // alice's own device refuses it where the server put it (shown as hers, not readable), and bob's likewise
  await waitFor(() => alice!.own.some((m) => m.group === group && m.code === "E_MLS_FORMAT"), "alice's device to take in its own stored commit");
  await bob!.session.sendGroupText(group, "after, from bob");
  await waitFor(() => alice!.texts().includes("after, from bob"), "alice to read bob after her device made the group again", 30_000);
  expect(alice!.received.filter((m) => m.text === "after, from bob").every((m) => m.verified)).toBe(true);
  const [row] = await db.sql`select g.epoch from mls_groups g join conversations c on c.id = g.conversation_id where c.kind = 'group' and c.name = ${group}`;
  // a new group (a reset starts at epoch 1), made by the only device that may: alice's
  expect(row!.epoch).toBeLessThan(epoch + 1);
});

test("the epoch gate is a cache the other servers' commits update: a stale send on one server is refused, and a fresh one accepted, without a database read", async () => {
  const [alice, bob] = await people("ga", "gb");
  // alice on one server, bob on the other
  const placed = await apartFrom(cluster.balancerAddr, alice!, bob!, (name) => person(name));
  const group = uniqueName("g");
  await alice!.session.createGroup(group, [placed.name]);
  await alice!.session.sendGroupText(group, "start");
  await waitFor(() => placed.texts().includes("start"), "bob to read");
  await placed.session.sendGroupText(group, "warm");
  await waitFor(() => alice!.texts().includes("warm"), "alice to read");
  const old = await DeviceGroup.restore(savedState(placed.name, `group:${group}`), { isTrusted: () => true });
  const onB = cluster.servers.find((s) => s.id === placed.session.serverId)!;
  const readsBefore = onB.mlsEpochReads();

  // a commit stored by alice's server; bob's server hears its epoch before bob's device gets the commit
  const seen = placed.received.length;
  await alice!.session.changeGroup("promote", group, [placed.name]);
  await waitFor(() => placed.received.length > seen, "bob to get the promotion");
  // the commit reaches bob over the same link as the announcement, after it
  await until(async () => (await DeviceGroup.restore(savedState(placed.name, `group:${group}`), { isTrusted: () => true })).epoch === 2n, "bob's device to take the commit in");
  const { epoch } = (await placed.session.groupMembers(group)) as { epoch: number };
  const stale = applicationBody(await old.encrypt(text("from epoch one")));
  const refused = await placed.session.call("send", { group, cmid: crypto.randomUUID(), epoch, body: stale }).then(
    () => "accepted",
    (e: { code?: string }) => e.code,
  );
  expect(refused).toBe("E_MLS_STALE_EPOCH");
  await placed.session.sendGroupText(group, "from epoch two");
  await waitFor(() => alice!.texts().includes("from epoch two"), "alice to read the fresh message");
  expect(applicationEpoch((await groupBodies(group)).at(-1)!)).toBe(2n);
  expect(onB.mlsEpochReads()).toBe(readsBefore);
});

test("while a live server is linked neither way (it could store a commit this one never hears of), every MLS send reads the epoch from the database", async () => {
  const [alice, bob] = await people("ga", "gb");
  const group = uniqueName("g");
  await alice!.session.createGroup(group, [bob!.name]);
  await alice!.session.sendGroupText(group, "warm");
  await waitFor(() => bob!.texts().includes("warm"), "bob to read");
  const server = cluster.servers.find((s) => s.id === alice!.session.serverId)!;
  await alice!.session.sendGroupText(group, "cached");
  const cached = server.mlsEpochReads();
  await alice!.session.sendGroupText(group, "still cached");
  expect(server.mlsEpochReads()).toBe(cached);

  // a server ChatDB calls live, at an address where nothing listens: no link either way
  const ghost = `ghost-${uniqueName("")}`;
  const closed = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } });
  const addr = `127.0.0.1:${closed.port}`;
  closed.stop(true);
  await db.sql`insert into servers (id, addr) values (${ghost}, ${addr})`;
  const beat = setInterval(() => void db.sql`update servers set heartbeat_at = now() where id = ${ghost}`.catch(() => {}), 200);
  try {
    // the server's next look at ChatDB (every second) finds it
    await Bun.sleep(2_500);
    const before = server.mlsEpochReads();
    await alice!.session.sendGroupText(group, "one");
    await alice!.session.sendGroupText(group, "two");
    expect(server.mlsEpochReads()).toBeGreaterThanOrEqual(before + 2);
  } finally {
    clearInterval(beat);
    await db.sql`delete from servers where id = ${ghost}`;
  }
  await waitFor(() => bob!.texts().includes("two"), "bob to read what was sent meanwhile");
});
