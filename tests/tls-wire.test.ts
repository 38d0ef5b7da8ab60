/**
 * Every hop is TLS: a loopback relay sits in the middle of each kind of link
 * (client to balancer, client to server, server to balancer, server to
 * server), records every byte, and no frame appears in the clear. The same
 * system with --insecure-plaintext shows the frames, so the check can fail.
 */
import { afterEach, expect, test } from "bun:test";
import postgres from "postgres";
import { announce } from "../balancer/announcer";
import { PLAINTEXT, type ClientTls, type Plaintext } from "../net/tls";
import { ClientTrust, setDefaultTrust } from "../net/trust";
import { startServer } from "../roles/server";
import { apartFrom, connectUser, signup, startCluster, uniqueName, waitFor, type Cluster, type TestUser } from "./support/cluster";
import { startRelay, type Relay } from "./support/relay";
import { TEST_MEMBER, trustTestCa } from "./support/tls";

const MARKER = `wire-marker-${crypto.randomUUID()}`;
const stops: (() => unknown)[] = [];
afterEach(async () => {
  for (const stop of stops.splice(0).reverse()) await stop();
  trustTestCa();
});

interface Recorded extends Relay {
  bytes(): string;
}

async function recorded(target: string): Promise<Recorded> {
  const chunks: Buffer[] = [];
  const relay = await startRelay(target, { onChunk: (c) => chunks.push(c) });
  stops.push(() => relay.stop());
  return Object.assign(relay, { bytes: () => Buffer.concat(chunks).toString("latin1") });
}

/** Two servers, each link through a recording relay; alice on one sends bob on the other a message. */
async function runThroughRelays(plaintext: boolean): Promise<Record<string, Recorded>> {
  const cluster: Cluster = await startCluster({ servers: 0, plaintext });
  stops.push(() => cluster.stop());
  if (plaintext) setDefaultTrust(new ClientTrust(undefined, { plaintext: true }));
  const toBalancer = await recorded(cluster.balancerAddr);
  const serverToBalancer = await recorded(cluster.balancerAddr);
  const toServer: Recorded[] = [];
  const peer: Recorded[] = [];
  const sql = postgres(cluster.url, { max: 1, onnotice: () => {} });
  stops.push(() => sql.end());
  for (let i = 0; i < 2; i++) {
    const server = await startServer({ port: 0, databaseUrl: cluster.url, insecurePlaintext: plaintext, log: () => {} });
    cluster.servers.push(server);
    const clientSide = await recorded(server.addr);
    const peerSide = await recorded(server.addr);
    toServer.push(clientSide);
    peer.push(peerSide);
    // Peers find each other in the servers table; clients find servers at the balancer, announced through a relay.
    await sql`update servers set addr = ${peerSide.addr} where id = ${server.id}`;
    const member: { secret: Uint8Array; tls: ClientTls | Plaintext } = plaintext ? { secret: TEST_MEMBER.secret, tls: PLAINTEXT } : TEST_MEMBER;
    const announcer = announce({ balancer: serverToBalancer.addr, id: server.id, addr: clientSide.addr, load: () => server.connections(), ...member });
    stops.push(() => announcer.stop());
  }
  await waitFor(() => cluster.balancer.servers().length === 2, "both servers to register through the relay");
  await waitFor(() => peer.every((r) => r.connections > 0), "the peer links to go through their relays");

  const [a, b] = [uniqueName("alice"), uniqueName("bob")];
  await signup(toBalancer.addr, a);
  await signup(toBalancer.addr, b);
  const alice = await connectUser(toBalancer.addr, a);
  let bob: TestUser = await connectUser(toBalancer.addr, b);
  bob = await apartFrom(toBalancer.addr, alice, bob);
  stops.push(() => alice.session.close(), () => bob.session.close());
  await alice.session.sendText(b, MARKER);
  await waitFor(() => bob.texts().includes(MARKER), "bob to receive the message");
  return { toBalancer, serverToBalancer, toServer1: toServer[0]!, toServer2: toServer[1]!, peer1: peer[0]!, peer2: peer[1]! };
}

/** Words that every frame of these links spells out in MessagePack: op names and field names. */
const CLEAR = ["hello", "register", "heartbeat", "where", "login", "deliver", '"op"', "op\xa5", "\xa2op"];

function inTheClear(bytes: string): string[] {
  return CLEAR.filter((word) => bytes.includes(word));
}

test("every hop is TLS: a relay in the middle of each link sees no frame in the clear", async () => {
  const relays = await runThroughRelays(false);
  for (const [name, relay] of Object.entries(relays)) {
    const bytes = relay.bytes();
    expect(bytes.length, name).toBeGreaterThan(500);
    // A TLS record starts the stream: a handshake (0x16) of TLS 1.x (0x03).
    expect(bytes.charCodeAt(0), name).toBe(0x16);
    expect(inTheClear(bytes), name).toEqual([]);
  }
  // Both peer relays carried the delivery between the servers, at least one of them.
  expect(relays.peer1!.connections + relays.peer2!.connections).toBeGreaterThan(0);
}, 60_000);

test("with --insecure-plaintext the same relays read every frame (the check above can fail)", async () => {
  const relays = await runThroughRelays(true);
  for (const name of ["toBalancer", "serverToBalancer", "toServer1", "toServer2"]) {
    expect(inTheClear(relays[name]!.bytes()), name).toContain("hello");
  }
  expect(relays.toBalancer!.bytes()).toContain("where");
  expect(relays.serverToBalancer!.bytes()).toContain("register");
  expect(relays.peer1!.bytes() + relays.peer2!.bytes()).toContain("deliver");
}, 60_000);
