/**
 * What the server refuses in a group, each refusal with its own code: sending
 * or reading without being a member, changing the membership without being an
 * admin, anything at all once removed (and a removed member cannot decrypt what
 * follows even with the envelope in hand), bad or taken names, unknown groups,
 * and a group past its size limit.
 */
import { afterAll, beforeAll, expect, setDefaultTimeout, test } from "bun:test";
import { randomUUID } from "node:crypto";
import postgres from "postgres";
import { open } from "../crypto/envelope";
import type { IdentityKeys } from "../crypto/keys";
import { connectUser, rawLink, signup, startCluster, waitFor, type Cluster, type TestUser } from "./support/cluster";

// Real PostgreSQL, real sockets, several servers: give slow machines room.
setDefaultTimeout(60_000);

let cluster: Cluster;
let sql: postgres.Sql;
const keys: Record<string, IdentityKeys> = {};
const users: Record<string, TestUser> = {};

beforeAll(async () => {
  cluster = await startCluster({ servers: 2 });
  sql = postgres(cluster.url, { max: 2, onnotice: () => {} });
  for (const name of ["alice", "bob", "carol", "eve"]) keys[name] = await signup(cluster.balancerAddr, name);
  for (const name of ["alice", "bob", "carol", "eve"]) users[name] = await connectUser(cluster.balancerAddr, name);
}, 60_000);

afterAll(async () => {
  for (const u of Object.values(users)) await u.session.close().catch(() => {});
  await sql?.end();
  await cluster?.stop();
});

/** The code a refused promise was refused with. */
async function refusal(promise: Promise<unknown>): Promise<string> {
  return promise.then(
    () => "accepted",
    (e) => e.code ?? String(e),
  );
}

let groups = 0;
/** A fresh group of alice (admin), bob and carol. */
async function crew(): Promise<{ name: string; conv: number }> {
  const name = `crew${++groups}`;
  await users.alice!.session.createGroup(name, ["bob", "carol"]);
  const [row] = await sql`select id from conversations where name = ${name}`;
  return { name, conv: row!.id };
}

async function memberNames(group: string): Promise<string[]> {
  const rows = await sql`select u.name from members m join users u on u.id = m.user_id join conversations c on c.id = m.conversation_id
                         where c.name = ${group} and m.left_seq is null order by u.name`;
  return rows.map((r) => r.name);
}

async function messageCount(conv: number): Promise<number> {
  const [row] = await sql`select count(*)::int as n from messages where conversation_id = ${conv}`;
  return row!.n;
}

/** A raw send to a group with whatever epoch the caller names: what a client could put on the wire. */
async function rawSend(user: TestUser, group: string, epoch: number): Promise<unknown> {
  const body = crypto.getRandomValues(new Uint8Array(200));
  return user.session.send({ group, epoch, cmid: randomUUID(), body });
}

async function epochOf(conv: number): Promise<number> {
  const [row] = await sql`select epoch from conversations where id = ${conv}`;
  return row!.epoch;
}

test("a non-member cannot send to a group (E_NOT_MEMBER), even with the right epoch on the wire", async () => {
  const g = await crew();
  expect(await refusal(users.eve!.session.sendGroupText(g.name, "let me in"))).toBe("E_NOT_MEMBER");
  expect(await refusal(rawSend(users.eve!, g.name, await epochOf(g.conv)))).toBe("E_NOT_MEMBER");
  expect(await messageCount(g.conv)).toBe(1);
});

test("a non-member cannot read a group's history or members (E_NOT_MEMBER)", async () => {
  const g = await crew();
  await users.alice!.session.sendGroupText(g.name, "members only");
  expect(await refusal(users.eve!.session.groupHistory(g.name))).toBe("E_NOT_MEMBER");
  expect(await refusal(users.eve!.session.groupMembers(g.name))).toBe("E_NOT_MEMBER");
});

test("a member who is not an admin cannot add (E_NOT_ADMIN)", async () => {
  const g = await crew();
  expect(await refusal(users.bob!.session.changeGroup("add", g.name, ["eve"]))).toBe("E_NOT_ADMIN");
  expect(await memberNames(g.name)).toEqual(["alice", "bob", "carol"]);
});

test("a member who is not an admin cannot remove (E_NOT_ADMIN)", async () => {
  const g = await crew();
  expect(await refusal(users.bob!.session.changeGroup("remove", g.name, ["carol"]))).toBe("E_NOT_ADMIN");
  expect(await refusal(users.bob!.session.changeGroup("remove", g.name, ["alice"]))).toBe("E_NOT_ADMIN");
  expect(await memberNames(g.name)).toEqual(["alice", "bob", "carol"]);
});

test("a member who is not an admin cannot promote (E_NOT_ADMIN)", async () => {
  const g = await crew();
  expect(await refusal(users.bob!.session.changeGroup("promote", g.name, ["bob"]))).toBe("E_NOT_ADMIN");
  expect(await refusal(users.bob!.session.changeGroup("promote", g.name, ["carol"]))).toBe("E_NOT_ADMIN");
  const [row] = await sql`select count(*)::int as n from members m join conversations c on c.id = m.conversation_id
                          where c.name = ${g.name} and m.role = 'admin'`;
  expect(row!.n).toBe(1);
});

test("a non-member cannot change a group (E_NOT_MEMBER)", async () => {
  const g = await crew();
  expect(await refusal(users.eve!.session.changeGroup("add", g.name, ["eve"]))).toBe("E_NOT_MEMBER");
  expect(await refusal(users.eve!.session.changeGroup("leave", g.name))).toBe("E_NOT_MEMBER");
});

/** A crew from which alice has just removed carol, as carol saw it happen. */
async function crewWithoutCarol(): Promise<{ name: string; conv: number; removalSeq: number }> {
  const g = await crew();
  await users.alice!.session.sendGroupText(g.name, "before the removal");
  await waitFor(() => users.carol!.received.some((m) => m.conv === g.conv && m.text === "before the removal"), "carol to read the last message for her");
  await users.alice!.session.changeGroup("remove", g.name, ["carol"]);
  await waitFor(() => users.carol!.received.some((m) => m.conv === g.conv && m.text === "alice removed you"), "carol to see her removal");
  const [row] = await sql`select m.left_seq from members m join users u on u.id = m.user_id where m.conversation_id = ${g.conv} and u.name = 'carol'`;
  return { ...g, removalSeq: Number(row!.left_seq) };
}

test("a removed member cannot send (E_NOT_MEMBER)", async () => {
  const g = await crewWithoutCarol();
  expect(await refusal(users.carol!.session.sendGroupText(g.name, "still here?"))).toBe("E_NOT_MEMBER");
  expect(await refusal(rawSend(users.carol!, g.name, await epochOf(g.conv)))).toBe("E_NOT_MEMBER");
  expect(await messageCount(g.conv)).toBe(3);
});

test("a removed member cannot read the group's history (E_NOT_MEMBER)", async () => {
  const g = await crewWithoutCarol();
  expect(await refusal(users.carol!.session.groupHistory(g.name))).toBe("E_NOT_MEMBER");
  expect(await refusal(users.carol!.session.groupMembers(g.name))).toBe("E_NOT_MEMBER");
});

test("a removed member receives nothing sent after the removal, live or at the next login", async () => {
  const g = await crewWithoutCarol();
  for (let i = 1; i <= 5; i++) await users.alice!.session.sendGroupText(g.name, `after ${i}`);
  for (let i = 1; i <= 5; i++) await users.bob!.session.sendGroupText(g.name, `bob after ${i}`);
  await waitFor(() => users.bob!.received.filter((m) => m.conv === g.conv && m.text.startsWith("after")).length === 5, "bob to receive alice's messages");
  await waitFor(() => users.alice!.received.filter((m) => m.conv === g.conv && m.text.startsWith("bob after")).length === 5, "alice to receive bob's messages");
  await Bun.sleep(300);
  const live = users.carol!.received.filter((m) => m.conv === g.conv);
  expect(live.map((m) => m.text)).toEqual(["alice created " + g.name + " with bob, you", "before the removal", "alice removed you"]);
  expect(live.every((m) => m.seq <= g.removalSeq)).toBe(true);

  // Neither a request for what follows the removal nor the replay at the next login gives her anything more.
  await users.carol!.session.close();
  const link = await rawLink(cluster.servers[0]!.addr, "carol");
  try {
    const { messages } = await link.request("fetch", { conv: g.conv, after: g.removalSeq });
    expect(messages).toEqual([]);
    const { messages: hers } = await link.request("fetch", { conv: g.conv, after: 0 });
    expect((hers as { seq: number }[]).map((m) => m.seq)).toEqual([1, 2, 3]);
  } finally {
    link.close();
  }
  // Her cursor is still before the removal line: the replay starts there and stops at it.
  await sql`update device_cursors dc set seq = 0 from devices d join users u on u.id = d.user_id
            where dc.device_id = d.id and u.name = 'carol' and dc.conversation_id = ${g.conv}`;
  users.carol = await connectUser(cluster.balancerAddr, "carol");
  expect(users.carol.received.filter((m) => m.conv === g.conv).map((m) => m.seq)).toEqual([1, 2, 3]);
});

test("a removed member cannot decrypt a later message even with its envelope in hand (E_WRONG_RECIPIENT)", async () => {
  const g = await crewWithoutCarol();
  await users.alice!.session.sendGroupText(g.name, "carol must not read this");
  const [before] = await sql`select body from messages where conversation_id = ${g.conv} and seq = ${g.removalSeq - 1}`;
  const [after] = await sql`select body from messages where conversation_id = ${g.conv} and seq > ${g.removalSeq} and kind = 'chat'`;
  const attempt = (body: Uint8Array, me: string) => {
    try {
      const opened = open({ envelope: new Uint8Array(body), me: { name: me, keys: keys[me]! }, senderSign: keys.alice!.signPublic, expect: { from: "alice", conv: `group:${g.name}` } });
      return new TextDecoder().decode(opened.plaintext).includes("carol must not read this") ? "read" : "opened";
    } catch (e) {
      return (e as { reason?: string }).reason ?? String(e);
    }
  };
  // The same procedure opens what was sealed to her while she was a member, and what is sealed to bob now.
  expect(attempt(before!.body, "carol")).toBe("opened");
  expect(attempt(after!.body, "bob")).toBe("read");
  expect(attempt(after!.body, "carol")).toBe("E_WRONG_RECIPIENT");
});

test("a member added later reads from their joining on, not before", async () => {
  const g = await crew();
  await users.alice!.session.sendGroupText(g.name, "before eve");
  await users.alice!.session.changeGroup("add", g.name, ["eve"]);
  await users.alice!.session.sendGroupText(g.name, "after eve");
  await waitFor(() => users.eve!.received.some((m) => m.conv === g.conv && m.text === "after eve"), "eve to receive");
  expect(users.eve!.received.filter((m) => m.conv === g.conv).map((m) => m.text)).toEqual(["alice added you", "after eve"]);
  expect((await users.eve!.session.groupHistory(g.name)).map((m) => m.text)).toEqual(["alice added you", "after eve"]);
  const link = await rawLink(cluster.servers[0]!.addr, "eve");
  try {
    // Her session is replaced by this login: reconnect her afterwards.
    const { messages } = await link.request("fetch", { conv: g.conv, after: 0 });
    expect((messages as { seq: number }[]).map((m) => m.seq)).toEqual([3, 4]);
  } finally {
    link.close();
    await users.eve!.session.close();
    users.eve = await connectUser(cluster.balancerAddr, "eve");
  }
});

test("a group name must follow the user name rules (E_INVALID_NAME)", async () => {
  for (const bad of ["Crew", "has space", "", "x".repeat(33), "crew!", "ü"]) {
    expect({ name: bad, code: await refusal(users.alice!.session.createGroup(bad, [])) }).toEqual({ name: bad, code: "E_INVALID_NAME" });
  }
  const [row] = await sql`select count(*)::int as n from conversations where kind = 'group' and name !~ '^[a-z0-9_.-]{1,32}$'`;
  expect(row!.n).toBe(0);
});

test("a group name is unique (E_NAME_TAKEN), and the group keeps its first owner", async () => {
  await users.alice!.session.createGroup("taken", ["bob"]);
  expect(await refusal(users.eve!.session.createGroup("taken", ["carol"]))).toBe("E_NAME_TAKEN");
  expect(await refusal(users.alice!.session.createGroup("taken", []))).toBe("E_NAME_TAKEN");
  expect(await memberNames("taken")).toEqual(["alice", "bob"]);
});

test("two users creating the same group name at once: one wins, the other gets E_NAME_TAKEN", async () => {
  const outcomes = await Promise.all([refusal(users.alice!.session.createGroup("race", [])), refusal(users.eve!.session.createGroup("race", []))]);
  expect(outcomes.sort()).toEqual(["E_NAME_TAKEN", "accepted"]);
});

test("a group that does not exist is E_NO_SUCH_GROUP for every operation", async () => {
  const s = users.alice!.session;
  expect(await refusal(s.sendGroupText("nowhere", "hello?"))).toBe("E_NO_SUCH_GROUP");
  expect(await refusal(rawSend(users.alice!, "nowhere", 0))).toBe("E_NO_SUCH_GROUP");
  expect(await refusal(s.groupMembers("nowhere"))).toBe("E_NO_SUCH_GROUP");
  expect(await refusal(s.groupHistory("nowhere"))).toBe("E_NO_SUCH_GROUP");
  expect(await refusal(s.changeGroup("add", "nowhere", ["bob"]))).toBe("E_NO_SUCH_GROUP");
  expect(await refusal(s.changeGroup("remove", "nowhere", ["bob"]))).toBe("E_NO_SUCH_GROUP");
  expect(await refusal(s.changeGroup("promote", "nowhere", ["bob"]))).toBe("E_NO_SUCH_GROUP");
  expect(await refusal(s.changeGroup("leave", "nowhere"))).toBe("E_NO_SUCH_GROUP");
});

test("a group cannot grow past the server's member limit (E_GROUP_FULL)", async () => {
  const small = await startCluster({ servers: 1, config: { maxGroupMembers: 3 } });
  const names = ["ann", "ben", "cat", "dan", "eli"];
  for (const n of names) await signup(small.balancerAddr, n);
  const ann = await connectUser(small.balancerAddr, "ann");
  try {
    expect(await refusal(ann.session.createGroup("big", ["ben", "cat", "dan"]))).toBe("E_GROUP_FULL");
    await ann.session.createGroup("three", ["ben", "cat"]);
    expect(await refusal(ann.session.changeGroup("add", "three", ["dan"]))).toBe("E_GROUP_FULL");
    await ann.session.createGroup("two", ["ben"]);
    expect(await refusal(ann.session.changeGroup("add", "two", ["cat", "dan"]))).toBe("E_GROUP_FULL");
    // Room made by a removal can be filled again.
    await ann.session.changeGroup("remove", "three", ["cat"]);
    await ann.session.changeGroup("add", "three", ["dan"]);
    expect((await ann.session.groupMembers("three")).members.map((m) => m.name).sort()).toEqual(["ann", "ben", "dan"]);
  } finally {
    await ann.session.close();
    await small.stop();
  }
});

test("naming more users than the member limit at once is E_GROUP_FULL too, when creating or adding", async () => {
  const small = await startCluster({ servers: 1, config: { maxGroupMembers: 3 } });
  const names = ["ann", "ben", "cat", "dan", "eli"];
  for (const n of names) await signup(small.balancerAddr, n);
  const ann = await connectUser(small.balancerAddr, "ann");
  try {
    expect(await refusal(ann.session.createGroup("big", ["ben", "cat", "dan", "eli"]))).toBe("E_GROUP_FULL");
    await ann.session.createGroup("one", []);
    expect(await refusal(ann.session.changeGroup("add", "one", ["ben", "cat", "dan", "eli"]))).toBe("E_GROUP_FULL");
  } finally {
    await ann.session.close();
    await small.stop();
  }
});

test("adding someone who has no account is E_NO_SUCH_USER, and changes nothing", async () => {
  const g = await crew();
  expect(await refusal(users.alice!.session.changeGroup("add", g.name, ["eve", "ghost"]))).toBe("E_NO_SUCH_USER");
  expect(await refusal(users.alice!.session.createGroup("haunted", ["bob", "ghost"]))).toBe("E_NO_SUCH_USER");
  expect(await memberNames(g.name)).toEqual(["alice", "bob", "carol"]);
  expect(await memberNames("haunted")).toEqual([]);
});
