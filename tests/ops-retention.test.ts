/**
 * Message retention: `serve --retention-days N` deletes what is older than N
 * days, a batch at a time, and keeps the rest; users still see every message
 * kept, in order, and a device that was offline through the deletion catches
 * up on what is left without waiting for what is gone.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import postgres from "postgres";
import { startRetention } from "../server/retention";
import { connectUser, signup, startCluster, uniqueName, until, waitFor, type Cluster } from "./support/cluster";
import { spawnRole } from "./support/roles";

let cluster: Cluster;
let sql: postgres.Sql;

beforeAll(async () => {
  cluster = await startCluster({ servers: 1 });
  sql = postgres(cluster.url, { max: 2, onnotice: () => {} });
});

afterAll(async () => {
  await sql?.end();
  await cluster?.stop();
});

async function count(): Promise<number> {
  return (await sql`select count(*)::int as n from messages`)[0]!.n;
}

test("serve --retention-days deletes the old messages and keeps the new; an offline reader gets what is kept", async () => {
  const [alice, bob] = [uniqueName("alice"), uniqueName("bob")];
  await signup(cluster.balancerAddr, alice);
  await signup(cluster.balancerAddr, bob);
  const a = await connectUser(cluster.balancerAddr, alice);
  for (let i = 0; i < 5; i++) await a.session.sendText(bob, `old ${i}`);
  for (let i = 0; i < 3; i++) await a.session.sendText(bob, `new ${i}`);
  // Five of them, made 40 days old; bob never came online to read any.
  await sql`update messages set created_at = now() - interval '40 days' where id in (select id from messages order by id limit 5)`;
  expect(await count()).toBe(8);

  const server = spawnRole(["serve", "0", "--database-url", cluster.url, "--retention-days", "30", "--balancer", cluster.balancerAddr, "--log-format", "json"]);
  try {
    const line = await server.waitForLine(/retention: deleted (\d+) messages older than 30 days/);
    expect(line[1]).toBe("5");
  } finally {
    await server.stop();
  }
  expect(await count()).toBe(3);

  const b = await connectUser(cluster.balancerAddr, bob);
  try {
    await waitFor(() => b.received.length === 3, "bob to get the kept messages");
    expect(b.texts()).toEqual(["new 0", "new 1", "new 2"]);
    expect((await b.session.history(alice)).map((m) => m.text)).toEqual(["new 0", "new 1", "new 2"]);
    // The conversation goes on past the hole.
    await a.session.sendText(bob, "after the sweep");
    await waitFor(() => b.received.length === 4, "the next message");
    expect(b.texts().at(-1)).toBe("after the sweep");
  } finally {
    await a.session.close();
    await b.session.close();
  }
});

test("a sweep deletes in batches and stops at the cut-off, however many rows there are", async () => {
  // 2,500 old rows and 10 new ones after them, as time makes them, straight into the
  // table (the sweep reads only ids and times).
  await sql`delete from messages`;
  const [conv] = await sql`select id from conversations limit 1`;
  const [sender] = await sql`select id from users limit 1`;
  await sql`
    insert into messages (conversation_id, seq, sender_id, cmid, body, created_at)
    select ${conv!.id}, 100000 + g, ${sender!.id}, 'bulk-' || g, '\\x00', now() - interval '100 days'
    from generate_series(1, 2500) g`;
  await sql`
    insert into messages (conversation_id, seq, sender_id, cmid, body)
    select ${conv!.id}, 200000 + g, ${sender!.id}, 'fresh-' || g, '\\x00' from generate_series(1, 10) g`;
  const logged: string[] = [];
  const retention = startRetention({ sql, days: 30, batch: 1000, everyMs: 3600_000, log: (line) => logged.push(line) });
  try {
    await until(async () => logged.length > 0, "the first sweep");
    expect(logged[0]).toBe("retention: deleted 2500 messages older than 30 days");
    expect(await count()).toBe(10);
    // Nothing left to delete: the next sweep reads one batch and stops.
    expect(await retention.sweep()).toBe(0);
  } finally {
    await retention.stop();
  }
});
