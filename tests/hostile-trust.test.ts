/**
 * /trust against a server that changes its offer (issue 14, item 8): the
 * server shows one key while the person compares safety numbers, and another
 * when they accept. The test plays that server by editing ChatDB between the
 * two steps; the client must pin exactly the key that was compared, or nothing.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import postgres from "postgres";
import { generateIdentity } from "../crypto/keys";
import { safetyNumber } from "../crypto/safety";
import { connectUser, signup, startCluster, type Cluster, type TestUser } from "./support/cluster";

let cluster: Cluster;
let sql: postgres.Sql;
let alice: TestUser;
const keys: Record<string, Awaited<ReturnType<typeof signup>>> = {};

beforeAll(async () => {
  cluster = await startCluster({ servers: 1 });
  sql = postgres(cluster.url, { max: 1, onnotice: () => {} });
  for (const name of ["alice", "bob"]) keys[name] = await signup(cluster.balancerAddr, name);
  alice = await connectUser(cluster.balancerAddr, "alice");
  // Alice pins bob's real key on first use.
  await alice.session.sendText("bob", "hello bob");
}, 60_000);

afterAll(async () => {
  await alice?.session.close();
  await sql?.end();
  await cluster?.stop();
});

const offer = (key: { dhPublic: Uint8Array; signPublic: Uint8Array }) => sql`update users set dh_public = ${key.dhPublic}, sign_public = ${key.signPublic} where name = 'bob'`;
const numberWith = (key: { dhPublic: Uint8Array; signPublic: Uint8Array }) =>
  safetyNumber({ name: "alice", dh: keys.alice!.dhPublic, sign: keys.alice!.signPublic }, { name: "bob", dh: key.dhPublic, sign: key.signPublic });

test("/trust with no /verify before it is refused, and pins nothing", async () => {
  const other = generateIdentity();
  await offer(other);
  const refused = await alice.session.trust("bob").catch((e) => e);
  expect(refused.code).toBe("E_KEY_CHANGED");
  // Still the real key pinned: once the client has seen the new offer, sending is refused because it differs from the pin.
  expect(await alice.session.safetyNumber("bob")).toBe(numberWith(other));
  expect((await alice.session.sendText("bob", "still you?").catch((e) => e)).code).toBe("E_KEY_CHANGED");
});

test("a key swapped between /verify and /trust is refused (E_KEY_CHANGED), and the swapped-in key is not pinned", async () => {
  const genuine = generateIdentity();
  const mallory = generateIdentity();
  await offer(genuine);
  expect(await alice.session.safetyNumber("bob")).toBe(numberWith(genuine));
  await offer(mallory);
  const refused = await alice.session.trust("bob").catch((e) => e);
  expect(refused.code).toBe("E_KEY_CHANGED");
  expect(refused.message).toContain("changed since /verify");
  // Nothing was pinned: with the server offering mallory's key, sending is still refused.
  expect((await alice.session.sendText("bob", "are you there?").catch((e) => e)).code).toBe("E_KEY_CHANGED");
});

test("/verify then /trust of an unchanged offer pins exactly that key", async () => {
  const next = generateIdentity();
  await offer(next);
  expect(await alice.session.safetyNumber("bob")).toBe(numberWith(next));
  await alice.session.trust("bob");
  const reply = await alice.session.sendText("bob", "now trusted");
  expect(reply.seq).toBeGreaterThan(0);
  // The pin is that key: the safety number is the one compared.
  expect(await alice.session.safetyNumber("bob")).toBe(numberWith(next));
});
