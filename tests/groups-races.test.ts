/**
 * Groups under concurrency: membership changes racing from two admins on two
 * servers leave one membership that every member and the database agree on,
 * reached by one sequence of changes that every member saw in the same order;
 * and a message racing a removal is sealed either to the removed member (it
 * committed before) or not at all (after), never half.
 */
import { afterAll, beforeAll, expect, setDefaultTimeout, test } from "bun:test";
import { unpack } from "msgpackr";
import postgres from "postgres";
import { parseEnvelope } from "../crypto/envelope-format";
import { Sessions, signup, startCluster, waitFor, type Cluster, type TestUser } from "./support/cluster";

// Real PostgreSQL, real sockets, several servers: give slow machines room.
setDefaultTimeout(60_000);

let cluster: Cluster;
let sql: postgres.Sql;
const sessions = new Sessions(() => cluster.balancerAddr);
const connect = (name: string) => sessions.connect(name);

beforeAll(async () => {
  cluster = await startCluster({ servers: 2 });
  sql = postgres(cluster.url, { max: 2, onnotice: () => {} });
}, 60_000);

afterAll(async () => {
  await sessions.closeAll();
  await sql?.end();
  await cluster?.stop();
});

async function users(names: string[]): Promise<Record<string, TestUser>> {
  for (const n of names) await signup(cluster.balancerAddr, n);
  const out: Record<string, TestUser> = {};
  for (const n of names) out[n] = await connect(n);
  return out;
}

async function groupId(name: string): Promise<number> {
  const [row] = await sql`select id from conversations where kind = 'group' and name = ${name}`;
  return row!.id;
}

interface Change {
  seq: number;
  event: string;
  actor: string;
  users: string[];
}

function changeOf(m: { seq: number; body: Uint8Array }): Change {
  const e = unpack(m.body);
  return { seq: m.seq, event: e.event, actor: e.actor, users: e.users };
}

/** Applies recorded membership changes, in order, to a membership. */
function replay(start: string[], changes: Change[]): string[] {
  const members = new Set(start);
  for (const c of changes) {
    if (c.event === "added") for (const u of c.users) members.add(u);
    if (c.event === "removed") for (const u of c.users) members.delete(u);
    if (c.event === "left") members.delete(c.actor);
  }
  return [...members].sort();
}

function settled<T>(promise: Promise<T>): Promise<string> {
  return promise.then(
    () => "ok",
    (e) => e.code ?? String(e),
  );
}

test("adds and removes racing from two admins on two servers leave one membership that every member and the database agree on", async () => {
  const pool = Array.from({ length: 8 }, (_, i) => `p${i}`);
  const u = await users(["alice", "bob", "carol", ...pool]);
  expect(u.alice!.session.serverId).not.toBe(u.bob!.session.serverId);
  await u.alice!.session.createGroup("churn", ["bob", "carol", "p0", "p1", "p2", "p3"]);
  await u.alice!.session.changeGroup("promote", "churn", ["bob"]);
  const conv = await groupId("churn");
  const [{ last_seq: startSeq }] = (await sql`select last_seq::int from conversations where id = ${conv}`) as unknown as [{ last_seq: number }];
  const initial = ["alice", "bob", "carol", "p0", "p1", "p2", "p3"];

  // Both admins fire their changes at once, for the same users.
  // mulberry32: a fixed seed, so a failure can be replayed.
  let rng = 42;
  const random = (n: number) => {
    rng = (rng + 0x6d2b79f5) | 0;
    let t = Math.imul(rng ^ (rng >>> 15), 1 | rng);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return Math.floor((((t ^ (t >>> 14)) >>> 0) / 2 ** 32) * n);
  };
  const changes: Promise<string>[] = [];
  for (let i = 0; i < 40; i++) {
    for (const admin of [u.alice!, u.bob!]) {
      const op = random(2) === 0 ? "add" : "remove";
      const who = [...new Set([pool[random(pool.length)]!, ...(random(3) === 0 ? [pool[random(pool.length)]!] : [])])];
      changes.push(settled(admin.session.changeGroup(op, "churn", who)));
    }
  }
  const outcomes = await Promise.all(changes);
  // The only refusals are the ones a race makes: adding a member, removing a non-member.
  expect(outcomes.filter((o) => !["ok", "E_BAD_REQUEST", "E_NOT_MEMBER"].includes(o))).toEqual([]);
  expect(outcomes.filter((o) => o === "ok").length).toBeGreaterThan(10);

  const rows = await sql`select m.seq, m.body from messages m where m.conversation_id = ${conv} and m.kind = 'system' and m.seq > ${startSeq} order by m.seq`;
  const recorded = rows.map((r) => changeOf({ seq: Number(r.seq), body: new Uint8Array(r.body) }));
  expect(recorded.length).toBe(outcomes.filter((o) => o === "ok").length);
  const dbMembers = (
    await sql`select u.name from members m join users u on u.id = m.user_id where m.conversation_id = ${conv} and m.left_seq is null order by u.name`
  ).map((r) => r.name as string);
  // Replaying the recorded changes from the initial membership gives the final one.
  expect(replay(initial, recorded)).toEqual(dbMembers);

  // A last message makes everyone's client catch up on lines it did not get live (an admin's own changes).
  await u.carol!.session.sendGroupText("churn", "done");
  const finalMembers = dbMembers.map((n) => u[n]!);
  for (const m of finalMembers.filter((m) => m.name !== "carol")) await waitFor(() => m.received.some((r) => r.conv === conv && r.text === "done"), `${m.name} to get the last message`);

  // Every member, asked on its own server, names the same membership: the database's.
  for (const m of finalMembers) {
    const { members } = await m.session.groupMembers("churn");
    expect({ asked: m.name, members: members.map((x) => x.name).sort() }).toEqual({ asked: m.name, members: dbMembers });
  }
  // Those who are out are told so.
  for (const name of pool.filter((n) => !dbMembers.includes(n))) expect(await settled(u[name]!.session.groupMembers("churn"))).toBe("E_NOT_MEMBER");

  // Each user saw exactly the changes made while they were a member (their own adding and removal included), in the recorded order.
  const seenBy = new Map<string, number[]>();
  let members = new Set(initial);
  for (const c of recorded) {
    const after = new Set(replay([...members], [c]));
    for (const name of new Set([...members, ...after])) seenBy.set(name, [...(seenBy.get(name) ?? []), c.seq]);
    members = after;
  }
  const views = async (names: string[]) => {
    const out: { user: string; changes: Change[] }[] = [];
    for (const name of names) {
      const want = seenBy.get(name) ?? [];
      const got = () => u[name]!.received.filter((r) => r.conv === conv && r.kind === "system" && r.seq > startSeq).map(changeOf);
      await waitFor(() => got().length >= want.length, `${name} to see ${want.length} changes`, 3_000).catch(() => {});
      out.push({ user: name, changes: got() });
    }
    return out;
  };
  const expected = (names: string[]) => names.map((name) => ({ user: name, changes: recorded.filter((c) => (seenBy.get(name) ?? []).includes(c.seq)) }));
  // Those who only watched (and were added and removed) saw each change that concerned them, live, in order.
  expect(await views(["carol", ...pool])).toEqual(expected(["carol", ...pool]));
  // The admins see their own changes too, in the same places.
  expect(await views(["alice", "bob"])).toEqual(expected(["alice", "bob"]));
  // The members who saw every change can replay them to the final membership on their own.
  for (const name of ["alice", "bob", "carol"]) {
    const own = u[name]!.received.filter((r) => r.conv === conv && r.kind === "system" && r.seq > startSeq).map(changeOf);
    expect(replay(initial, own)).toEqual(dbMembers);
  }
}, 60_000);

/** Who was a member when message `seq` was committed, from the members table. */
async function membershipAt(conv: number): Promise<(seq: number) => string[]> {
  const rows = await sql`select u.name, m.joined_seq::int as joined, m.left_seq::int as left from members m join users u on u.id = m.user_id
                         where m.conversation_id = ${conv}`;
  return (seq) =>
    rows
      .filter((r) => r.joined < seq && (r.left === null || seq < r.left))
      .map((r) => r.name as string)
      .sort();
}

test("a message sent while a member is removed is sealed to them if it committed before the removal, and not at all after", async () => {
  const u = await users(["ann", "ben", "cat", "dan"]);
  await u.ann!.session.createGroup("stream", ["ben", "cat", "dan"]);
  const conv = await groupId("stream");
  await waitFor(() => u.dan!.received.length === 1, "dan to be in the group");

  // Three senders stream messages; halfway through ann's, dan is removed.
  const sent: Promise<unknown>[] = [];
  let removal!: Promise<unknown>;
  const stream = async (user: TestUser, n: number) => {
    for (let i = 1; i <= n; i++) {
      sent.push(user.session.sendGroupText("stream", `${user.name} ${i}`));
      if (user.name === "ann" && i === n / 2) removal = u.ann!.session.changeGroup("remove", "stream", ["dan"]);
      await Bun.sleep(1);
    }
  };
  await Promise.all([stream(u.ann!, 40), stream(u.ben!, 40), stream(u.cat!, 40)]);
  await removal;
  // The client seals again for the new membership when the server says it changed: every send lands.
  expect((await Promise.all(sent.map(settled))).filter((o) => o !== "ok")).toEqual([]);

  const [{ left }] = (await sql`select m.left_seq::int as left from members m join users u on u.id = m.user_id
                                where m.conversation_id = ${conv} and u.name = 'dan'`) as unknown as [{ left: number }];
  const stored = await sql`select seq::int, body from messages where conversation_id = ${conv} and kind = 'chat' order by seq`;
  expect(stored.length).toBe(120);
  const before = stored.filter((m) => m.seq < left);
  const after = stored.filter((m) => m.seq > left);
  // The race did happen: messages on both sides of the removal.
  expect(before.length).toBeGreaterThan(0);
  expect(after.length).toBeGreaterThan(0);
  const at = await membershipAt(conv);
  const wrong: string[] = [];
  for (const m of stored) {
    const sealedTo = parseEnvelope(new Uint8Array(m.body)).entries.map((e) => e.name).sort();
    if (sealedTo.includes("dan") !== m.seq < left) wrong.push(`seq ${m.seq}: sealed to ${sealedTo.join(",")}, removal at ${left}`);
    if (sealedTo.join(",") !== at(m.seq).join(",")) wrong.push(`seq ${m.seq}: sealed to ${sealedTo.join(",")}, members ${at(m.seq).join(",")}`);
  }
  expect(wrong).toEqual([]);

  // What dan received is exactly what was sealed to him, and he could read all of it.
  await waitFor(() => u.ben!.received.filter((r) => r.conv === conv && r.kind === "chat").length === 80, "ben to receive the others' messages");
  await Bun.sleep(300);
  const dans = u.dan!.received.filter((r) => r.conv === conv && r.kind === "chat");
  expect(dans.map((r) => r.seq)).toEqual(before.map((m) => m.seq));
  expect(dans.every((r) => r.verified)).toBe(true);
  expect(u.dan!.received.filter((r) => r.conv === conv && r.kind === "system").map((r) => r.text)).toEqual(["ann created stream with ben, cat, you", "ann removed you"]);
  // The others read every message from each other, before and after.
  for (const name of ["ann", "ben", "cat"]) {
    const theirs = u[name]!.received.filter((r) => r.conv === conv && r.kind === "chat");
    await waitFor(() => u[name]!.received.filter((r) => r.conv === conv && r.kind === "chat").length === 80, `${name} to receive 80`);
    expect(theirs.every((r) => r.verified)).toBe(true);
  }
}, 60_000);

test("a sender's group messages keep the order they were sent in when the membership changes under them", async () => {
  const u = await users(["kim", "lou", "max"]);
  await u.kim!.session.createGroup("order", ["lou", "max"]);
  const conv = await groupId("order");
  const sent: Promise<unknown>[] = [];
  const changes: Promise<unknown>[] = [];
  for (let i = 1; i <= 60; i++) {
    sent.push(u.lou!.session.sendGroupText("order", `lou ${i}`));
    // Membership changes while lou's messages are in flight.
    if (i % 15 === 0) changes.push(u.kim!.session.changeGroup(i % 30 === 0 ? "add" : "remove", "order", ["max"]));
    await Bun.sleep(1);
  }
  await Promise.all([...sent, ...changes]);
  await waitFor(() => u.kim!.received.filter((r) => r.conv === conv && r.kind === "chat").length === 60, "kim to receive lou's messages");
  const got = u.kim!.received.filter((r) => r.conv === conv && r.kind === "chat").map((r) => r.text);
  expect(got).toEqual(Array.from({ length: 60 }, (_, i) => `lou ${i + 1}`));
}, 60_000);
