/**
 * Key packages made before the roles extension (crypto/mls/roles.ts) cannot
 * join a group that carries it: a device that still holds such packages
 * replaces its whole supply at its next login, and forgets their private
 * halves; then it can be added to a group chat with roles.
 */
import { expect, setDefaultTimeout, test } from "bun:test";
import { Database as Sqlite } from "bun:sqlite";
import { join } from "node:path";
import { ed25519 } from "@noble/curves/ed25519.js";
import { defaultCapabilities, encodeMlsMessage, generateKeyPackageWithKey } from "ts-mls";
import { makeKeyPackageRef } from "ts-mls/keyPackage.js";
import { decodeKeyPackage, mlsSuite, ROLES_EXTENSION } from "../crypto/mls/index.ts";
import type { Database } from "../db/connect";
import { mlsWorld } from "./support/mls-world";
import { connectPersistent, signup, uniqueName, until, waitFor, type Cluster } from "./support/cluster";

setDefaultTimeout(90_000);

let cluster: Cluster;
let db: Database;
const { open, home } = mlsWorld("mls-upgrade", 1, (c, d) => ((cluster = c), (db = d)));

async function serverPackages(name: string): Promise<Uint8Array[]> {
  const rows = await db.sql`select k.data from key_packages k join devices d on d.id = k.device_id join users u on u.id = d.user_id where u.name = ${name} and d.revoked_at is null`;
  return rows.map((r) => new Uint8Array(r.data));
}

const hasRoles = (bytes: Uint8Array) => decodeKeyPackage(bytes).leafNode.capabilities.extensions.includes(ROLES_EXTENSION);

test("a device holding key packages from before the roles extension replaces them at its next login, and can then be added to a group", async () => {
  const [a, b] = [uniqueName("ua"), uniqueName("ub")];
  for (const n of [a, b]) await signup(cluster.balancerAddr, n);
  const first = await connectPersistent(cluster.balancerAddr, home, a);
  await until(async () => (await serverPackages(a)).length > 0, "alice to publish");
  const deviceId = decodeKeyPackage((await serverPackages(a))[0]!).leafNode.credential;
  await first.session.close();

  // what an older client left: one package without the roles capability, its private half in the store, on the server alone
  const file = new Sqlite(join(home, a, "store.db"));
  const sign = new Uint8Array(Buffer.from(String((file.query("select v from kv where k = 'mls.sign'").get() as { v: string }).v), "base64"));
  const now = BigInt(Math.floor(Date.now() / 1000));
  const old = await generateKeyPackageWithKey(
    deviceId,
    defaultCapabilities(),
    { notBefore: now - 3600n, notAfter: now + 86400n },
    [],
    { signKey: sign, publicKey: ed25519.getPublicKey(sign) },
    await mlsSuite(),
  );
  const encoded = encodeMlsMessage({ keyPackage: old.publicPackage, wireformat: "mls_key_package", version: "mls10" });
  const ref = Buffer.from(await makeKeyPackageRef(old.publicPackage, (await mlsSuite()).hash)).toString("hex");
  file.query("delete from mls_key_packages").run();
  file
    .query("insert into mls_key_packages (ref, public, init, hpke, last_resort, created_at) values (?, ?, ?, ?, 0, ?)")
    .run(ref, encoded, old.privatePackage.initPrivateKey, old.privatePackage.hpkePrivateKey, Date.now());
  file.close();
  await db.sql`delete from key_packages where device_id in (select d.id from devices d join users u on u.id = d.user_id where u.name = ${a})`;
  for (let i = 0; i < 6; i++)
    await db.sql`insert into key_packages (device_id, data) select d.id, ${encoded} from devices d join users u on u.id = d.user_id where u.name = ${a}`;

  const alice = await connectPersistent(cluster.balancerAddr, home, a);
  open.push(alice);
  await until(async () => {
    const held = await serverPackages(a);
    return held.length > 0 && held.every(hasRoles);
  }, "alice's supply to be replaced");
  // the new private halves are kept before the upload, the old ones forgotten after it
  const localPackages = () => {
    const check = new Sqlite(join(home, a, "store.db"), { readonly: true });
    const rows = check.query("select public from mls_key_packages").all() as { public: Uint8Array }[];
    check.close();
    return rows.map((r) => new Uint8Array(r.public));
  };
  await until(async () => localPackages().every(hasRoles), "the old private halves to go");
  expect(localPackages().length).toBeGreaterThan(0);

  // and she can be added to a group chat, whose MLS group carries the roles
  const bob = await connectPersistent(cluster.balancerAddr, home, b);
  open.push(bob);
  await until(async () => (await serverPackages(b)).length > 0, "bob to publish");
  const group = uniqueName("u");
  await bob.session.createGroup(group, [a]);
  await bob.session.sendGroupText(group, "hello alice");
  await waitFor(() => alice.texts().includes("hello alice"), "alice to read");
  expect(alice.received.find((m) => m.text === "hello alice")!.verified).toBe(true);
});
