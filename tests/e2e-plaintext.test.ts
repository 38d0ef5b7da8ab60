/**
 * What an operator can read: every table, every server log line and every byte
 * on the client and peer links, after a conversation that carried a marker.
 * None of them may hold the marker, the password or a private key in any
 * encoding. The links are tapped by TCP relays placed in the servers' path.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { randomBytes } from "node:crypto";
import type { Socket, TCPSocketListener } from "bun";
import postgres from "postgres";
import { announce } from "../balancer/announcer";
import { deriveKeys, TEST_KDF } from "../crypto/kdf";
import type { IdentityKeys } from "../crypto/keys";
import { parseAddress } from "../net/link";
import { startServer } from "../roles/server";
import { connectUser, signup, startCluster, waitFor, type Cluster, type TestUser } from "./support/cluster";

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
    // Our own servers, so that their logs are kept (startCluster discards them).
    const server = await startServer({ port: 0, databaseUrl: cluster.url, log: (line) => logs.push(line) });
    cluster.servers.push(server);
    // Peers find each other through the servers table: point it at a tap.
    const peerTap = await tap(server.addr);
    peerTaps.push(peerTap);
    await sql`update servers set addr = ${peerTap.addr} where id = ${server.id}`;
    // Clients find servers through the balancer: announce a tap there.
    const clientTap = await tap(server.addr);
    clientTaps.push(clientTap);
    announcers.push(announce({ balancer: cluster.balancerAddr, id: server.id, addr: clientTap.addr, load: () => server.connections() }));
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

test("the server logs never contain a message's text", () => {
  expect(logs.some((line) => line.includes("listening on"))).toBe(true);
  expect(findIn(logs.map((line, i) => ({ where: `log line ${i}`, bytes: Buffer.from(line) })), MARKER)).toEqual([]);
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

// --- searching -----------------------------------------------------------------

interface Haystack {
  where: string;
  bytes: Buffer;
}

/** The needle as raw bytes, as hex and as base64 (at each of the three alignments it can have inside a longer text). */
function encodings(needle: string | Uint8Array): { name: string; bytes: Buffer }[] {
  const raw = Buffer.from(typeof needle === "string" ? new TextEncoder().encode(needle) : needle);
  const forms = [
    { name: "raw", bytes: raw },
    { name: "hex", bytes: Buffer.from(raw.toString("hex")) },
    { name: "HEX", bytes: Buffer.from(raw.toString("hex").toUpperCase()) },
  ];
  for (let shift = 0; shift < 3; shift++) {
    const b64 = Buffer.concat([Buffer.alloc(shift), raw]).toString("base64");
    // Only the groups made of needle bytes alone are the same whatever surrounds it.
    const middle = b64.slice(shift === 0 ? 0 : 4, Math.floor((shift + raw.length) / 3) * 4);
    forms.push({ name: `base64+${shift}`, bytes: Buffer.from(middle) });
    forms.push({ name: `base64url+${shift}`, bytes: Buffer.from(middle.replaceAll("+", "-").replaceAll("/", "_")) });
  }
  return forms;
}

/** Where the needle occurs, in any of its encodings: "table.column as hex", say. */
function findIn(haystacks: Haystack[], needle: string | Uint8Array): string[] {
  const found: string[] = [];
  for (const form of encodings(needle)) {
    for (const h of haystacks) if (h.bytes.indexOf(form.bytes) >= 0) found.push(`${h.where} as ${form.name}`);
  }
  return found;
}

/** Every value of every row of every table, as bytes; and each row as PostgreSQL prints it. */
async function dumpDatabase(sql: postgres.Sql): Promise<Haystack[]> {
  const tables = await sql`
    select table_schema, table_name from information_schema.tables
    where table_schema in ('public', 'drizzle') and table_type = 'BASE TABLE'`;
  const out: Haystack[] = [];
  for (const { table_schema: schema, table_name: name } of tables) {
    const qualified = `"${schema}"."${name}"`;
    for (const row of await sql.unsafe(`select * from ${qualified}`)) {
      for (const [column, value] of Object.entries(row)) out.push({ where: `${schema}.${name}.${column}`, bytes: toBytes(value) });
    }
    for (const row of await sql.unsafe(`select t::text as text from ${qualified} t`)) {
      out.push({ where: `${schema}.${name} (row text)`, bytes: Buffer.from(row.text as string) });
    }
  }
  return out;
}

function toBytes(value: unknown): Buffer {
  if (value === null || value === undefined) return Buffer.alloc(0);
  if (value instanceof Uint8Array) return Buffer.from(value);
  if (typeof value === "string") return Buffer.from(value);
  if (value instanceof Date) return Buffer.from(value.toISOString());
  if (typeof value === "object") return Buffer.from(JSON.stringify(value));
  return Buffer.from(String(value));
}

// --- a wiretap -------------------------------------------------------------------

interface Tap {
  addr: string;
  /** Every byte relayed, both directions. */
  chunks: Buffer[];
  connections: number;
  stop(): void;
}

/** Writes that honour a short socket.write: the rest waits for drain. */
class Pipe {
  private pending: Buffer[] = [];
  socket?: Socket<any>;
  write(chunk: Buffer): void {
    this.pending.push(chunk);
    this.flush();
  }
  flush(): void {
    while (this.socket && this.pending.length > 0) {
      const head = this.pending[0]!;
      const n = this.socket.write(head);
      if (n < 0) return;
      if (n < head.length) {
        this.pending[0] = head.subarray(n);
        return;
      }
      this.pending.shift();
    }
  }
}

/** A TCP relay to `target` that records what passes through it. */
async function tap(target: string): Promise<Tap> {
  const { host, port } = parseAddress(target);
  const chunks: Buffer[] = [];
  const state = { connections: 0 };
  type Side = { toServer: Pipe; toClient: Pipe; upstream?: Socket<undefined> };
  const listener: TCPSocketListener<Side> = Bun.listen<Side>({
    hostname: "127.0.0.1",
    port: 0,
    socket: {
      open(client) {
        state.connections++;
        const toServer = new Pipe();
        const toClient = new Pipe();
        toClient.socket = client;
        client.data = { toServer, toClient };
        Bun.connect({
          hostname: host,
          port,
          socket: {
            data(_s, chunk) {
              const copy = Buffer.from(chunk);
              chunks.push(copy);
              toClient.write(copy);
            },
            drain: () => toServer.flush(),
            close: () => void client.end(),
            error: () => void client.end(),
          },
        }).then(
          (upstream) => {
            client.data.upstream = upstream;
            toServer.socket = upstream;
            toServer.flush();
          },
          () => void client.end(),
        );
      },
      data(client, chunk) {
        const copy = Buffer.from(chunk);
        chunks.push(copy);
        client.data.toServer.write(copy);
      },
      drain(client) {
        client.data.toClient.flush();
      },
      close(client) {
        client.data.upstream?.end();
      },
      error(client) {
        client.data.upstream?.end();
      },
    },
  });
  return {
    addr: `127.0.0.1:${listener.port}`,
    chunks,
    get connections() {
      return state.connections;
    },
    stop: () => listener.stop(true),
  };
}
