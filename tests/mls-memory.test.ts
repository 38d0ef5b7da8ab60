/**
 * Sessions whose store is in memory only (`persist: false`) speak MLS when
 * CHATTERBOX_MLS=on: their groups live in the in-memory store for the
 * process's life. A restart is a new MLS device under the same device id (a
 * new key on the account's list): the other side's next message replaces its
 * leaf, and what was sent before the restart is not readable (forward secrecy).
 */
import { afterAll, beforeAll, expect, setDefaultTimeout, test } from "bun:test";
import { openDatabase, type Database } from "../db/connect";
import { connectUser, signup, startCluster, uniqueName, until, waitFor, type Cluster, type TestUser } from "./support/cluster";

setDefaultTimeout(90_000);

let cluster: Cluster;
let db: Database;
const open: TestUser[] = [];

beforeAll(async () => {
  cluster = await startCluster({ servers: 1 });
  db = openDatabase(cluster.url, { max: 2 });
}, 60_000);

afterAll(async () => {
  for (const u of open) await u.session.close().catch(() => {});
  await db?.close();
  await cluster?.stop();
});

async function inMemory(name: string): Promise<TestUser> {
  process.env.CHATTERBOX_MLS = "on";
  const u = await connectUser(cluster.balancerAddr, name).finally(() => delete process.env.CHATTERBOX_MLS);
  open.push(u);
  return u;
}

async function listVersion(name: string): Promise<number> {
  const [row] = await db.sql`select l.version from device_lists l join users u on u.id = l.user_id where u.name = ${name}`;
  return row ? Number(row.version) : 0;
}

async function published(name: string, atLeast = 1): Promise<void> {
  await until(async () => {
    const [row] = await db.sql`select count(*)::int as n from key_packages k join devices d on d.id = k.device_id join users u on u.id = d.user_id
                               where u.name = ${name} and k.last_resort`;
    return row!.n > 0 && (await listVersion(name)) >= atLeast;
  }, `${name} to publish its MLS device`);
}

async function bodies(a: string, b: string): Promise<number[]> {
  const rows = await db.sql`select get_byte(m.body, 0) as b from messages m join conversations c on c.id = m.conversation_id
                            join members x on x.conversation_id = c.id join users ux on ux.id = x.user_id and ux.name = ${a}
                            join members y on y.conversation_id = c.id join users uy on uy.id = y.user_id and uy.name = ${b}
                            where c.kind = 'dm' order by m.seq`;
  return rows.map((r) => Number(r.b));
}

test("two in-memory sessions with CHATTERBOX_MLS=on talk over MLS; after a restart the new session is a new leaf and reads from then on", async () => {
  const [a, b] = [uniqueName("ma"), uniqueName("mb")];
  for (const n of [a, b]) await signup(cluster.balancerAddr, n);
  const alice = await inMemory(a);
  const bob = await inMemory(b);
  await published(a);
  await published(b);
  await alice.session.sendText(b, "over mls, in memory");
  await waitFor(() => bob.texts().includes("over mls, in memory"), "bob to read");
  await bob.session.sendText(a, "and back");
  await waitFor(() => alice.texts().includes("and back"), "alice to read");
  expect(await bodies(a, b)).toEqual([0x4d, 0x4d, 0x4d]);
  expect(bob.received.find((m) => m.text === "over mls, in memory")!.verified).toBe(true);

  // alice's process ends: her next session is a new MLS device under the same device id
  const before = await listVersion(a);
  await alice.session.close();
  const alice2 = await inMemory(a);
  await published(a, before + 1);
  // bob's device asks for a list again 10 s after it last did (client/mls/account.ts): until then it does not
  // know the new key, and what it sends is for the old leaf (shown to the new session as not readable)
  await Bun.sleep(10_500);
  await bob.session.sendText(a, "to the new alice");
  await waitFor(() => alice2.texts().includes("to the new alice"), "the new session to read");
  expect(alice2.received.find((m) => m.text === "to the new alice")!.verified).toBe(true);
  // bob's device replaced alice's leaf (a commit), then sent one ciphertext
  expect(await bodies(a, b)).toEqual([0x4d, 0x4d, 0x4d, 0x4d, 0x4d]);
  // what came before the restart is gone for it, as for any new device
  const history = await alice2.session.history(b);
  expect(history.filter((m) => m.text === "and back")).toEqual([]);
  expect(history.some((m) => m.code === "E_MLS_BEFORE_JOIN")).toBe(true);
});
