/**
 * What makes a process a member of the cluster: a certificate under the cluster
 * CA and the cluster secret. The CA lives in ChatDB's settings, next to the
 * secret (SECURITY.md says why): the first process to start makes it, and each
 * server and balancer issues itself a fresh certificate for its own host names
 * at start, so a deployment over several hosts needs no files copied around.
 */
import type { Sql } from "postgres";
import { createCa, fingerprint, issueCertificate, type CertificateAuthority } from "../net/ca";
import type { ServerTls } from "../net/tls";

const CA_KEY = "cluster_ca";

export interface ClusterIdentity {
  tls: ServerTls;
  /** The secret of the challenge-response on peer and balancer links (server/peer-proof.ts). */
  secret: Uint8Array;
  caFingerprint: string;
}

/** The cluster CA, made on first use; a race between two first starts leaves exactly one. */
export async function clusterCa(sql: Sql): Promise<CertificateAuthority> {
  const [row] = await sql`select value from settings where key = ${CA_KEY}`;
  if (row) return parse(row.value);
  const fresh = await createCa();
  await sql`insert into settings (key, value) values (${CA_KEY}, ${Buffer.from(JSON.stringify(fresh))}) on conflict (key) do nothing`;
  const [stored] = await sql`select value from settings where key = ${CA_KEY}`;
  return parse(stored!.value);
}

/** Installs a CA made elsewhere (tests share one across databases); a cluster that has one keeps it. */
export async function installClusterCa(sql: Sql, ca: CertificateAuthority): Promise<void> {
  await sql`insert into settings (key, value) values (${CA_KEY}, ${Buffer.from(JSON.stringify(ca))}) on conflict (key) do nothing`;
}

export async function clusterSecret(sql: Sql): Promise<Uint8Array> {
  const fresh = crypto.getRandomValues(new Uint8Array(32));
  await sql`insert into settings (key, value) values ('peer_secret', ${fresh}) on conflict (key) do nothing`;
  const [row] = await sql`select value from settings where key = 'peer_secret'`;
  return new Uint8Array(row!.value);
}

/** A certificate for `hosts` under the cluster CA, and the cluster secret. */
export async function clusterIdentity(sql: Sql, hosts: string[]): Promise<ClusterIdentity> {
  const ca = await clusterCa(sql);
  const issued = await issueCertificate(ca, certificateHosts(hosts));
  return { tls: { certPem: issued.certPem, keyPem: issued.keyPem, caPem: ca.certPem }, secret: await clusterSecret(sql), caFingerprint: fingerprint(ca.certPem) };
}

/** The names a certificate covers: those given, and loopback when listening on every address. */
function certificateHosts(hosts: string[]): string[] {
  const names = hosts.filter((h) => h !== "0.0.0.0" && h !== "::");
  if (names.length < hosts.length || names.length === 0) names.push("127.0.0.1", "localhost");
  return names;
}

function parse(value: Uint8Array): CertificateAuthority {
  const ca = JSON.parse(Buffer.from(value).toString("utf8")) as CertificateAuthority;
  if (typeof ca.certPem !== "string" || typeof ca.keyPem !== "string") throw new Error("settings.cluster_ca is not a CA");
  return ca;
}

/** For a process without a database of its own (the balancer, a tool): opens ChatDB just long enough. */
export async function clusterIdentityFrom(databaseUrl: string, hosts: string[]): Promise<ClusterIdentity> {
  const { migrate, openDatabase } = await import("../db/connect");
  const database = openDatabase(databaseUrl, { max: 1 });
  try {
    await migrate(database);
    return await clusterIdentity(database.sql, hosts);
  } finally {
    await database.close();
  }
}

/** The CA (made now if this cluster has none yet), for `chatterbox ca`. */
export async function caFrom(databaseUrl: string): Promise<CertificateAuthority> {
  const { migrate, openDatabase } = await import("../db/connect");
  const database = openDatabase(databaseUrl, { max: 1 });
  try {
    await migrate(database);
    return await clusterCa(database.sql);
  } finally {
    await database.close();
  }
}
