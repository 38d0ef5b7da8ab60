/**
 * Group chats as their members see them: every member on either server gets
 * every message once and in order, live or at the next login, with the
 * membership changes as system lines; a group always keeps an admin; and
 * /groups counts what is unread until it is read.
 */
import { afterAll, beforeAll, expect, setDefaultTimeout, test } from "bun:test";
import { unpack } from "msgpackr";
import postgres from "postgres";
import { inbox } from "../roles/client";
import { PASSWORD, rawLink, Sessions, signup, startCluster, waitFor, type Cluster, type TestUser } from "./support/cluster";

// Real PostgreSQL, real sockets, several servers: give slow machines room.
setDefaultTimeout(60_000);

let cluster: Cluster;
let sql: postgres.Sql;
const sessions = new Sessions(() => cluster.balancerAddr);
const connect = (name: string) => sessions.connect(name);
const close = (user: TestUser) => sessions.close(user);

beforeAll(async () => {
  cluster = await startCluster({ servers: 2 });
  sql = postgres(cluster.url, { max: 2, onnotice: () => {} });
  for (const name of ["alice", "bob", "carol", "dave", "erin", "frank", "gina", "hank", "ivy"]) await signup(cluster.balancerAddr, name);
}, 60_000);

afterAll(async () => {
  await sessions.closeAll();
  await sql?.end();
  await cluster?.stop();
});

async function groupId(name: string): Promise<number> {
  const [row] = await sql`select id from conversations where kind = 'group' and name = ${name}`;
  return row!.id;
}

/** Every stored message of a group, in sequence order, as the database has it. */
async function stored(conv: number): Promise<{ seq: number; kind: string; from: string }[]> {
  const rows = await sql`select m.seq, m.kind, u.name as "from" from messages m join users u on u.id = m.sender_id
                         where m.conversation_id = ${conv} order by m.seq`;
  return rows.map((r) => ({ seq: Number(r.seq), kind: r.kind, from: r.from }));
}

function inConv(user: TestUser, conv: number) {
  return user.received.filter((m) => m.conv === conv);
}

function event(body: Uint8Array): { event: string; actor: string; users: string[] } {
  return unpack(body);
}

test("every member of a group on two servers gets every message once and in order; an offline member gets them all at login", async () => {
  const alice = await connect("alice");
  const bob = await connect("bob");
  // Round robin over two servers puts consecutive logins on different servers.
  expect(alice.session.serverId).not.toBe(bob.session.serverId);
  await alice.session.createGroup("crew", ["bob", "carol"]);
  const conv = await groupId("crew");
  await waitFor(() => inConv(bob, conv).length === 1, "bob to see the group created");

  const texts = new Map<number, string>();
  const burst = async (user: TestUser, prefix: string, n: number) => {
    const sends = Array.from({ length: n }, (_, i) => user.session.sendGroupText("crew", `${prefix}${i + 1}`).then((r) => texts.set(r.seq, `${prefix}${i + 1}`)));
    await Promise.all(sends);
  };
  await Promise.all([burst(alice, "a", 15), burst(bob, "b", 15)]);

  const dave = await connect("dave");
  await alice.session.changeGroup("add", "crew", ["dave"]);
  await waitFor(() => inConv(dave, conv).length === 1, "dave to see that he was added");
  await Promise.all([burst(alice, "A", 10), burst(bob, "B", 10), burst(dave, "D", 10)]);

  // Each sender's messages are numbered in the order they were sent.
  const bySeq = [...texts].sort(([x], [y]) => x - y).map(([, t]) => t);
  for (const prefix of ["a", "b", "A", "B", "D"]) {
    const mine = bySeq.filter((t) => t.startsWith(prefix) && /^\D\d+$/.test(t));
    expect(mine).toEqual(Array.from({ length: mine.length }, (_, i) => `${prefix}${i + 1}`));
  }

  const all = await stored(conv);
  expect(all.length).toBe(2 + 15 + 15 + 10 + 10 + 10);
  const joinedDave = all.find((m) => m.kind === "system" && m.seq > 1)!.seq - 1;
  /** What a member should see: everything from their joining on, but their own chat messages (which they wrote). */
  const expected = (name: string, after: number) => all.filter((m) => m.seq > after && !(m.kind === "chat" && m.from === name));
  for (const [user, after] of [[alice, 0], [bob, 0], [dave, joinedDave]] as const) {
    const want = expected(user.name, after);
    await waitFor(() => inConv(user, conv).length >= want.length, `${user.name} to receive ${want.length} messages`);
  }
  // Nothing more is on its way: a duplicate would arrive now.
  await Bun.sleep(500);

  for (const [user, after] of [[alice, 0], [bob, 0], [dave, joinedDave]] as const) {
    const got = inConv(user, conv);
    const want = expected(user.name, after);
    expect({ user: user.name, seqs: got.map((m) => m.seq) }).toEqual({ user: user.name, seqs: want.map((m) => m.seq) });
    expect(got.map((m) => (m.kind === "chat" ? m.text : m.kind))).toEqual(want.map((m) => (m.kind === "chat" ? texts.get(m.seq)! : "system")));
    expect(got.filter((m) => m.kind === "chat").every((m) => m.verified)).toBe(true);
  }

  // carol was offline throughout: the whole conversation waits for her, membership lines included.
  const carol = await connect("carol");
  const hers = inConv(carol, conv);
  expect(hers.map((m) => m.seq)).toEqual(all.map((m) => m.seq));
  expect(hers.map((m) => (m.kind === "chat" ? m.text : "system"))).toEqual(all.map((m) => (m.kind === "chat" ? texts.get(m.seq)! : "system")));
  expect(hers.filter((m) => m.kind === "system").map((m) => m.text)).toEqual(["alice created crew with bob, you", "alice added dave"]);
  expect(hers.filter((m) => m.kind === "chat").every((m) => m.verified)).toBe(true);
  for (const u of [alice, bob, carol, dave]) {
    const seqs = inConv(u, conv).map((m) => m.seq);
    expect(seqs.every((s, i) => i === 0 || s > seqs[i - 1]!)).toBe(true);
  }
  for (const u of [alice, bob, carol, dave]) await close(u);
});

test("an admin sees the membership changes they made themselves, from the group's creation on", async () => {
  const alice = await connect("alice");
  const bob = await connect("bob");
  await alice.session.createGroup("own", ["bob"]);
  const conv = await groupId("own");
  await alice.session.changeGroup("add", "own", ["carol"]);
  await alice.session.changeGroup("promote", "own", ["bob"]);
  await waitFor(() => inConv(bob, conv).length === 3, "bob to see three changes");
  // The first line alice receives from someone else is a membership change too.
  await bob.session.changeGroup("add", "own", ["dave"]);
  await bob.session.sendGroupText("own", "hi all");
  await waitFor(() => inConv(alice, conv).some((m) => m.text === "hi all"), "alice to receive bob's message");
  await Bun.sleep(400);
  expect(inConv(alice, conv).map((m) => m.text)).toEqual([
    "you created own with bob",
    "you added carol",
    "you made bob an admin",
    "bob added dave",
    "hi all",
  ]);
  await close(alice);
  await close(bob);
});

test("when the last admin leaves, the longest-standing member becomes admin, and every member sees it", async () => {
  const erin = await connect("erin");
  const frank = await connect("frank");
  const gina = await connect("gina");
  await erin.session.createGroup("elders", []);
  const conv = await groupId("elders");
  // gina joins before frank, although frank's account is older: standing is time in the group.
  await erin.session.changeGroup("add", "elders", ["gina"]);
  await erin.session.changeGroup("add", "elders", ["frank"]);
  await waitFor(() => inConv(frank, conv).length === 1, "frank to be told he was added");

  await erin.session.changeGroup("leave", "elders");
  await waitFor(() => inConv(frank, conv).length === 2 && inConv(gina, conv).length === 3, "the leave to reach both members");
  const { members } = await frank.session.groupMembers("elders");
  expect(members.map((m) => [m.name, m.role])).toEqual([
    ["gina", "admin"],
    ["frank", "member"],
  ]);
  const line = inConv(frank, conv).at(-1)!;
  expect(line.kind).toBe("system");
  expect(event(line.body)).toEqual({ event: "left", actor: "erin", users: ["gina"] });
  expect(line.text).toBe("erin left; gina is now an admin");
  expect(inConv(gina, conv).at(-1)!.text).toBe("erin left; you are now an admin");
  // The new admin can act as one.
  await gina.session.changeGroup("promote", "elders", ["frank"]);
  expect((await frank.session.groupMembers("elders")).members.map((m) => m.role)).toEqual(["admin", "admin"]);
  for (const u of [erin, frank, gina]) await close(u);
});

test("the only member of a group can leave it, and it is then no longer theirs", async () => {
  const hank = await connect("hank");
  await hank.session.createGroup("solo", []);
  expect((await hank.session.groups()).map((g) => g.name)).toEqual(["solo"]);
  await hank.session.changeGroup("leave", "solo");
  expect(await hank.session.groups()).toEqual([]);
  expect(await hank.session.groupMembers("solo").catch((e) => e.code)).toBe("E_NOT_MEMBER");
  const [row] = await sql`select count(*)::int as n from members m join conversations c on c.id = m.conversation_id
                          where c.name = 'solo' and m.left_seq is null`;
  expect(row!.n).toBe(0);
  await close(hank);
});

test("/groups counts a member's unread messages, and the count drops to 0 once they have read them", async () => {
  const alice = await connect("alice");
  await alice.session.createGroup("news", ["ivy"]);
  // ivy reads the creation line, then goes away.
  const lines: string[] = [];
  const options = { balancer: cluster.balancerAddr, user: "ivy", password: async () => PASSWORD, json: true, print: (l: string) => lines.push(l) };
  expect(await inbox(options)).toBe(1);
  // News while ivy is away: unread until she reads it.
  for (let i = 1; i <= 3; i++) await alice.session.sendGroupText("news", `headline ${i}`);
  const peek = await connectWithoutReading("ivy");
  expect(peek.find((g) => g.name === "news")?.unread).toBe(3);
  // Her own side of the conversation is not news to alice.
  expect((await alice.session.groups()).find((g) => g.name === "news")?.unread).toBe(0);

  lines.length = 0;
  expect(await inbox(options)).toBe(3);
  expect(lines.map((l) => JSON.parse(l).text)).toEqual(["headline 1", "headline 2", "headline 3"]);
  expect((await connectWithoutReading("ivy")).find((g) => g.name === "news")?.unread).toBe(0);
  await close(alice);
});

/** The groups reply for a user who logs in but does not replay, so nothing is read or acknowledged. */
async function connectWithoutReading(name: string): Promise<{ name: string; unread: number }[]> {
  const link = await rawLink(cluster.servers[0]!.addr, name);
  try {
    return (await link.request("groups")).groups as { name: string; unread: number }[];
  } finally {
    link.close();
  }
}
