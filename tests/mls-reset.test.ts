/**
 * A conversation whose MLS group is stopped (a commit no member can take in
 * won its epoch at the server) is made again: the admin's device makes a new
 * group for the same people, the server orders it like a commit, every device
 * moves to it on its welcome, and what was refused meanwhile is sent again by
 * its sender's outbox. Real servers, real clients.
 */
import { expect, setDefaultTimeout, test } from "bun:test";
import type { Database } from "../db/connect";
import { commitBody, parseMlsBody } from "../client/mls/body";
import { clearHeader } from "../crypto/mls/wire.ts";
import { mlsWorld } from "./support/mls-world";
import { connectPersistent, uniqueName, until, waitFor, type Cluster, type TestUser } from "./support/cluster";

setDefaultTimeout(120_000);

let db: Database;
let cluster: Cluster;
const world = mlsWorld("mls-reset", 2, (c, d) => ((cluster = c), (db = d)));
const { people, groupBodies: bodies } = world;

type Lanes = { mls: { staleRetries: number; conversations: { slots: { serial(label: string, op: () => Promise<unknown>): Promise<unknown> } } } };
const mlsOf = (u: TestUser) => (u.session as unknown as Lanes).mls;

test("a group stopped by a commit no one can take in is made again by its admin's device; everyone chats on, and nothing sent meanwhile is lost", async () => {
  const [alice, bob, carol] = await people("ra", "rb", "rc");
  const group = uniqueName("r");
  await alice!.session.createGroup(group, [bob!.name, carol!.name]);
  await alice!.session.sendGroupText(group, "before");
  await waitFor(() => bob!.texts().includes("before") && carol!.texts().includes("before"), "bob and carol to read");
  const [first] = await bodies(group);
  const oldGroup = clearHeader(parseMlsBody(first!).type === "commit" ? (parseMlsBody(first!) as { commit: Uint8Array }).commit : first!)!.groupId;

  // alice's device is busy for a moment (its MLS operations run one at a time): nothing is made again before carol sends
  let release!: () => void;
  const busy = new Promise<void>((r) => (release = r));
  void mlsOf(alice!).conversations.slots.serial(`group:${group}`, () => busy);

  // bob's patched client stores a commit that no MLS client can read: it wins the epoch at the server
  const { epoch } = (await bob!.session.call("mls.epoch", { group })) as { epoch: number };
  await bob!.session.call("mls.commit", { group, cmid: crypto.randomUUID(), epoch, body: commitBody(Uint8Array.of(0, 1, 0, 2, 7, 7, 7)) });
  // carol's message is sealed on the stopped group: the server refuses it, and her outbox waits
  const during = carol!.session.sendGroupText(group, "sent while stopped");
  await until(async () => mlsOf(carol!).staleRetries > 0, "carol's send to be refused as from the stopped group");
  release();
  await during;

  await bob!.session.sendGroupText(group, "after, from bob");
  await alice!.session.sendGroupText(group, "after, from alice");
  const sent = new Map([
    [alice!, ["before", "after, from alice"]],
    [bob!, ["after, from bob"]],
    [carol!, ["sent while stopped"]],
  ]);
  const all = [...sent.values()].flat();
  const expected = (u: TestUser) => ["before", "sent while stopped", "after, from bob", "after, from alice"].filter((t) => !sent.get(u)!.includes(t));
  await waitFor(() => [alice!, bob!, carol!].every((u) => expected(u).every((t) => u.texts().includes(t))), "everyone to read everything", 30_000);
  for (const u of [alice!, bob!, carol!]) {
    const got = u.received.filter((m) => m.group === group && m.kind !== "system" && !m.control && !m.problem);
    // in the order sent, each once, verified; the one thing not shown is bob's unreadable commit, shown as such
    expect(got.map((m) => m.text)).toEqual(expected(u));
    expect(got.every((m) => m.verified)).toBe(true);
    if (u !== bob) expect(u.received.filter((m) => m.group === group && m.kind !== "system" && m.problem).map((m) => [m.from, m.code])).toEqual([[bob!.name, "E_MLS_FORMAT"]]);
  }
  expect(mlsOf(carol!).staleRetries).toBeGreaterThanOrEqual(1);
  expect(all.length).toBe(4);

  // the server holds one new group: a reset commit (the new group's epoch 0) after bob's, then messages on it
  const stored = await bodies(group);
  const resets = stored.map((b) => parseMlsBody(b)).filter((b) => b.type === "commit" && clearHeader(b.commit) && !Buffer.from(clearHeader(b.commit)!.groupId).equals(Buffer.from(oldGroup)));
  expect(resets.length).toBe(1);
  const [row] = await db.sql`select g.epoch, g.group_id from mls_groups g join conversations c on c.id = g.conversation_id where c.kind = 'group' and c.name = ${group}`;
  expect(Buffer.from(row!.group_id).equals(Buffer.from(oldGroup))).toBe(false);

  // what was made for the old group is stale at the server: a message on it, and a second reset of it
  const code = (p: Promise<unknown>) => p.then(() => "accepted", (e: { code?: string }) => e.code);
  const { epoch: membership } = (await bob!.session.groupMembers(group)) as { epoch: number };
  expect(await code(bob!.session.call("send", { group, cmid: crypto.randomUUID(), epoch: membership, body: stored[1]! }))).toBe("E_MLS_STALE_EPOCH");
  const now = (await bob!.session.call("mls.epoch", { group })) as { epoch: number };
  const again = stored.find((b) => parseMlsBody(b).type === "commit" && b !== stored[0] && clearHeader((parseMlsBody(b) as { commit: Uint8Array }).commit))!;
  expect(await code(bob!.session.call("mls.commit", { group, cmid: crypto.randomUUID(), epoch: now.epoch, reset: true, replaces: oldGroup, body: again }))).toBe("E_MLS_STALE_COMMIT");
});

type Internals = {
  mls: {
    group(name: string): Promise<unknown>;
    conversations: {
      slots: { serial(label: string, op: () => Promise<unknown>): Promise<unknown>; loaded(label: string): Promise<unknown> };
      resetNow(place: unknown, held: unknown): Promise<unknown>;
    };
  };
};

test("a reset by a member who is not an admin (a patched client, or the server's own account) is refused by every other member and shown; the admin's device makes the group again", async () => {
  const [alice, bob, carol] = await people("fa", "fb", "fc");
  const group = uniqueName("f");
  await alice!.session.createGroup(group, [bob!.name, carol!.name]);
  await alice!.session.sendGroupText(group, "before");
  await waitFor(() => bob!.texts().includes("before") && carol!.texts().includes("before"), "bob and carol to read");

  // bob's patched client makes the group again by itself (the honest client only resets as an admin)
  const inner = (bob!.session as unknown as Internals).mls;
  const label = `group:${group}`;
  const place = await inner.group(group);
  await inner.conversations.slots.serial(label, async () => inner.conversations.resetNow(place, await inner.conversations.slots.loaded(label)));

  await until(
    async () => [alice!, carol!].every((u) => u.received.some((m) => m.group === group && m.from === bob!.name && m.code === "E_MLS_NOT_ADMIN")),
    "alice and carol to refuse bob's reset",
  );
  const refusal = carol!.received.find((m) => m.group === group && m.code === "E_MLS_NOT_ADMIN")!;
  expect(refusal.problem).toContain("not an admin");

  // the server moved on to bob's group, which no honest member joined: alice's device makes it again
  await alice!.session.sendGroupText(group, "after, from alice");
  await carol!.session.sendGroupText(group, "after, from carol");
  await waitFor(() => bob!.texts().includes("after, from alice") && bob!.texts().includes("after, from carol") && alice!.texts().includes("after, from carol"), "everyone to read");
  for (const u of [bob!, carol!]) expect(u.received.filter((m) => m.text === "after, from alice").every((m) => m.verified)).toBe(true);
});

test("a direct conversation stopped by an unreadable commit is made again by either person's device, and both read on", async () => {
  const [alice, bob] = await people("da", "db");
  await alice!.session.sendText(bob!.name, "hello");
  await waitFor(() => bob!.texts().includes("hello"), "bob to read");
  await bob!.session.sendText(alice!.name, "hi");
  await waitFor(() => alice!.texts().includes("hi"), "alice to read");
  const { epoch } = (await bob!.session.call("mls.epoch", { to: alice!.name })) as { epoch: number };
  expect(epoch).toBeGreaterThan(0);
  await bob!.session.call("mls.commit", { to: alice!.name, cmid: crypto.randomUUID(), epoch, body: commitBody(Uint8Array.of(0, 1, 0, 2, 5)) });
  await alice!.session.sendText(bob!.name, "after, from alice");
  await bob!.session.sendText(alice!.name, "after, from bob");
  await waitFor(() => bob!.texts().includes("after, from alice") && alice!.texts().includes("after, from bob"), "both to read after the reset");
  expect(alice!.received.filter((m) => m.text === "after, from bob").every((m) => m.verified)).toBe(true);
  expect(bob!.received.filter((m) => m.text === "after, from alice").every((m) => m.verified)).toBe(true);
});

test("a reset adds a device whose one-time packages are used up by its last-resort one, says in the conversation which device it left out, and that device comes back once it has a package", async () => {
  const [alice, bob, carol] = await people("la", "lb", "lc");
  const group = uniqueName("l");
  await alice!.session.createGroup(group, [bob!.name, carol!.name]);
  await alice!.session.sendGroupText(group, "before");
  await waitFor(() => bob!.texts().includes("before") && carol!.texts().includes("before"), "bob and carol to read");

  // bob's device has only its last-resort package left on the server; carol's has none at all
  const packagesOf = (name: string) => db.sql`select k.last_resort from key_packages k join devices d on d.id = k.device_id join users u on u.id = d.user_id where u.name = ${name}`;
  await db.sql`delete from key_packages k using devices d, users u where k.device_id = d.id and d.user_id = u.id and u.name = ${bob!.name} and not k.last_resort`;
  await db.sql`delete from key_packages k using devices d, users u where k.device_id = d.id and d.user_id = u.id and u.name = ${carol!.name}`;
  expect((await packagesOf(bob!.name)).map((r) => r.last_resort)).toEqual([true]);

  // a patched client stops the group; alice's device makes it again at once
  const { epoch } = (await bob!.session.call("mls.epoch", { group })) as { epoch: number };
  await bob!.session.call("mls.commit", { group, cmid: crypto.randomUUID(), epoch, body: commitBody(Uint8Array.of(0, 1, 0, 2, 4)) });
  const line = (u: TestUser, text: string) => u.received.some((m) => m.group === group && m.kind === "system" && m.verified && m.text.includes(text));
  // where the reset came: alice's device says what it left out, bob's what it sees is gone, carol's that it is out
  await waitFor(() => line(alice!, `without ${carol!.name}'s device`) && line(bob!, `made again by ${alice!.name} without ${carol!.name}'s device`) && line(carol!, "without this device"), "everyone to be told carol's device was left out");
  // bob's device is in the new group, by its last-resort package (still held: it is reused, not handed out once)
  await bob!.session.sendGroupText(group, "after the reset");
  await waitFor(() => alice!.texts().includes("after the reset"), "alice to read bob on the new group");
  expect((await packagesOf(bob!.name)).map((r) => r.last_resort)).toEqual([true]);

  // carol's device logs in again and uploads packages; alice's next message adds it back
  await carol!.session.close();
  const carol2 = await connectPersistent(cluster.balancerAddr, world.home, carol!.name);
  world.open.push(carol2);
  await until(async () => (await packagesOf(carol!.name)).length > 1, "carol's device to upload packages");
  await alice!.session.sendGroupText(group, "welcome back");
  await waitFor(() => carol2.texts().includes("welcome back"), "carol to read again");
  expect(carol2.received.filter((m) => m.text === "welcome back").every((m) => m.verified)).toBe(true);
  await bob!.session.sendGroupText(group, "from bob");
  await waitFor(() => carol2.texts().includes("from bob"), "carol to read bob");
});
