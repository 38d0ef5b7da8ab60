/**
 * The plaintext search of the encryption issue, over group messages: after a
 * group conversation on two servers (live, stored for an offline member, and
 * after a removal), no table holds the text of any message, in any encoding.
 */
import { afterAll, beforeAll, expect, setDefaultTimeout, test } from "bun:test";
import { randomBytes } from "node:crypto";
import postgres from "postgres";
import { connectUser, signup, startCluster, waitFor, type Cluster } from "./support/cluster";
import { dumpDatabase, findIn } from "./support/dump";

// Real PostgreSQL, real sockets, several servers: give slow machines room.
setDefaultTimeout(60_000);

const MARKER = `group-marker-${randomBytes(9).toString("hex")}-Käsebrot✓`;

let cluster: Cluster;
let sql: postgres.Sql;

beforeAll(async () => {
  cluster = await startCluster({ servers: 2 });
  sql = postgres(cluster.url, { max: 1, onnotice: () => {} });
  for (const name of ["alice", "bob", "carol"]) await signup(cluster.balancerAddr, name);
  const alice = await connectUser(cluster.balancerAddr, "alice");
  const bob = await connectUser(cluster.balancerAddr, "bob");
  expect(alice.session.serverId).not.toBe(bob.session.serverId);
  await alice.session.createGroup("secrets", ["bob", "carol"]);
  await alice.session.sendGroupText("secrets", `live from alice: ${MARKER}`);
  await bob.session.sendGroupText("secrets", `live from bob: ${MARKER}`);
  await waitFor(() => bob.texts().includes(`live from alice: ${MARKER}`) && alice.texts().includes(`live from bob: ${MARKER}`), "both to receive");
  // carol was offline: she reads hers at login; then she is removed and the group goes on.
  const carol = await connectUser(cluster.balancerAddr, "carol");
  expect(carol.texts()).toContain(`live from bob: ${MARKER}`);
  await carol.session.close();
  await alice.session.changeGroup("remove", "secrets", ["carol"]);
  await alice.session.sendGroupText("secrets", `after the removal: ${MARKER}`);
  await waitFor(() => bob.texts().includes(`after the removal: ${MARKER}`), "bob to receive the last one");
  await alice.session.close();
  await bob.session.close();
}, 60_000);

afterAll(async () => {
  await sql?.end();
  await cluster?.stop();
});

test("no table holds the text of a group message, in any encoding", async () => {
  const dump = await dumpDatabase(sql);
  // The search works: every table is in the dump, with the group's name and its messages.
  expect(new Set(dump.map((d) => d.where.split(".").slice(0, 2).join(".")))).toContain("public.messages");
  expect(findIn(dump, "secrets")).not.toEqual([]);
  const [row] = await sql`select count(*)::int as n from messages m join conversations c on c.id = m.conversation_id
                          where c.name = 'secrets' and m.kind = 'chat'`;
  expect(row!.n).toBe(3);

  expect(findIn(dump, MARKER)).toEqual([]);
  // Nor any long piece of it: a text stored in another normalisation or split across columns would show here.
  expect(findIn(dump, MARKER.slice(13, 31))).toEqual([]);
});
