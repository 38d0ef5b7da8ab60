/**
 * A server that tampers with what it stores is caught by the receiving client.
 * Each test plays the malicious operator: it edits ChatDB directly while the
 * recipient is offline, and the recipient's client, at its next login, must
 * show a message that failed verification (with the reason, never its text)
 * or hold it back, never show it as trusted.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { randomUUID } from "node:crypto";
import { rmSync } from "node:fs";
import postgres from "postgres";
import { dmLabel } from "../client/e2e";
import { encodeContent } from "../client/content";
import type { Received } from "../client/session";
import { parseEnvelope } from "../crypto/envelope-format";
import { seal } from "../crypto/envelope";
import { generateIdentity, type IdentityKeys } from "../crypto/keys";
import { safetyNumber } from "../crypto/safety";
import { connectPersistent, connectUser, freshHome, signup, startCluster, type Cluster, type TestUser } from "./support/cluster";

let cluster: Cluster;
let sql: postgres.Sql;
const originalHome = process.env.CHATTERBOX_HOME;
const keys: Record<string, IdentityKeys> = {};
const ids: Record<string, number> = {};

beforeAll(async () => {
  cluster = await startCluster({ servers: 2 });
  sql = postgres(cluster.url, { max: 1, onnotice: () => {} });
  for (const name of ["alice", "bob", "carol"]) keys[name] = await signup(cluster.balancerAddr, name);
  for (const row of await sql`select id, name from users`) ids[row.name] = row.id;
}, 60_000);

afterAll(async () => {
  process.env.CHATTERBOX_HOME = originalHome;
  for (const home of homes) rmSync(home, { recursive: true, force: true });
  await sql?.end();
  await cluster?.stop();
});

/** What the reader is shown of a message: its claimed sender, whether it verified, why not, and the text. */
function shown(m: Received) {
  return { from: m.from, verified: m.verified, code: m.code, text: m.text };
}

/** `from` sends one message while `to` is offline; resolves to its row id. */
async function sendWhileOffline(from: string, to: string, text: string): Promise<number> {
  const sender = await connectUser(cluster.balancerAddr, from);
  const { msg } = await sender.session.sendText(to, text);
  await sender.session.close();
  return msg;
}

/** The recipient logs in, is shown what waits for it, and logs out again. */
async function readAs(name: string): Promise<TestUser> {
  const user = await connectUser(cluster.balancerAddr, name);
  await user.session.close();
  return user;
}

async function bodyOf(id: number): Promise<Uint8Array> {
  const [row] = await sql`select body from messages where id = ${id}`;
  return new Uint8Array(row!.body);
}

async function conversationOf(a: string, b: string): Promise<number> {
  const [low, high] = [ids[a]!, ids[b]!].sort((x, y) => x - y);
  const [row] = await sql`select id from conversations where dm_key = ${`${low}:${high}`}`;
  return row!.id;
}

/** What a server would do to slip a message in: the next sequence number, and a row. */
async function insertMessage(conv: number, sender: string, cmid: string, body: Uint8Array): Promise<number> {
  return sql.begin(async (tx) => {
    const [c] = await tx`update conversations set last_seq = last_seq + 1 where id = ${conv} returning last_seq`;
    const [m] = await tx`insert into messages (conversation_id, seq, sender_id, cmid, body)
                         values (${conv}, ${c!.last_seq}, ${ids[sender]!}, ${cmid}, ${body}) returning id`;
    return Number(m!.id);
  });
}

const homes: string[] = [];

describe("a server that alters a stored message", () => {
  test("a flipped byte in the middle of the ciphertext is caught by the signature (E_SIGNATURE)", async () => {
    const id = await sendWhileOffline("alice", "bob", "this body gets corrupted");
    const body = await bodyOf(id);
    const { ciphertext } = parseEnvelope(body);
    const middle = ciphertext.byteOffset - body.byteOffset + (ciphertext.length >> 1);
    body[middle]! ^= 0x01;
    await sql`update messages set body = ${body} where id = ${id}`;

    const bob = await readAs("bob");
    expect(bob.received.map(shown)).toEqual([{ from: "alice", verified: false, code: "E_SIGNATURE", text: "" }]);
    expect(bob.received[0]!.problem).toBeTruthy();
  });

  test("a message whose sender the server swapped is caught: the named sender did not sign it (E_SIGNATURE)", async () => {
    const id = await sendWhileOffline("alice", "bob", "alice wrote this, not carol");
    await sql`update messages set sender_id = ${ids.carol!} where id = ${id}`;

    const bob = await readAs("bob");
    expect(bob.received.map(shown)).toEqual([{ from: "carol", verified: false, code: "E_SIGNATURE", text: "" }]);
    expect(bob.received[0]!.problem).toContain("carol");
  });

  test("a swapped sender with the envelope's sender name rewritten to match is caught by the signature (E_SIGNATURE)", async () => {
    const id = await sendWhileOffline("alice", "bob", "alice wrote this too");
    const body = await bodyOf(id);
    const [from, to] = [new TextEncoder().encode("alice"), new TextEncoder().encode("carol")];
    // The header starts with the version byte and the sender's name, one length byte first.
    expect(body.subarray(0, 2 + from.length)).toEqual(Uint8Array.of(1, from.length, ...from));
    const forged = Uint8Array.of(1, to.length, ...to, ...body.subarray(2 + from.length));
    await sql`update messages set sender_id = ${ids.carol!}, body = ${forged} where id = ${id}`;

    const bob = await readAs("bob");
    expect(bob.received.map(shown)).toEqual([{ from: "carol", verified: false, code: "E_SIGNATURE", text: "" }]);
  });
});

describe("a server that replays an old message", () => {
  test("an old envelope stored again under a new message id is caught (E_REPLAY)", async () => {
    const original = await sendWhileOffline("alice", "bob", "pay carol 10 euros");
    expect((await readAs("bob")).received.map(shown)).toEqual([{ from: "alice", verified: true, code: undefined, text: "pay carol 10 euros" }]);
    // The unique (sender, cmid) index forbids a second row with the same cmid: the server must pick another.
    await insertMessage(await conversationOf("alice", "bob"), "alice", randomUUID(), await bodyOf(original));

    const bob = await readAs("bob");
    expect(bob.received.map(shown)).toEqual([{ from: "alice", verified: false, code: "E_REPLAY", text: "" }]);
  });

  test("an envelope seen before, replayed under its own id after the original row is gone, is not shown twice (E_REPLAY)", async () => {
    const home = freshHome(homes);
    await sendWhileOffline("alice", "bob", "the door code is 4711");
    // This bob remembers, under his CHATTERBOX_HOME, which message ids he has seen.
    const bob = await connectPersistent(cluster.balancerAddr, home, "bob");
    await bob.session.close();
    expect(bob.texts()).toEqual(["the door code is 4711"]);
    const [first] = await sql`select id, cmid, body from messages where id = ${bob.received[0]!.id}`;
    await sql`delete from messages where id = ${first!.id}`;
    await insertMessage(await conversationOf("alice", "bob"), "alice", first!.cmid, new Uint8Array(first!.body));

    const again = await connectPersistent(cluster.balancerAddr, home, "bob");
    await again.session.close();
    expect(again.received.map(shown)).toEqual([{ from: "alice", verified: false, code: "E_REPLAY", text: "" }]);
    expect(again.received[0]!.problem).toContain(`message ${first!.id}`);
  });

  test("a message replayed into another conversation is rejected: its envelope names another recipient (E_WRONG_RECIPIENT)", async () => {
    const toBob = await sendWhileOffline("alice", "bob", "for bob's eyes only");
    await readAs("bob");
    await sendWhileOffline("alice", "carol", "hello carol");
    await insertMessage(await conversationOf("alice", "carol"), "alice", randomUUID(), await bodyOf(toBob));

    const carol = await readAs("carol");
    expect(carol.received.map(shown)).toEqual([
      { from: "alice", verified: true, code: undefined, text: "hello carol" },
      { from: "alice", verified: false, code: "E_WRONG_RECIPIENT", text: "" },
    ]);
  });
});

describe("a server that substitutes a contact's public key", () => {
  const home = freshHome(homes);
  const mallory = generateIdentity();
  const forgedText = "send your password to mallory";
  let alice: TestUser;
  let numberBefore: string;
  let rowsBefore: number;

  test("both sides of a conversation see the same safety number: 60 digits in groups of five", async () => {
    // Each pins the other's key on first use: bob by writing to alice, alice by reading him.
    await sendWhileOffline("bob", "alice", "hi alice");
    alice = await connectPersistent(cluster.balancerAddr, home, "alice");
    // Alice never read what the earlier tests forged into her conversations: a new device shows it, as failed.
    expect(alice.received.filter((m) => m.verified).map((m) => m.text)).toEqual(["hi alice"]);
    expect(alice.received.filter((m) => !m.verified).every((m) => m.text === "" && m.code === "E_SIGNATURE")).toBe(true);
    await alice.session.sendText("bob", "hi bob");
    numberBefore = await alice.session.safetyNumber("bob");
    await alice.session.close();
    const bob = await connectUser(cluster.balancerAddr, "bob");
    const bobsNumber = await bob.session.safetyNumber("alice");
    await bob.session.close();

    expect(numberBefore).toMatch(/^\d{5}( \d{5}){11}$/);
    expect(bobsNumber).toBe(numberBefore);
  });

  test("after the server hands out another key for a pinned contact, sending to them is refused (E_KEY_CHANGED)", async () => {
    await sql`update users set dh_public = ${mallory.dhPublic}, sign_public = ${mallory.signPublic} where id = ${ids.bob!}`;
    // The server's own message "from bob", made with the key it substituted.
    const cmid = randomUUID();
    const forged = seal({
      header: { v: 1, from: "bob", conv: dmLabel("alice", "bob"), cmid, sentAt: Date.now(), kind: "text" },
      plaintext: encodeContent({ kind: "text", text: forgedText }),
      sender: mallory,
      recipients: [{ name: "alice", dh: keys.alice!.dhPublic }],
    });
    await insertMessage(await conversationOf("alice", "bob"), "bob", cmid, forged);
    rowsBefore = (await sql`select count(*)::int as n from messages`)[0]!.n;

    alice = await connectPersistent(cluster.balancerAddr, home, "alice");
    const refused = await alice.session.sendText("bob", "are you still there?").catch((e) => e);
    expect(refused.code).toBe("E_KEY_CHANGED");
    expect((await sql`select count(*)::int as n from messages`)[0]!.n).toBe(rowsBefore);
  });

  test("a message signed with the substituted key is held, not shown, and the user is warned loudly", async () => {
    expect(alice.received).toEqual([]);
    expect(alice.session.heldFrom("bob")).toBe(1);
    const warnings = alice.statuses.filter((s) => s.startsWith("WARNING: the identity key of bob has changed"));
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toContain("/verify bob");
  });

  test("while the key change is unaccepted, history shows nothing from that contact as text", async () => {
    const fromBob = (await alice.session.history("bob")).filter((m) => m.from === "bob");
    expect(fromBob.length).toBeGreaterThanOrEqual(2);
    expect(fromBob.map(shown)).toEqual(fromBob.map(() => ({ from: "bob", verified: false, code: "E_KEY_CHANGED", text: "" })));
  });

  test("while the key change is unaccepted, the safety number shown is that of the offered key, so comparing it exposes the substitution", async () => {
    const withOffered = safetyNumber(
      { name: "alice", dh: keys.alice!.dhPublic, sign: keys.alice!.signPublic },
      { name: "bob", dh: mallory.dhPublic, sign: mallory.signPublic },
    );
    // What the real bob reads out over the phone is numberBefore: it must not match what alice is shown.
    const shownToAlice = await alice.session.safetyNumber("bob");
    expect(shownToAlice).not.toBe(numberBefore);
    expect(shownToAlice).toBe(withOffered);
  });

  test("after /trust, the held message is shown and the safety number has changed", async () => {
    expect(await alice.session.trust("bob")).toBe(1);
    expect(alice.received.map(shown)).toEqual([{ from: "bob", verified: true, code: undefined, text: forgedText }]);
    const numberAfter = await alice.session.safetyNumber("bob");
    expect(numberAfter).toMatch(/^\d{5}( \d{5}){11}$/);
    expect(numberAfter).not.toBe(numberBefore);
    await alice.session.close();
  });

  test("substituting only the encryption key (X25519), which would let the server read what is sent, is caught too", async () => {
    await sql`update users set dh_public = ${generateIdentity().dhPublic} where id = ${ids.bob!}`;
    alice = await connectPersistent(cluster.balancerAddr, home, "alice");
    const refused = await alice.session.sendText("bob", "for bob only").catch((e) => e);
    await alice.session.close();
    expect(refused.code).toBe("E_KEY_CHANGED");
  });
});
