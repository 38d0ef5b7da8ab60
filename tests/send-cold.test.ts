/**
 * No head-of-line blocking on one connection (issue 15): a send whose
 * conversation must still be looked up or made does not hold back later
 * sends on that connection to other conversations; sends to the same
 * conversation still keep their order.
 */
import { afterAll, beforeAll, expect, setDefaultTimeout, test } from "bun:test";
import postgres from "postgres";
import { rawLink, signup, startCluster, uniqueName, type Cluster } from "./support/cluster";

setDefaultTimeout(60_000);

let cluster: Cluster;
let sql: postgres.Sql;

beforeAll(async () => {
  cluster = await startCluster({ servers: 1 });
  sql = postgres(cluster.url, { max: 2, onnotice: () => {} });
}, 60_000);
afterAll(async () => {
  await sql.end();
  await cluster.stop();
});

const body = (text: string) => new TextEncoder().encode(text);

test("a cold lookup racing a warm send: the warm send is answered while the cold one waits, and the cold conversation keeps its order", async () => {
  const [ann, ben, cat] = [uniqueName("ann"), uniqueName("ben"), uniqueName("cat")];
  for (const name of [ann, ben, cat]) await signup(cluster.balancerAddr, name);
  const link = await rawLink(cluster.servers[0]!.addr, ann);
  const blocker = await sql.reserve();
  try {
    // ann -> ben is warm: its conversation is made and cached by a first send.
    await link.request("send", { to: ben, cmid: "warm-0", body: body("warm 0") });
    // ann -> cat is cold, and its making is held up: an open transaction has
    // inserted the same pair's conversation, so the server's insert waits on it.
    const ids = await sql`select id from users where name = any(${[ann, cat]}) order by id`;
    const key = `${ids[0]!.id}:${ids[1]!.id}`;
    await blocker`begin`;
    await blocker`insert into conversations (kind, dm_key) values ('dm', ${key})`;

    let coldAnswered = false;
    const cold1 = link.request("send", { to: cat, cmid: "cold-1", body: body("cold 1") }).finally(() => (coldAnswered = true));
    const cold2 = link.request("send", { to: cat, cmid: "cold-2", body: body("cold 2") });
    // Once the server's insert for the cold pair waits on the held one...
    while ((await sql`select count(*)::int as n from pg_locks where not granted`)[0]!.n === 0) await Bun.sleep(5);
    // ...a send to the warm partner, on the same connection, is answered all the same (one waiting behind the cold send never was).
    const warm = await link.request("send", { to: ben, cmid: "warm-1", body: body("warm 1") });
    expect(warm.seq).toBe(2);
    expect(coldAnswered).toBe(false);

    await blocker`rollback`;
    const [first, second] = await Promise.all([cold1, cold2]);
    expect([first.seq, second.seq]).toEqual([1, 2]);
  } finally {
    blocker.release();
    link.close();
  }
});
