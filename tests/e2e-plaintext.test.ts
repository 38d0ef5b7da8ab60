/**
 * What an operator can read: every table, every server log line and every byte
 * on the client and peer links, after a conversation that carried a marker.
 * None of them may hold the marker, the password or a private key in any
 * encoding. The links are tapped by TCP relays placed in the servers' path.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { randomBytes, randomUUID } from "node:crypto";
import postgres from "postgres";
import { announce } from "../balancer/announcer";
import { deriveKeys, TEST_KDF } from "../crypto/kdf";
import type { IdentityKeys } from "../crypto/keys";
import { createLogger } from "../roles/logger";
import { startServer } from "../roles/server";
import { connectUser, signup, startCluster, waitFor, type Cluster, type TestUser } from "./support/cluster";
import { dumpDatabase, findIn } from "./support/dump";
import { startRelay, type Relay } from "./support/relay";
import { TEST_MEMBER, TEST_TLS } from "./support/tls";

const MARKER = `plaintext-marker-${randomBytes(9).toString("hex")}-Käsebrot✓`;
// Distinctive, so that finding it anywhere cannot be a coincidence.
const PASSWORD = `pw-${randomBytes(6).toString("hex")}-never-leaves`;

let cluster: Cluster;
let sql: postgres.Sql;
const logs: string[] = [];
const clientTaps: Tap[] = [];
const peerTaps: Tap[] = [];
const announcers: { stop(): void }[] = [];
const identities: Record<string, IdentityKeys> = {};
let alice: TestUser;
let bob: TestUser;
/** The client message id of a message delivered live from one server to the other. */
let liveCmid: string;

beforeAll(async () => {
  cluster = await startCluster({ servers: 0 });
  sql = postgres(cluster.url, { max: 1, onnotice: () => {} });
  for (let i = 0; i < 2; i++) {
    // Our own servers, so that their logs are kept (startCluster discards them): through the
    // real logger, at its most talkative level, in both formats.
    const id = randomUUID();
    const format = i === 0 ? "json" : "pretty";
    const log = createLogger({ role: "server", format, level: "debug", bindings: { server: id }, write: (line) => logs.push(line) });
    const server = await startServer({ port: 0, id, databaseUrl: cluster.url, log });
    cluster.servers.push(server);
    // Peers find each other through the servers table: point it at a tap.
    const peerTap = await tap(server.addr);
    peerTaps.push(peerTap);
    await sql`update servers set addr = ${peerTap.addr} where id = ${server.id}`;
    // Clients find servers through the balancer: announce a tap there.
    const clientTap = await tap(server.addr);
    clientTaps.push(clientTap);
    announcers.push(announce({ balancer: cluster.balancerAddr, id: server.id, addr: clientTap.addr, load: () => server.connections(), ...TEST_MEMBER }));
  }
  await waitFor(() => cluster.balancer.servers().length === 2, "both servers to register");
  await waitFor(() => peerTaps.every((t) => t.connections > 0), "the peer links to go through the taps");

  for (const name of ["alice", "bob"]) identities[name] = await signup(cluster.balancerAddr, name, PASSWORD);
  alice = await connectUser(cluster.balancerAddr, "alice", PASSWORD);
  bob = await connectUser(cluster.balancerAddr, "bob", PASSWORD);
  expect(alice.session.serverId).not.toBe(bob.session.serverId);

  await alice.session.sendText("bob", `live to bob: ${MARKER}`);
  await waitFor(() => bob.received.length === 1, "bob to receive");
  liveCmid = bob.received[0]!.cmid;
  await bob.session.sendText("alice", `live to alice: ${MARKER}`);
  await waitFor(() => alice.received.length === 1, "alice to receive");
  await bob.session.close();
  await alice.session.sendText("bob", `stored for bob: ${MARKER}`);
  bob = await connectUser(cluster.balancerAddr, "bob", PASSWORD);
  await bob.session.history("alice");
  expect([...alice.texts(), ...bob.texts()]).toEqual([`live to alice: ${MARKER}`, `stored for bob: ${MARKER}`]);
  // A refused request is logged (at debug) with its code and request id: make one, to search it too.
  await expect(alice.session.sendText("nobody-here", MARKER)).rejects.toMatchObject({ code: "E_NO_SUCH_USER" });
  await alice.session.close();
  await bob.session.close();
}, 60_000);

afterAll(async () => {
  for (const a of announcers) a.stop();
  await sql?.end();
  await cluster?.stop();
  for (const t of [...clientTaps, ...peerTaps]) t.stop();
});

test("no table in the database holds a message's text, in any encoding", async () => {
  const dump = await dumpDatabase(sql);
  // The search itself works: the dump has every table and the names in it.
  expect(new Set(dump.map((d) => d.where.split(".").slice(0, 2).join(".")))).toContain("public.messages");
  expect(findIn(dump, "alice")).not.toEqual([]);
  expect((await sql`select count(*)::int as n from messages`)[0]!.n).toBe(3);

  expect(findIn(dump, MARKER)).toEqual([]);
});

test("the server logs never contain a message's text, a password or a key", async () => {
  expect(logs.some((line) => line.includes("listening on"))).toBe(true);
  // The logger did write structured lines, refusals with their code and request id among them.
  const json = logs.filter((line) => line.startsWith("{")).map((line) => JSON.parse(line));
  expect(json.some((l) => l.role === "server" && typeof l.server === "string" && l.code === "E_NO_SUCH_USER" && typeof l.req === "number")).toBe(true);
  expect(logs.some((line) => /^\d\d:\d\d:\d\d\.\d{3} INFO  server\[/.test(line))).toBe(true);

  const lines = logs.map((line, i) => ({ where: `log line ${i}`, bytes: Buffer.from(line) }));
  const [row] = await sql`select salt from users where name = 'alice'`;
  const { authKey, wrapKey } = deriveKeys(PASSWORD, new Uint8Array(row!.salt), TEST_KDF);
  const secrets = [MARKER, PASSWORD, authKey, wrapKey, identities.alice!.dhPrivate, identities.alice!.signPrivate, identities.bob!.dhPrivate, identities.bob!.signPrivate];
  expect(secrets.flatMap((s) => findIn(lines, s))).toEqual([]);
});

test("neither the client links nor the links between servers carry a message's text", () => {
  const peerBytes = peerTaps.map((t, i) => ({ where: `peer link to server ${i}`, bytes: Buffer.concat(t.chunks) }));
  const clientBytes = clientTaps.map((t, i) => ({ where: `client link to server ${i}`, bytes: Buffer.concat(t.chunks) }));
  // The live messages did cross both kinds of link: their ids are there in the clear.
  expect(findIn(peerBytes, liveCmid)).not.toEqual([]);
  expect(findIn(clientBytes, liveCmid)).not.toEqual([]);

  expect(findIn([...peerBytes, ...clientBytes], MARKER)).toEqual([]);
});

test("the password never reaches the server: not on the wire, not in any table", async () => {
  const wire = clientTaps.map((t, i) => ({ where: `client link to server ${i}`, bytes: Buffer.concat(t.chunks) }));
  const dump = await dumpDatabase(sql);
  expect(findIn([...wire, ...dump], PASSWORD)).toEqual([]);
});

test("the key that unlocks the backup and the identity private keys never reach the server", async () => {
  const wire = clientTaps.map((t, i) => ({ where: `client link to server ${i}`, bytes: Buffer.concat(t.chunks) }));
  const dump = await dumpDatabase(sql);
  const [row] = await sql`select salt from users where name = 'alice'`;
  const { authKey, wrapKey } = deriveKeys(PASSWORD, new Uint8Array(row!.salt), TEST_KDF);
  // The login key does go to the server (that is its job), but the table keeps only its hash.
  expect(findIn(wire, authKey)).not.toEqual([]);
  expect(findIn(dump, authKey)).toEqual([]);
  const secrets = [wrapKey, identities.alice!.dhPrivate, identities.alice!.signPrivate, identities.bob!.dhPrivate, identities.bob!.signPrivate];
  expect(secrets.flatMap((s) => findIn([...wire, ...dump], s))).toEqual([]);
});

// --- a wiretap -------------------------------------------------------------------

interface Tap extends Relay {
  /** Every byte relayed, both directions. */
  chunks: Buffer[];
}

/** A relay to `target` that records what passes through it, inside TLS: what the server itself receives. */
async function tap(target: string): Promise<Tap> {
  const chunks: Buffer[] = [];
  const relay = await startRelay(target, { onChunk: (chunk) => chunks.push(chunk), terminateTls: TEST_TLS });
  return Object.assign(relay, { chunks });
}
