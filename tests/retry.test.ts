/**
 * Delivery guarantee 1, "a retry never makes a second message": (sender, client
 * message id) names one stored message, whether the retry comes after the
 * answer, at the same moment, inside one group commit, or for another recipient.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { randomUUID } from "node:crypto";
import postgres from "postgres";
import { openDatabase, type Database } from "../db/connect";
import type { Link } from "../net/link";
import type { ChatError } from "../protocol/errors";
import { Store } from "../server/store";
import { rawLink, signup, startCluster, uniqueName, waitFor, type Cluster } from "./support/cluster";
import { refusal } from "./support/errors";

let cluster: Cluster;
let sql: postgres.Sql;
let database: Database;
const links: Link[] = [];

beforeAll(async () => {
  cluster = await startCluster({ servers: 1 });
  sql = postgres(cluster.url, { max: 2, onnotice: () => {} });
  database = openDatabase(cluster.url, { max: 4 });
}, 60_000);
afterAll(async () => {
  for (const link of links) link.close();
  await sql.end();
  await database.close();
  await cluster.stop();
});

/** Three fresh users, each logged in over a raw link; every message event each one gets is recorded. */
async function users() {
  const names = [uniqueName("alice"), uniqueName("bob"), uniqueName("carol")];
  for (const name of names) await signup(cluster.balancerAddr, name);
  const addr = cluster.servers[0]!.addr;
  const logins = await Promise.all(
    names.map(async (name) => {
      const seen: { id: number; conv: number; seq: number }[] = [];
      const link = await rawLink(addr, name, {
        onEvent(ev, frame) {
          if (ev === "msg") seen.push(frame.m as { id: number; conv: number; seq: number });
        },
      });
      links.push(link);
      // Live messages flow once the (empty) backlog is replayed.
      await link.request("sync");
      return { name, link, seen };
    }),
  );
  const [alice, bob, carol] = logins as [(typeof logins)[0], (typeof logins)[0], (typeof logins)[0]];
  return { alice, bob, carol };
}

async function rows(sender: string, cmid: string): Promise<{ id: number; conversation_id: number }[]> {
  return [
    ...(await sql`
      select m.id::int as id, m.conversation_id from messages m join users u on u.id = m.sender_id
      where u.name = ${sender} and m.cmid = ${cmid}`),
  ] as { id: number; conversation_id: number }[];
}

const body = () => crypto.getRandomValues(new Uint8Array(48));

test("a send retried after its answer is stored once and answered with the first message's id", async () => {
  const { alice, bob } = await users();
  const send = { to: bob.name, cmid: randomUUID(), body: body() };
  const first = await alice.link.request("send", send);
  const retry = await alice.link.request("send", send);
  expect(first.duplicate).toBe(false);
  expect(retry.duplicate).toBe(true);
  expect(retry.msg).toBe(first.msg);
  expect(retry.seq).toBe(first.seq);
  expect(retry.conv).toBe(first.conv);
  expect(await rows(alice.name, send.cmid)).toEqual([{ id: first.msg as number, conversation_id: first.conv as number }]);
  await waitFor(() => bob.seen.length >= 1, "bob to receive the message");
  await Bun.sleep(200);
  expect(bob.seen.map((m) => m.id)).toEqual([first.msg as number]);
});

test("the same send twice at once is stored once, and both answers name the same message", async () => {
  const { alice, bob } = await users();
  const send = { to: bob.name, cmid: randomUUID(), body: body() };
  const [a, b] = await Promise.all([alice.link.request("send", send), alice.link.request("send", send)]);
  expect(a.msg).toBe(b.msg);
  expect(a.seq).toBe(b.seq);
  // Exactly one of the two stored it.
  expect([a.duplicate, b.duplicate].sort()).toEqual([false, true]);
  expect((await rows(alice.name, send.cmid)).length).toBe(1);
  await waitFor(() => bob.seen.length >= 1, "bob to receive the message");
  await Bun.sleep(200);
  expect(bob.seen.map((m) => m.id)).toEqual([a.msg as number]);
});

test("a client message id reused for another recipient is refused with E_DUPLICATE and stores nothing", async () => {
  const { alice, bob, carol } = await users();
  const cmid = randomUUID();
  const first = await alice.link.request("send", { to: bob.name, cmid, body: body() });
  const error = await refusal(alice.link.request("send", { to: carol.name, cmid, body: body() }));
  expect(error.code).toBe("E_DUPLICATE");
  expect(await rows(alice.name, cmid)).toEqual([{ id: first.msg as number, conversation_id: first.conv as number }]);
  await waitFor(() => bob.seen.length >= 1, "bob to receive the message");
  await Bun.sleep(200);
  expect(bob.seen.map((m) => m.id)).toEqual([first.msg as number]);
  expect(carol.seen).toEqual([]);
});

test("a client message id reused for another recipient at the same moment is refused, never answered as stored", async () => {
  const { alice, bob, carol } = await users();
  // Warm the server's directory so both sends reach the committer together.
  await alice.link.request("send", { to: bob.name, cmid: randomUUID(), body: body() });
  await alice.link.request("send", { to: carol.name, cmid: randomUUID(), body: body() });
  const cmid = randomUUID();
  const [toBob, toCarol] = await Promise.allSettled([
    alice.link.request("send", { to: bob.name, cmid, body: body() }),
    alice.link.request("send", { to: carol.name, cmid, body: body() }),
  ]);
  const stored = await rows(alice.name, cmid);
  expect(stored.length).toBe(1);
  // Whichever won is the stored one; the other is refused, not acknowledged with a message that is not there.
  const outcomes = [toBob, toCarol].map((o) => (o.status === "fulfilled" ? "stored" : (o.reason as ChatError).code));
  expect(outcomes.sort()).toEqual(["E_DUPLICATE", "stored"]);
  const winner = (toBob.status === "fulfilled" ? toBob : toCarol) as PromiseFulfilledResult<Record<string, unknown>>;
  expect(stored[0]!.conversation_id).toBe(winner.value.conv as number);
});

test("inside one group commit, a repeated client message id is stored once, and refused for another conversation", async () => {
  const { alice, bob, carol } = await users();
  const store = new Store(database.sql);
  const ids = await store.usersByName([alice.name, bob.name, carol.name]);
  const [a, b, c] = [ids.get(alice.name)!, ids.get(bob.name)!, ids.get(carol.name)!];
  const withBob = await store.directConversation(a, b);
  const withCarol = await store.directConversation(a, c);

  const same = randomUUID();
  const [first, again] = await store.appendBatch([
    { senderId: a, convId: withBob, cmid: same, body: body() },
    { senderId: a, convId: withBob, cmid: same, body: body() },
  ]);
  expect(first).toMatchObject({ ok: true, duplicate: false });
  expect(again).toMatchObject({ ok: true, duplicate: true, id: (first as { id: number }).id });
  expect((await rows(alice.name, same)).length).toBe(1);

  const reused = randomUUID();
  const [kept, refused] = await store.appendBatch([
    { senderId: a, convId: withBob, cmid: reused, body: body() },
    { senderId: a, convId: withCarol, cmid: reused, body: body() },
  ]);
  expect(kept).toMatchObject({ ok: true, duplicate: false });
  expect(refused).toMatchObject({ ok: false, code: "E_DUPLICATE" });
  expect(await rows(alice.name, reused)).toEqual([{ id: (kept as { id: number }).id, conversation_id: withBob }]);
});
