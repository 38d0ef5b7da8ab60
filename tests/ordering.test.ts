/**
 * Delivery guarantee 3, "ordered per conversation": sequence numbers are given
 * under the conversation's row lock, so numbering has no holes and a message
 * committed later never gets a lower number than one already visible; a cursor
 * built on that never skips a late commit.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { randomUUID } from "node:crypto";
import postgres from "postgres";
import { encodeContent } from "../client/content";
import type { SendResult } from "../client/session";
import { openDatabase, type Database } from "../db/connect";
import { Store, type AppendItem } from "../server/store";
import { connectUser, signup, startCluster, uniqueName, waitFor, type Cluster, type TestUser } from "./support/cluster";

let cluster: Cluster;
let sql: postgres.Sql;
/** Two separate connection pools: two servers' stores writing at once. */
let databases: [Database, Database];
const sessions: TestUser[] = [];

beforeAll(async () => {
  cluster = await startCluster({ servers: 2 });
  sql = postgres(cluster.url, { max: 2, onnotice: () => {} });
  databases = [openDatabase(cluster.url, { max: 8 }), openDatabase(cluster.url, { max: 8 })];
}, 60_000);
afterAll(async () => {
  for (const user of sessions) await user.session.close();
  await sql.end();
  for (const database of databases) await database.close();
  await cluster.stop();
});

async function freshUsers(...prefixes: string[]): Promise<string[]> {
  const names = prefixes.map(uniqueName);
  for (const name of names) await signup(cluster.balancerAddr, name);
  return names;
}

async function connect(name: string): Promise<TestUser> {
  const user = await connectUser(cluster.balancerAddr, name);
  sessions.push(user);
  return user;
}

/** Connects `name` to a different server than `other`; round robin alternates, so this takes a try or two. */
async function connectApartFrom(other: TestUser, name: string): Promise<TestUser> {
  for (let attempt = 0; attempt < 5; attempt++) {
    const user = await connect(name);
    if (user.session.serverId !== other.session.serverId) return user;
    await user.session.close();
  }
  throw new Error(`could not place ${name} on another server than ${other.name}`);
}

/**
 * Another server's transaction: runs `work`, then stays open until the
 * returned release(), which waits for its commit (once, however often called).
 */
async function heldOpen(work: (tx: postgres.TransactionSql) => Promise<unknown>): Promise<{ release(): Promise<void> }> {
  const other = postgres(cluster.url, { max: 1, onnotice: () => {} });
  let release!: () => void;
  const released = new Promise<void>((resolve) => (release = resolve));
  let holding!: () => void;
  const held = new Promise<void>((resolve) => (holding = resolve));
  const committed = other.begin(async (tx) => {
    await work(tx);
    holding();
    await released;
  });
  await Promise.race([held, committed]);
  let ended: Promise<void> | undefined;
  return {
    release: () =>
      (ended ??= (async () => {
        release();
        try {
          await committed;
        } finally {
          await other.end();
        }
      })()),
  };
}

/** Waits until a statement whose text contains `text` waits for a lock. */
async function waitingForLock(text: string, what: string): Promise<void> {
  const deadline = Date.now() + 5_000;
  for (;;) {
    const [waiting] = await sql`select count(*)::int as n from pg_stat_activity
                                where datname = current_database() and wait_event_type = 'Lock' and query like ${`%${text}%`}`;
    if (waiting!.n > 0) return;
    if (Date.now() > deadline) throw new Error(`${what} never waited for the lock`);
    await Bun.sleep(10);
  }
}

async function storedSeqs(conv: number): Promise<number[]> {
  const rows = await sql`select seq::int as seq from messages where conversation_id = ${conv} order by seq`;
  return rows.map((r) => r.seq as number);
}

const oneToN = (n: number) => Array.from({ length: n }, (_, i) => i + 1);
const body = (text: string) => encodeContent({ kind: "text", text });

/** The first place where a sequence does not increase, or null: short to print when it fails. */
function firstInversion(seqs: number[]): { index: number; previous: number; seq: number } | null {
  for (let i = 1; i < seqs.length; i++) if (seqs[i]! <= seqs[i - 1]!) return { index: i, previous: seqs[i - 1]!, seq: seqs[i]! };
  return null;
}

function expectIncreasing(seqs: number[]): void {
  expect(firstInversion(seqs)).toBeNull();
}

/** Which of 1..n are missing from seqs, as a short summary. */
function missing(seqs: number[], n: number): { count: number; first?: number; last?: number } {
  const have = new Set(seqs);
  const gone = oneToN(n).filter((s) => !have.has(s));
  return gone.length === 0 ? { count: 0 } : { count: gone.length, first: gone[0], last: gone[gone.length - 1] };
}

/**
 * Sends `count` numbered texts, `window` unacknowledged at a time, started in
 * index order. The first goes alone, so that the conversation exists and the
 * servers know both users (a cold first burst has a test of its own below).
 */
async function stream(from: TestUser, to: string, count: number, window: number, label: string): Promise<SendResult[]> {
  const results: SendResult[] = new Array(count);
  results[0] = await from.session.sendText(to, `${label} 0`);
  let next = 1;
  const worker = async () => {
    while (next < count) {
      const i = next++;
      results[i] = await from.session.sendText(to, `${label} ${i}`);
    }
  };
  await Promise.all(Array.from({ length: window }, worker));
  return results;
}

test("concurrent group commits from two servers number each conversation 1..N, and no reader ever sees a number before every lower one is committed", async () => {
  const [a, b, c] = await freshUsers("ann", "ben", "cat");
  const primary = new Store(databases[0].sql);
  const ids = await primary.usersByName([a!, b!, c!]);
  const [ann, ben, cat] = [ids.get(a!)!, ids.get(b!)!, ids.get(c!)!];
  // Three conversations, so batches lock several rows and must take them in one order.
  const convs = [
    { id: await primary.directConversation(ann, ben), members: [ann, ben] },
    { id: await primary.directConversation(ann, cat), members: [ann, cat] },
    { id: await primary.directConversation(ben, cat), members: [ben, cat] },
  ];
  const convIds = convs.map((cv) => cv.id);

  // A reader that keeps a cursor would skip a message if it ever saw seq m while a lower one was still to commit:
  // in one snapshot, the highest number must equal the count.
  let writing = true;
  let observations = 0;
  const skipped: { conv: number; n: number; m: number }[] = [];
  const reader = (async () => {
    while (writing) {
      const rows = await sql`
        select conversation_id as conv, count(*)::int as n, max(seq)::int as m
        from messages where conversation_id = any(${convIds}) group by conversation_id`;
      for (const r of rows) if (r.n !== r.m) skipped.push({ conv: r.conv, n: r.n, m: r.m });
      observations++;
    }
  })();

  const BATCHES = 25;
  const PER_BATCH = 20;
  const WRITERS_PER_STORE = 4;
  const writer = async (store: Store) => {
    for (let round = 0; round < BATCHES; round++) {
      const items: AppendItem[] = Array.from({ length: PER_BATCH }, (_, i) => {
        const conv = convs[Math.floor(Math.random() * convs.length)]!;
        return { senderId: conv.members[i % 2]!, convId: conv.id, cmid: randomUUID(), body: body(`batch ${round} item ${i}`) };
      });
      const results = await store.appendBatch(items);
      expect(results.every((r) => r.ok && !r.duplicate)).toBe(true);
    }
  };
  const stores = databases.map((d) => new Store(d.sql));
  try {
    await Promise.all(stores.flatMap((store) => Array.from({ length: WRITERS_PER_STORE }, () => writer(store))));
  } finally {
    writing = false;
    await reader;
  }

  expect(observations).toBeGreaterThan(10);
  expect(skipped).toEqual([]);
  let total = 0;
  for (const conv of convIds) {
    const seqs = await storedSeqs(conv);
    expect(seqs).toEqual(oneToN(seqs.length));
    const [row] = await sql`select last_seq::int as last from conversations where id = ${conv}`;
    expect(row!.last).toBe(seqs.length);
    total += seqs.length;
  }
  expect(total).toBe(2 * WRITERS_PER_STORE * BATCHES * PER_BATCH);
});

test("two users writing to each other from two servers, one reconnecting mid-stream: a cursor never skips a late commit and an acknowledged message never comes back", async () => {
  const [a, b] = await freshUsers("alice", "bob");
  const alice = await connect(a!);
  const bob1 = await connectApartFrom(alice, b!);
  const FROM_ALICE = 300;
  const FROM_BOB = 100;

  const aliceSending = stream(alice, b!, FROM_ALICE, 10, "from alice");
  const bobSent = await stream(bob1, a!, FROM_BOB, 10, "from bob");
  await waitFor(() => bob1.received.length >= 20, "bob to receive from alice");
  // Leave while alice is still sending (acknowledgements are flushed by close).
  await bob1.session.close();
  const conv = bobSent[0]!.conv;
  const cursor = await deviceCursor(b!, conv);
  const bob2 = await connect(b!);
  const aliceSent = await aliceSending;
  expect(bob1.received.length).toBeLessThan(FROM_ALICE);

  // Numbering: both writers share one conversation, numbered 1..N without holes, each writer's sends in send order.
  expect(await storedSeqs(conv)).toEqual(oneToN(FROM_ALICE + FROM_BOB));
  expectIncreasing(aliceSent.map((r) => r.seq));
  expectIncreasing(bobSent.map((r) => r.seq));

  const aliceIds = aliceSent.map((r) => r.msg);
  await waitFor(() => new Set([...bob1.received, ...bob2.received].map((m) => m.id)).size >= FROM_ALICE, "bob to have every message from alice");
  await waitFor(() => alice.received.length >= FROM_BOB, "alice to have every message from bob");
  await Bun.sleep(300);

  for (const session of [bob1, bob2, alice]) {
    expect(new Set(session.received.map((m) => m.id)).size).toBe(session.received.length);
    expectIncreasing(session.received.map((m) => m.seq));
  }
  // Nothing missed across the two sessions...
  expect(new Set([...bob1.received, ...bob2.received].map((m) => m.id))).toEqual(new Set(aliceIds));
  // ...and the second starts exactly after the acknowledged cursor: nothing acknowledged comes back, nothing past it is skipped.
  expect(cursor).toBeGreaterThan(0);
  expect(bob2.received.every((m) => m.seq > cursor)).toBe(true);
  expect(bob2.received.map((m) => m.id)).toEqual(aliceSent.filter((r) => r.seq > cursor).map((r) => r.msg));
  expect(alice.received.map((m) => m.id)).toEqual(bobSent.map((r) => r.msg));
});

test("one sender's pipelined sends are numbered and delivered in the order they were sent", async () => {
  // Fresh users: the servers have not looked them up yet, as for a first conversation.
  const [a, b] = await freshUsers("alice", "bob");
  const alice = await connect(a!);
  const bob = await connectApartFrom(alice, b!);
  const COUNT = 200;
  const texts = Array.from({ length: COUNT }, (_, i) => `pipelined ${i}`);
  const results = await Promise.all(texts.map((t) => alice.session.sendText(b!, t)));
  const seqs = results.map((r) => r.seq);
  expect(firstInversion(seqs)).toBeNull();
  expect(seqs).toEqual(oneToN(COUNT));
  await waitFor(() => bob.received.length >= COUNT, "bob to receive every message");
  await Bun.sleep(200);
  expect(bob.texts()).toEqual(texts);
});

test("a gap longer than one fetch page is filled completely before the cursor moves past it", async () => {
  const [a, b] = await freshUsers("alice", "bob");
  const bob = await connect(b!);
  const alice = await connectApartFrom(bob, a!);
  const store = new Store(databases[0].sql);
  const ids = await store.usersByName([a!, b!]);
  const conv = await store.directConversation(ids.get(a!)!, ids.get(b!)!);
  // Committed while the live path lost them (a peer link that dropped its queue):
  // the record has them, and bob's client must fetch them when a later message shows the gap.
  // Their bodies are not envelopes alice sealed, so bob's client shows them as unreadable:
  // this test counts places in the sequence, not texts.
  const MISSED = 1500;
  for (let start = 0; start < MISSED; start += 500) {
    const items = Array.from({ length: 500 }, (_, i) => ({ senderId: ids.get(a!)!, convId: conv, cmid: randomUUID(), body: body(`missed ${start + i}`) }));
    expect((await store.appendBatch(items)).every((r) => r.ok)).toBe(true);
  }
  const live = await alice.session.sendText(b!, "live");
  expect(live.seq).toBe(MISSED + 1);

  await waitFor(() => bob.received.some((m) => m.id === live.msg), "bob to receive the live message");
  await waitFor(() => bob.received.length >= MISSED + 1, "bob to fill the gap", 2_000).catch(() => {});
  const seqs = bob.received.map((m) => m.seq);
  expect(missing(seqs, MISSED + 1)).toEqual({ count: 0 });
  expect(seqs).toEqual(oneToN(MISSED + 1));
  // And the server's cursor does not pass a message bob never saw.
  await bob.session.flushAcks();
  expect(await deviceCursor(b!, conv)).toBe(bob.received.length);
});

test("a send refused as a duplicate leaves no hole in its conversation's numbering", async () => {
  const [a, b, c] = await freshUsers("alice", "bob", "carol");
  const store = new Store(databases[1].sql);
  const ids = await store.usersByName([a!, b!, c!]);
  const [alice, bob, carol] = [ids.get(a!)!, ids.get(b!)!, ids.get(c!)!];
  const withBob = await store.directConversation(alice, bob);
  const withCarol = await store.directConversation(alice, carol);
  const cmid = randomUUID();

  // Another server's group commit, holding alice's message to bob (this cmid) uncommitted: the same
  // steps as appendBatch, paused before COMMIT.
  const other = await heldOpen(async (tx) => {
    const [row] = await tx`update conversations set last_seq = last_seq + 1 where id = ${withBob} returning last_seq`;
    await tx`insert into messages (conversation_id, seq, sender_id, cmid, body)
             values (${withBob}, ${row!.last_seq}, ${alice}, ${cmid}, ${body("to bob")})`;
  });
  try {
    // The same client message id, sent to carol meanwhile (a buggy or hostile client), waits on the unique index.
    const refusedAppend = store.appendBatch([{ senderId: alice, convId: withCarol, cmid, body: body("to carol") }]);
    await waitingForLock("insert into messages", "the second commit");
    await other.release();
    const [refused] = await refusedAppend;
    expect(refused).toMatchObject({ ok: false, code: "E_DUPLICATE" });
  } finally {
    await other.release();
  }

  const [next] = await store.appendBatch([{ senderId: alice, convId: withCarol, cmid: randomUUID(), body: body("to carol, for real") }]);
  expect(next).toMatchObject({ ok: true, seq: 1 });
  expect(await storedSeqs(withCarol)).toEqual([1]);
});

test("messages, members and device cursors keep no foreign-key checks, yet deleting a conversation, a user or a device deletes their rows, and nothing else", async () => {
  const [a, b, c] = await freshUsers("alice", "bob", "carol");
  const store = new Store(databases[0].sql);
  const ids = await store.usersByName([a!, b!, c!]);
  const [alice, bob, carol] = [ids.get(a!)!, ids.get(b!)!, ids.get(c!)!];
  const withBob = await store.directConversation(alice, bob);
  const withCarol = await store.directConversation(alice, carol);
  const bobCarol = await store.directConversation(bob, carol);
  const sent = await store.appendBatch([
    { senderId: alice, convId: withBob, cmid: randomUUID(), body: body("1") },
    { senderId: bob, convId: withBob, cmid: randomUUID(), body: body("2") },
    { senderId: alice, convId: withCarol, cmid: randomUUID(), body: body("3") },
    { senderId: carol, convId: withCarol, cmid: randomUUID(), body: body("4") },
    { senderId: bob, convId: bobCarol, cmid: randomUUID(), body: body("5") },
  ]);
  expect(sent.every((r) => r.ok)).toBe(true);
  const [fks] = await sql`select count(*)::int as n from pg_constraint where conrelid = 'messages'::regclass and contype = 'f'`;
  expect(fks!.n).toBe(0);
  const count = async (where: postgres.PendingQuery<postgres.Row[]>) => (await where)[0]!.n as number;

  // Members and device cursors have no per-row key checks either (migration 0011): the same cascades, by trigger.
  const [memberFks] = await sql`select count(*)::int as n from pg_constraint where conrelid in ('members'::regclass, 'device_cursors'::regclass) and contype = 'f'`;
  expect(memberFks!.n).toBe(0);
  const [device] = await sql`insert into devices (user_id, key, name) values (${carol}, ${randomUUID()}, 'phone') returning id`;
  await sql`insert into device_cursors (device_id, conversation_id, seq) values (${device!.id}, ${withCarol}, 1), (${device!.id}, ${bobCarol}, 1)`;
  expect(await count(sql`select count(*)::int as n from members where conversation_id = ${withCarol}`)).toBe(2);

  await sql`delete from conversations where id = ${withCarol}`;
  expect(await count(sql`select count(*)::int as n from messages where conversation_id = ${withCarol}`)).toBe(0);
  expect(await count(sql`select count(*)::int as n from members where conversation_id = ${withCarol}`)).toBe(0);
  expect(await count(sql`select count(*)::int as n from device_cursors where conversation_id = ${withCarol}`)).toBe(0);
  await sql`delete from devices where id = ${device!.id}`;
  expect(await count(sql`select count(*)::int as n from device_cursors where device_id = ${device!.id}`)).toBe(0);
  // A send to the removed conversation (a server may still have its id) is refused, and stores nothing.
  const [gone] = await store.appendBatch([{ senderId: alice, convId: withCarol, cmid: randomUUID(), body: body("6") }]);
  expect(gone).toMatchObject({ ok: false, code: "E_NO_SUCH_USER" });
  expect(await count(sql`select count(*)::int as n from messages where conversation_id = ${withCarol}`)).toBe(0);
  expect(await storedSeqs(withBob)).toEqual([1, 2]);

  await sql`delete from users where id = ${bob}`;
  expect(await count(sql`select count(*)::int as n from messages where sender_id = ${bob}`)).toBe(0);
  expect(await count(sql`select count(*)::int as n from members where user_id = ${bob}`)).toBe(0);
  expect(await count(sql`select count(*)::int as n from members where user_id = ${alice}`)).toBe(1);
  // Alice's message to bob stays until their conversation goes, as with the old keys.
  expect(await storedSeqs(withBob)).toEqual([1]);
  expect(await storedSeqs(bobCarol)).toEqual([]);
});

test("a membership change committed while a batch waits for the group's lock: the batch stores for the members at its commit, not those of its snapshot", async () => {
  const [a, b, c] = await freshUsers("alice", "bob", "carol");
  const store = new Store(databases[0].sql);
  const ids = await store.usersByName([a!, b!, c!]);
  const [alice, bob, carol] = [ids.get(a!)!, ids.get(b!)!, ids.get(c!)!];
  const [group] = await sql`insert into conversations (kind, name, epoch) values ('group', ${uniqueName("g")}, 1) returning id`;
  const conv = group!.id as number;
  await sql`insert into members (conversation_id, user_id, role) values (${conv}, ${alice}, 'admin'), (${conv}, ${bob}, 'member')`;

  // Another server adds carol (epoch 1 -> 2) and holds its transaction open.
  const change = await heldOpen(async (tx) => {
    await tx`update conversations set epoch = 2 where id = ${conv}`;
    await tx`insert into members (conversation_id, user_id) values (${conv}, ${carol})`;
  });
  try {
    // Sealed for the new membership (carol included), and one for the old: the batch's snapshot still has the old.
    const appending = store.appendBatch([
      { senderId: alice, convId: conv, cmid: randomUUID(), body: body("for bob and carol"), epoch: 2 },
      { senderId: bob, convId: conv, cmid: randomUUID(), body: body("for alice only"), epoch: 1 },
    ]);
    await waitingForLock("group commit", "the batch");
    await change.release();
    const [current, stale] = await appending;
    expect(current).toMatchObject({ ok: true, seq: 1, duplicate: false });
    expect(current!.ok && [...current!.recipients!].sort((x, y) => x - y)).toEqual([bob, carol].sort((x, y) => x - y));
    expect(stale).toMatchObject({ ok: false, code: "E_STALE_MEMBERS" });
    expect(await storedSeqs(conv)).toEqual([1]);
  } finally {
    await change.release();
  }
});

/** How far the user's one device has received in a conversation (0 before its first acknowledgement there). */
async function deviceCursor(name: string, conv: number): Promise<number> {
  const [row] = await sql`select dc.seq::int as seq from device_cursors dc join devices d on d.id = dc.device_id join users u on u.id = d.user_id
                          where u.name = ${name} and dc.conversation_id = ${conv}`;
  return (row?.seq as number | undefined) ?? 0;
}

test("a user who only sends leaves with a cursor past their own messages, so the next login replays none of them", async () => {
  const [a, b] = await freshUsers("alice", "bob");
  const alice = await connect(a!);
  const sent = await stream(alice, b!, 5, 2, "one way");
  const conv = sent[0]!.conv;
  const cursorOf = () => deviceCursor(a!, conv);
  // Nothing was received, so nothing was acknowledged while connected...
  expect(await cursorOf()).toBe(0);
  await alice.session.close();
  // ...and leaving acknowledges the slots her own messages filled.
  expect(await cursorOf()).toBe(5);
  const replay = await sql`select count(*)::int as n from messages where conversation_id = ${conv} and seq > ${await cursorOf()}`;
  expect(replay[0]!.n).toBe(0);
});
