/**
 * The contacts' keys a user trusts follow them to a new device: pinned on one
 * device, sealed under a key only the password gives, and merged in by the
 * next. A server that substitutes a contact's key towards the new device is
 * then caught, instead of being pinned on first use.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { rmSync } from "node:fs";
import postgres from "postgres";
import { generateIdentity } from "../crypto/keys";
import { connectPersistent, freshHome, signup, startCluster, uniqueName, type Cluster } from "./support/cluster";

let cluster: Cluster;
let sql: postgres.Sql;
const homes: string[] = [];
const originalHome = process.env.CHATTERBOX_HOME;

beforeAll(async () => {
  cluster = await startCluster({ servers: 2 });
  sql = postgres(cluster.url, { max: 1, onnotice: () => {} });
}, 60_000);

afterAll(async () => {
  process.env.CHATTERBOX_HOME = originalHome;
  await sql?.end();
  await cluster?.stop();
  for (const home of homes) rmSync(home, { recursive: true, force: true });
});

test("a new device starts with the pins of the user's other devices, so a key substituted towards it is refused (E_KEY_CHANGED)", async () => {
  const [alice, bob] = [uniqueName("alice"), uniqueName("bob")];
  const bobKeys = await signup(cluster.balancerAddr, bob);
  await signup(cluster.balancerAddr, alice);
  // Device one pins bob's real key by writing to him.
  const laptop = await connectPersistent(cluster.balancerAddr, freshHome(homes), alice);
  await laptop.session.sendText(bob, "hello bob");
  await laptop.session.close();
  // The server holds the pins sealed: bob's key is not in the clear.
  const [row] = await sql`select pins, pins_version from users where name = ${alice}`;
  expect(row!.pins_version).toBeGreaterThan(0);
  const blob = Buffer.from(row!.pins);
  expect(blob.indexOf(Buffer.from(bobKeys.signPublic))).toBe(-1);
  expect(blob.indexOf(Buffer.from(bobKeys.dhPublic))).toBe(-1);

  // The server now hands out another key for bob; a new device of alice's must not trust it.
  const mallory = generateIdentity();
  await sql`update users set dh_public = ${mallory.dhPublic}, sign_public = ${mallory.signPublic} where name = ${bob}`;
  const phone = await connectPersistent(cluster.balancerAddr, freshHome(homes), alice);
  try {
    const refusal = await phone.session.sendText(bob, "for bob only").catch((e) => e);
    expect(refusal.code).toBe("E_KEY_CHANGED");
  } finally {
    await phone.session.close();
  }
  // No message went to the substituted key.
  const [{ n }] = (await sql`select count(*)::int as n from messages m join users u on u.id = m.sender_id where u.name = ${alice}`) as unknown as [{ n: number }];
  expect(n).toBe(1);
});

test("pins made on two devices merge: each device ends with both contacts", async () => {
  const [alice, bob, carol] = [uniqueName("alice"), uniqueName("bob"), uniqueName("carol")];
  for (const n of [alice, bob, carol]) await signup(cluster.balancerAddr, n);
  const [homeA, homeB] = [freshHome(homes), freshHome(homes)];
  const a = await connectPersistent(cluster.balancerAddr, homeA, alice);
  const b = await connectPersistent(cluster.balancerAddr, homeB, alice);
  await a.session.sendText(bob, "to bob from A");
  await b.session.sendText(carol, "to carol from B");
  await a.session.close();
  await b.session.close();
  // Each logs in again (resume) and merges what the other uploaded.
  for (const home of [homeA, homeB]) {
    const again = await connectPersistent(cluster.balancerAddr, home, alice);
    const pins = again.session.store.allPins();
    await again.session.close();
    expect([...pins.keys()].sort()).toEqual([bob, carol].sort());
  }
});
