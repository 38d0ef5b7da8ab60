/**
 * The user-level state: what each device received and what the person read
 * are kept apart; the read marker moves only past what some client of theirs
 * showed, never because of the user's own sends; devices of one user share it;
 * several processes of one client home run at once; and receipts and typing
 * reach the other side. Real servers, real PostgreSQL, real CLI processes.
 */
import { afterAll, beforeAll, expect, setDefaultTimeout, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import postgres from "postgres";
import { ChatSession, type ReceiptEvent, type TypingEvent } from "../client/session";
import { connectUser, PASSWORD, ROOT, signup, startCluster, uniqueName, waitFor, type Cluster } from "./support/cluster";

setDefaultTimeout(60_000);

let cluster: Cluster;
let sql: postgres.Sql;
const homes: string[] = [];
const open: { close(): Promise<void> }[] = [];

beforeAll(async () => {
  cluster = await startCluster({ servers: 2 });
  sql = postgres(cluster.url, { max: 2, onnotice: () => {} });
  await Bun.sleep(1_200);
}, 60_000);

afterAll(async () => {
  for (const s of open) await s.close().catch(() => {});
  await sql?.end();
  await cluster?.stop();
  for (const home of homes) rmSync(home, { recursive: true, force: true });
});

function newHome(): string {
  const home = mkdtempSync(join(tmpdir(), "chatterbox-read-state-"));
  homes.push(home);
  return home;
}

/** A one-shot command of the real CLI, on a client home. */
async function cli(home: string, args: string[]): Promise<{ stdout: string; stderr: string; code: number }> {
  await using proc = Bun.spawn([process.execPath, join(ROOT, "cli.ts"), ...args, "--balancer", cluster.balancerAddr], {
    env: { ...process.env, CHATTERBOX_HOME: home, CHATTERBOX_PASSWORD: PASSWORD, CHATTERBOX_TEST_KDF: "1" },
    stdout: "pipe",
    stderr: "pipe",
  });
  const [stdout, stderr, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
  return { stdout, stderr, code };
}

async function inboxTexts(home: string, user: string): Promise<string[]> {
  const run = await cli(home, ["inbox", "--user", user, "--json"]);
  expect({ code: run.code, stderr: run.stderr }).toEqual({ code: 0, stderr: "" });
  return run.stdout
    .split("\n")
    .filter((l) => l.trim())
    .map((l) => JSON.parse(l))
    .filter((e) => e.type === "message")
    .map((e) => e.text);
}

/** A session of a device that shows nothing by itself (as a client whose person looks elsewhere). */
async function quietDevice(user: string, deviceKey: string, hooks: { receipts?: ReceiptEvent[]; typing?: TypingEvent[]; reads?: [number, number][] } = {}): Promise<ChatSession> {
  const session = await ChatSession.open({
    balancer: cluster.balancerAddr,
    user,
    password: () => PASSWORD,
    persist: false,
    deviceKey,
    onReceipt: (r) => hooks.receipts?.push(r),
    onTyping: (t) => hooks.typing?.push(t),
    onRead: (conv, seq) => hooks.reads?.push([conv, seq]),
  });
  open.push(session);
  return session;
}

for (const order of ["alice's message first", "bob's send first"] as const) {
  test(`the skip, in a DM (${order}): bob sends without reading, and his inbox still shows what alice sent`, async () => {
    const [alice, bob] = [uniqueName("alice"), uniqueName("bob")];
    for (const n of [alice, bob]) await signup(cluster.balancerAddr, n);
    const bobHome = newHome();
    if (order === "bob's send first") expect((await cli(bobHome, ["send", "--user", bob, "--to", alice, "first from bob"])).code).toBe(0);
    expect((await cli(newHome(), ["send", "--user", alice, "--to", bob, "unread by bob"])).code).toBe(0);
    if (order === "alice's message first") expect((await cli(bobHome, ["send", "--user", bob, "--to", alice, "without reading"])).code).toBe(0);
    expect(await inboxTexts(bobHome, bob)).toEqual(["unread by bob"]);
    // Printed is read: the next inbox has nothing, on this device or a new one.
    expect(await inboxTexts(bobHome, bob)).toEqual([]);
    expect(await inboxTexts(newHome(), bob)).toEqual([]);
  });
}

test("the skip, in a group: a member who sends before reading still has the group's unread messages", async () => {
  const [alice, bob, carol] = [uniqueName("alice"), uniqueName("bob"), uniqueName("carol")];
  for (const n of [alice, bob, carol]) await signup(cluster.balancerAddr, n);
  const group = uniqueName("crew");
  // Alice's device shows nothing: what arrives stays unread for her.
  const admin = await quietDevice(alice, `device-${alice}`);
  await admin.createGroup(group, [bob, carol]);
  const bobHome = newHome();
  expect((await cli(newHome(), ["send", "--user", carol, "--group", group, "carol's news"])).code).toBe(0);
  expect((await cli(bobHome, ["send", "--user", bob, "--group", group, "bob, not reading"])).code).toBe(0);
  const texts = await inboxTexts(bobHome, bob);
  expect(texts).toEqual(["carol's news"]);
  const groups = (await admin.groups()).find((g) => g.name === group)!;
  expect(groups.unread).toBe(2); // carol's and bob's, for alice, who has read neither
  expect(admin.unread().map((m) => m.text).sort()).toEqual(["bob, not reading", "carol's news"]);
});

test("two devices of one user on different servers: both get a live message; reading on one clears it on the other, which keeps it in its history", async () => {
  const [alice, bob] = [uniqueName("alice"), uniqueName("bob")];
  for (const n of [alice, bob]) await signup(cluster.balancerAddr, n);
  const reads: [number, number][] = [];
  const phone = await quietDevice(bob, `phone-${bob}`, { reads });
  let laptop = await quietDevice(bob, `laptop-${bob}`);
  for (let i = 0; laptop.serverId === phone.serverId; i++) {
    if (i === 5) throw new Error("could not place the two devices apart");
    await laptop.close();
    laptop = await quietDevice(bob, `laptop-${bob}`);
  }
  const sender = await connectUser(cluster.balancerAddr, alice);
  open.push(sender.session);
  const sent = await sender.session.sendText(bob, "to both devices");
  await waitFor(() => phone.unread().length === 1 && laptop.unread().length === 1, "both devices to have the message unread");
  // The laptop shows it to bob: the phone hears of it and no longer counts it unread.
  laptop.markRead(sent.conv, sent.seq);
  await waitFor(() => reads.some(([conv, seq]) => conv === sent.conv && seq === sent.seq), "the phone to hear that bob read it");
  expect(phone.unread()).toEqual([]);
  expect(phone.localHistory(sent.conv).map((m) => m.text)).toEqual(["to both devices"]);
  // And the server agrees: nothing is unread for bob anywhere.
  const [row] = await sql`select m.read_seq::int as r from members m join users u on u.id = m.user_id where u.name = ${bob} and m.conversation_id = ${sent.conv}`;
  expect(row!.r).toBe(sent.seq);
});

test("two processes on one home: a second process runs send while chat is open; neither fails, and chat shows the message as the user's own", async () => {
  const [alice, bob] = [uniqueName("alice"), uniqueName("bob")];
  for (const n of [alice, bob]) await signup(cluster.balancerAddr, n);
  const home = newHome();
  await using chat = Bun.spawn([process.execPath, join(ROOT, "cli.ts"), "chat", "--user", alice, "--json", "--balancer", cluster.balancerAddr], {
    env: { ...process.env, CHATTERBOX_HOME: home, CHATTERBOX_PASSWORD: PASSWORD, CHATTERBOX_TEST_KDF: "1" },
    stdin: "pipe",
    stdout: "pipe",
    stderr: "pipe",
  });
  const events: Record<string, any>[] = [];
  const reading = (async () => {
    const decoder = new TextDecoder();
    let rest = "";
    for await (const chunk of chat.stdout) {
      rest += decoder.decode(chunk);
      const lines = rest.split("\n");
      rest = lines.pop()!;
      for (const l of lines) if (l.trim()) events.push(JSON.parse(l));
    }
  })();
  await waitFor(() => events.some((e) => e.type === "status" && e.text.startsWith("logged in")), "chat to log in", 20_000);
  const sent = await cli(home, ["send", "--user", alice, "--to", bob, "from a script"]);
  expect({ code: sent.code, stderr: sent.stderr }).toEqual({ code: 0, stderr: "" });
  await waitFor(() => events.some((e) => e.type === "message" && e.text === "from a script"), "chat to show the script's message", 10_000);
  expect(events.find((e) => e.type === "message" && e.text === "from a script")).toMatchObject({ from: alice, to: bob, verified: true });
  expect(events.filter((e) => e.type === "error")).toEqual([]);
  expect(chat.exitCode).toBeNull();
  chat.stdin.write("/quit\n");
  await chat.stdin.end();
  expect(await chat.exited).toBe(0);
  await reading;
});

test("four concurrent sends of one user on one home all succeed, each stored once", async () => {
  const [alice, bob] = [uniqueName("alice"), uniqueName("bob")];
  for (const n of [alice, bob]) await signup(cluster.balancerAddr, n);
  const home = newHome();
  const runs = await Promise.all([1, 2, 3, 4].map((i) => cli(home, ["send", "--user", alice, "--to", bob, `concurrent ${i}`])));
  expect(runs.map((r) => ({ code: r.code, stderr: r.stderr }))).toEqual(Array(4).fill({ code: 0, stderr: "" }));
  const [row] = await sql`select count(*)::int as n, count(distinct cmid)::int as d from messages m join users u on u.id = m.sender_id where u.name = ${alice}`;
  expect(row).toEqual({ n: 4, d: 4 });
  expect((await inboxTexts(newHome(), bob)).sort()).toEqual(["concurrent 1", "concurrent 2", "concurrent 3", "concurrent 4"]);
});

test("delivery and read receipts reach a sender who was offline when they happened, and live while she is online", async () => {
  const [alice, bob] = [uniqueName("alice"), uniqueName("bob")];
  for (const n of [alice, bob]) await signup(cluster.balancerAddr, n);
  const sender = await connectUser(cluster.balancerAddr, alice);
  const sent = await sender.session.sendText(bob, "did you get this?");
  await sender.session.close();
  // Bob's device receives it and bob reads it while alice is away.
  const reader = await connectUser(cluster.balancerAddr, bob);
  await reader.session.flushAcks();
  // Back online: the receipts are stored.
  const receipts: ReceiptEvent[] = [];
  const back = await quietDevice(alice, `device-${alice}`, { receipts });
  expect(await back.receipts(sent.conv)).toEqual([{ conv: sent.conv, user: bob, delivered: sent.seq, read: sent.seq }]);
  // Live: a second message, delivered and read while alice is connected.
  const second = await back.sendText(bob, "and this?");
  await waitFor(() => receipts.some((r) => r.user === bob && r.read === second.seq), "a live read receipt");
  expect(receipts.some((r) => r.user === bob && (r.delivered ?? 0) >= second.seq)).toBe(true);
  await reader.session.close();
});

test("with read receipts off, a user sends none and sees no one's; delivery receipts still flow", async () => {
  const [alice, bob] = [uniqueName("alice"), uniqueName("bob")];
  for (const n of [alice, bob]) await signup(cluster.balancerAddr, n);
  const off = await cli(newHome(), ["settings", "--user", bob, "--read-receipts", "off"]);
  expect(off.stdout.trim()).toBe("read receipts: off");
  const receipts: ReceiptEvent[] = [];
  const sender = await quietDevice(alice, `device-${alice}`, { receipts });
  const sent = await sender.sendText(bob, "private reader");
  const reader = await connectUser(cluster.balancerAddr, bob);
  open.push(reader.session);
  await waitFor(() => reader.texts().includes("private reader"), "bob to read it");
  await reader.session.flushAcks();
  await waitFor(() => receipts.some((r) => (r.delivered ?? 0) >= sent.seq), "the delivery receipt");
  await Bun.sleep(300);
  expect(receipts.filter((r) => r.read !== undefined)).toEqual([]);
  expect(await sender.receipts(sent.conv)).toEqual([{ conv: sent.conv, user: bob, delivered: sent.seq }]);
  // And bob sees no read receipt of alice's, though she read his reply.
  const reply = await reader.session.sendText(alice, "reply");
  sender.markRead(reply.conv, reply.seq);
  await sender.flushAcks();
  expect(await reader.session.receipts(reply.conv)).toEqual([{ conv: reply.conv, user: alice, delivered: reply.seq }]);
});

test("typing reaches the other party on another server, and nothing of it is stored", async () => {
  const [alice, bob] = [uniqueName("alice"), uniqueName("bob")];
  for (const n of [alice, bob]) await signup(cluster.balancerAddr, n);
  const a = await connectUser(cluster.balancerAddr, alice);
  open.push(a.session);
  await a.session.sendText(bob, "hello");
  const typing: TypingEvent[] = [];
  let b = await quietDevice(bob, `device-${bob}`, { typing });
  for (let i = 0; b.serverId === a.session.serverId; i++) {
    if (i === 5) throw new Error("could not place the two apart");
    await b.close();
    b = await quietDevice(bob, `device-${bob}`, { typing });
  }
  const before = await rowCounts();
  a.session.typing({ to: bob });
  await waitFor(() => typing.some((t) => t.from === alice), "bob to see alice typing", 5_000);
  expect(await rowCounts()).toEqual(before);
});

/** How many rows every table holds, but the ones that change by themselves (heartbeats). */
async function rowCounts(): Promise<Record<string, number>> {
  const tables = await sql`select tablename from pg_tables where schemaname = 'public' and tablename not in ('servers')`;
  const out: Record<string, number> = {};
  for (const { tablename } of tables) out[tablename] = (await sql.unsafe(`select count(*)::int as n from "${tablename}"`))[0]!.n;
  return out;
}

test("chatterbox devices lists the user's devices by name, and devices revoke ends one", async () => {
  const alice = uniqueName("alice");
  await signup(cluster.balancerAddr, alice);
  const [laptop, phone] = [newHome(), newHome()];
  expect((await cli(laptop, ["devices", "--user", alice, "--device-name", "laptop", "--json"])).code).toBe(0);
  const listed = await cli(phone, ["devices", "--user", alice, "--device-name", "phone", "--json"]);
  const { devices } = JSON.parse(listed.stdout) as { devices: { id: string; name: string; current: boolean; online: boolean }[] };
  expect(devices.map((d) => [d.name, d.current])).toEqual([
    ["laptop", false],
    ["phone", true],
  ]);
  const laptopId = devices.find((d) => d.name === "laptop")!.id;
  const revoked = await cli(phone, ["devices", "revoke", laptopId, "--user", alice]);
  expect({ code: revoked.code, out: revoked.stdout.trim() }).toEqual({ code: 0, out: `Revoked ${laptopId}: its tokens are gone and 0 connection(s) were closed` });
  const after = JSON.parse((await cli(phone, ["devices", "--user", alice, "--json"])).stdout) as { devices: { name: string }[] };
  expect(after.devices.map((d) => d.name)).toEqual(["phone"]);
});

test("a wrong CHATTERBOX_PASSWORD is not silently ignored when the device resumes its saved session", async () => {
  const [alice, bob] = [uniqueName("alice"), uniqueName("bob")];
  for (const n of [alice, bob]) await signup(cluster.balancerAddr, n);
  const home = newHome();
  expect((await cli(home, ["send", "--user", alice, "--to", bob, "with the right password"])).stderr).toBe("");
  await using proc = Bun.spawn([process.execPath, join(ROOT, "cli.ts"), "send", "--user", alice, "--to", bob, "with a wrong one", "--balancer", cluster.balancerAddr], {
    env: { ...process.env, CHATTERBOX_HOME: home, CHATTERBOX_PASSWORD: "not the password at all", CHATTERBOX_TEST_KDF: "1" },
    stdout: "pipe",
    stderr: "pipe",
  });
  const [stderr, code] = await Promise.all([new Response(proc.stderr).text(), proc.exited]);
  expect(code).toBe(0);
  expect(stderr).toContain("the password given is not this account's");
  // And the right one stays quiet.
  expect((await cli(home, ["send", "--user", alice, "--to", bob, "right again"])).stderr).toBe("");
});
