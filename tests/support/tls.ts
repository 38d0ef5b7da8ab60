/**
 * TLS for tests: one cluster CA and one cluster secret per test process,
 * installed in every test database before its first server starts, so that
 * this process can trust it up front (as `--ca FILE` does) and servers started
 * in separate processes, over the same database, use it too.
 */
import { migrate, openDatabase } from "../../db/connect";
import { createCa, issueCertificate } from "../../net/ca";
import type { ClientTls, ServerTls } from "../../net/tls";
import { ClientTrust, setDefaultTrust } from "../../net/trust";
import { installClusterCa } from "../../server/cluster-identity";

export const TEST_CA = await createCa("ChatterBox test CA");
export const TEST_SECRET = crypto.getRandomValues(new Uint8Array(32));
const issued = await issueCertificate(TEST_CA, ["127.0.0.1", "localhost"]);

/** What a balancer or server of the test cluster presents. */
export const TEST_TLS: ServerTls = { certPem: issued.certPem, keyPem: issued.keyPem, caPem: TEST_CA.certPem };

/** The credentials of a cluster member (for announce and connectAsMember). */
export const TEST_MEMBER: { secret: Uint8Array; tls: ClientTls } = { secret: TEST_SECRET, tls: { ...TEST_TLS } };

/** This process trusts the test CA, without pinning anything anywhere. */
export function trustTestCa(): void {
  setDefaultTrust(new ClientTrust(undefined, { caPem: TEST_CA.certPem }));
}

/** Migrates the database and makes it the test cluster's: our CA, our secret. */
export async function seedCluster(url: string): Promise<void> {
  const database = openDatabase(url, { max: 1 });
  try {
    await migrate(database);
    await installClusterCa(database.sql, TEST_CA);
    await database.sql`insert into settings (key, value) values ('peer_secret', ${TEST_SECRET}) on conflict (key) do nothing`;
  } finally {
    await database.close();
  }
}

/** A balancer's identity in the test cluster over `url` (seeded first, so that its servers share it). */
export async function testIdentity(url?: string): Promise<{ tls: ServerTls; secret: Uint8Array }> {
  if (url) await seedCluster(url);
  return { tls: TEST_TLS, secret: TEST_SECRET };
}
