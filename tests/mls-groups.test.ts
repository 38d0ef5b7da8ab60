/**
 * Group chats over MLS through real servers: the creator's device makes the
 * group with every member's devices; an admin's add is an MLS commit, and a
 * member the server adds by itself (a row inserted into the database) is
 * shown as not added by every client and reads nothing; a removed member's
 * leaves go with the next message, and its kept state reads nothing after.
 */
import { expect, setDefaultTimeout, test } from "bun:test";
import { Database as Sqlite } from "bun:sqlite";
import { join } from "node:path";
import type { Database } from "../db/connect";
import { mlsWorld } from "./support/mls-world";
import { commitBody, parseMlsBody } from "../client/mls/body";
import { createCommit, decodeGroupState, type ClientState } from "ts-mls";
import { defaultClientConfig } from "ts-mls/clientConfig.js";
import { decodeKeyPackage, mlsSuite } from "../crypto/mls/index.ts";
import { encodeMessage, encodeWelcome } from "../crypto/mls/wire.ts";
import { attackerDecrypt } from "./support/mls.ts";
import { uniqueName, waitFor } from "./support/cluster";

setDefaultTimeout(90_000);

let db: Database;
const { home: fileHome, people, groupBodies } = mlsWorld("mls-groups", 2, (_cluster, d) => (db = d));

test("a group made by its admin is one MLS group; a member the server inserts by itself is shown as not added, and reads nothing", async () => {
  const [alice, bob, carol, mallory] = await people("ga", "gb", "gc", "gm");
  const group = uniqueName("g");
  await alice!.session.createGroup(group, [bob!.name, carol!.name]);
  await alice!.session.sendGroupText(group, "hello group");
  await waitFor(() => bob!.texts().includes("hello group") && carol!.texts().includes("hello group"), "both members to read");
  const kinds = (await groupBodies(group)).map((b) => [b[0], b[1]]);
  expect(kinds).toEqual([[0x4d, 2], [0x4d, 1]]);
  console.log(`mls group of 3: commit+welcome ${(await groupBodies(group))[0]!.length} B, message ${(await groupBodies(group))[1]!.length} B`);

  // the server adds mallory by itself: a row, and a new membership epoch, with no system message and no commit
  await db.sql`insert into members (conversation_id, user_id)
               select c.id, u.id from conversations c, users u where c.kind = 'group' and c.name = ${group} and u.name = ${mallory!.name}`;
  await db.sql`update conversations set epoch = epoch + 1 where kind = 'group' and name = ${group}`;

  await bob!.session.sendGroupText(group, "not for mallory");
  await waitFor(() => alice!.texts().includes("not for mallory") && carol!.texts().includes("not for mallory"), "the members to read");
  // mallory is sent the message by the server, but was never given its keys
  await waitFor(() => mallory!.received.some((m) => m.group === group && m.kind === "chat"), "mallory to be sent it");
  const got = mallory!.received.filter((m) => m.group === group && m.kind === "chat");
  // (what was sent before she was inserted, too: the server hands her the conversation from its start)
  expect(got.length).toBeGreaterThan(0);
  // her device never joined the group (no welcome came): to it, all of it was sent before it joined
  expect(got.map((m) => [m.text, m.verified, m.code])).toEqual(got.map(() => ["", false, "E_MLS_BEFORE_JOIN"]));
  // every member's client shows mallory as not added by an admin's commit
  for (const u of [alice!, bob!, carol!]) {
    const { members } = await u.session.groupMembers(group);
    expect(members.find((m) => m.name === mallory!.name)).toMatchObject({ unconfirmed: true });
    expect(members.filter((m) => m.unconfirmed).map((m) => m.name)).toEqual([mallory!.name]);
  }
  // and no commit added her
  expect((await groupBodies(group)).filter((b) => b[1] === 2).length).toBe(1);
});

test("an admin's add is an MLS commit that the new member joins from; a removed member's kept state reads nothing after", async () => {
  const [alice, bob, carol, dave] = await people("ha", "hb", "hc", "hd");
  const group = uniqueName("h");
  await alice!.session.createGroup(group, [bob!.name, carol!.name]);
  await alice!.session.sendGroupText(group, "first");
  await waitFor(() => bob!.texts().includes("first") && carol!.texts().includes("first"), "members to read");

  await alice!.session.changeGroup("add", group, [dave!.name]);
  await carol!.session.sendGroupText(group, "welcome dave");
  await waitFor(() => dave!.texts().includes("welcome dave"), "dave to read");
  expect(dave!.received.find((m) => m.text === "welcome dave")!.verified).toBe(true);
  const { members } = await carol!.session.groupMembers(group);
  expect(members.filter((m) => m.unconfirmed)).toEqual([]);

  await alice!.session.changeGroup("remove", group, [bob!.name]);
  await bob!.session.close();
  await carol!.session.sendGroupText(group, "bob is gone");
  await waitFor(() => dave!.texts().includes("bob is gone") && alice!.texts().includes("bob is gone"), "the others to read");
  const bodies = await groupBodies(group);
  // create, first, dave's add, welcome dave, bob's removal (by alice's device, the admin's, as the server took it), bob is gone
  expect(bodies.map((b) => b[1])).toEqual([2, 1, 2, 1, 2, 1]);
  const file = new Sqlite(join(fileHome, bob!.name, "store.db"), { readonly: true });
  const kept = new Uint8Array((file.query("select state from mls_groups where label = ?").get(`group:${group}`) as { state: Uint8Array }).state);
  file.close();
  const last = parseMlsBody(bodies[5]!) as { message: Uint8Array };
  expect(await attackerDecrypt(kept, last.message)).toBeUndefined();
});

test("two admins adding at once: one commit wins the epoch, the other is made again on the next, and both new members read", async () => {
  const [alice, bob, dave, erin] = await people("ia", "ib", "id", "ie");
  const group = uniqueName("i");
  await alice!.session.createGroup(group, [bob!.name]);
  await alice!.session.changeGroup("promote", group, [bob!.name]);
  await Promise.all([alice!.session.changeGroup("add", group, [dave!.name]), bob!.session.changeGroup("add", group, [erin!.name])]);
  await alice!.session.sendGroupText(group, "hello both");
  await waitFor(() => dave!.texts().includes("hello both") && erin!.texts().includes("hello both"), "both new members to read");
  // the group's commit, bob made an admin in the group's own list, then one commit per epoch for the two adds
  expect((await groupBodies(group)).map((b) => b[1])).toEqual([2, 2, 2, 2, 1]);
  const { members } = await erin!.session.groupMembers(group);
  expect(members.filter((m) => m.unconfirmed)).toEqual([]);
});

test("the server making a member an admin (a database edit) changes nothing: every client shows it, and that member's add commit is refused by every client", async () => {
  const [alice, bob, carol, dave] = await people("ja", "jb", "jc", "jd");
  const group = uniqueName("j");
  await alice!.session.createGroup(group, [bob!.name, carol!.name]);
  await alice!.session.sendGroupText(group, "before");
  await waitFor(() => bob!.texts().includes("before") && carol!.texts().includes("before"), "members to read");

  await db.sql`update members set role = 'admin' where user_id = (select id from users where name = ${bob!.name})
               and conversation_id = (select id from conversations where kind = 'group' and name = ${group})`;
  for (const u of [alice!, bob!, carol!]) {
    const { members } = await u.session.groupMembers(group);
    expect(members.find((m) => m.name === bob!.name)).toMatchObject({ role: "admin", adminUnconfirmed: true });
    expect(members.find((m) => m.name === alice!.name)!.adminUnconfirmed).toBeUndefined();
  }

  // bob's own client knows the group's list does not name him: the server takes the add, his device commits nothing
  await bob!.session.changeGroup("add", group, [dave!.name]);
  expect(bob!.statuses.some((s) => s.includes(dave!.name) && s.includes("could not be added"))).toBe(true);
  expect((await groupBodies(group)).filter((b) => b[1] === 2).length).toBe(1);

  // a patched client of bob's commits the add anyway, from the state on bob's disk, with a welcome for dave
  const file = new Sqlite(join(fileHome, bob!.name, "store.db"), { readonly: true });
  const saved = new Uint8Array((file.query("select state from mls_groups where label = ?").get(`group:${group}`) as { state: Uint8Array }).state);
  file.close();
  const claim = (await bob!.session.call("mls.keypackages.claim", { user: dave!.name, complete: true })) as { packages: { keyPackage: Uint8Array }[] };
  const state: ClientState = { ...decodeGroupState(saved, 0)![0], clientConfig: { ...defaultClientConfig, authService: { validateCredential: async () => true } } };
  const rogue = await createCommit(
    { state, cipherSuite: await mlsSuite() },
    { extraProposals: claim.packages.map((p) => ({ proposalType: "add", add: { keyPackage: decodeKeyPackage(new Uint8Array(p.keyPackage)) } })), ratchetTreeExtension: true },
  );
  const epoch = (await bob!.session.call("mls.epoch", { group })).epoch as number;
  await bob!.session.call("mls.commit", { group, cmid: crypto.randomUUID(), epoch, body: commitBody(encodeMessage(rogue.commit), encodeWelcome(rogue.welcome!)) });

  for (const u of [alice!, carol!])
    await waitFor(() => u.received.some((m) => m.group === group && m.code === "E_MLS_NOT_ADMIN"), `${u.name} to refuse bob's add`);
  for (const u of [alice!, carol!]) {
    const refused = u.received.find((m) => m.group === group && m.code === "E_MLS_NOT_ADMIN")!;
    expect(refused.problem).toContain(`${bob!.name} is not an admin`);
    const { members } = await u.session.groupMembers(group);
    expect(members.find((m) => m.name === dave!.name)).toMatchObject({ unconfirmed: true });
  }
});
