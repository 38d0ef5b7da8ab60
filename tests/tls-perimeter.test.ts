/**
 * The balancer's perimeter: only a cluster member (a certificate under the
 * cluster CA and a proof of the cluster secret) may register, heartbeat or
 * list servers; a client may only ask where; and nobody can hold it open for
 * free. Real sockets, a real cluster.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { connectAsMember } from "../balancer/member";
import { createCa, issueCertificate } from "../net/ca";
import { Link } from "../net/link";
import { startBalancer } from "../roles/balancer";
import { nonce } from "../server/peer-proof";
import { startCluster, waitFor, type Cluster } from "./support/cluster";
import { refusal } from "./support/errors";
import { TEST_CA, TEST_MEMBER, TEST_SECRET, TEST_TLS } from "./support/tls";

let cluster: Cluster;
const logs: string[] = [];
let rogueAddr: string;

beforeAll(async () => {
  cluster = await startCluster({ servers: 1 });
  rogueAddr = "127.0.0.1:9"; // where a rogue would like clients to go
});
afterAll(async () => {
  await cluster.stop();
});

/** A member's hello with a cluster certificate, as someone who has one but not the cluster secret. */
async function withoutSecret(balancer: string, id: string): Promise<Link> {
  const link = await Link.connect(balancer, { tls: TEST_MEMBER.tls, hello: { role: "server", server: id, nonce: nonce() } });
  // The balancer proved itself in its reply; only the caller's proof is missing.
  expect(link.helloReply.proof).toBeInstanceOf(Uint8Array);
  return link;
}

/** What a real client would be told, many times over. */
async function answers(n: number): Promise<Set<string>> {
  const seen = new Set<string>();
  for (let i = 0; i < n; i++) {
    const link = await Link.connect(cluster.balancerAddr, { hello: { role: "client" } });
    seen.add((await link.request("where")).server as string);
    link.close();
  }
  return seen;
}

test("a rogue registration without cluster credentials is refused, and no client is ever sent to it", async () => {
  const real = cluster.servers[0]!;
  const register = { server: real.id, addr: rogueAddr, load: 0 };

  // 1. Plain TLS, no certificate: says hello as a server, as the old protocol allowed.
  const bare = await refusal(Link.connect(cluster.balancerAddr, { hello: { role: "server", server: real.id, nonce: nonce() } }));
  expect(bare.code).toBe("E_AUTH");

  // 2. A certificate, but under a CA of its own making. (This process also holds the real server's
  // TLS session to the balancer: it must not lend that session's certificate to this caller.)
  (await connectAsMember(cluster.balancerAddr, { id: "genuine-tool", ...TEST_MEMBER })).close();
  const ownCa = await createCa("rogue");
  const own = await issueCertificate(ownCa, ["127.0.0.1"]);
  const forged = await refusal(
    connectAsMember(cluster.balancerAddr, { id: real.id, secret: TEST_SECRET, tls: { caPem: TEST_CA.certPem, certPem: own.certPem, keyPem: own.keyPem } }),
  );
  expect(forged.code).toBe("E_AUTH");

  // 3. A stolen cluster certificate, correct protocol, but not the cluster secret: its proof is a guess.
  const noSecret = await withoutSecret(cluster.balancerAddr, real.id);
  expect((await refusal(noSecret.request("auth", { proof: crypto.getRandomValues(new Uint8Array(32)) }))).code).toBe("E_AUTH");
  // The balancer then hangs up on it; it never got to register.
  expect(["E_AUTH", "E_CLOSED"]).toContain((await refusal(noSecret.request("register", register))).code);

  // 4. A client's connection: it may ask, never register, heartbeat or list.
  const client = await Link.connect(cluster.balancerAddr, { hello: { role: "client" } });
  expect((await refusal(client.request("register", register))).code).toBe("E_AUTH");
  expect((await refusal(client.request("heartbeat", { load: 0 }))).code).toBe("E_AUTH");
  expect((await refusal(client.request("servers"))).code).toBe("E_AUTH");
  client.close();

  // The real server is still listed, alone, and every client is sent to it.
  expect(cluster.balancer.servers().map((s) => s.addr)).toEqual([real.addr]);
  expect([...(await answers(20))]).toEqual([real.addr]);
});

test("a member registers only under the id it proved, so it cannot evict another server", async () => {
  const real = cluster.servers[0]!;
  const member = await connectAsMember(cluster.balancerAddr, { id: "tool-x", ...TEST_MEMBER });
  expect((await refusal(member.request("register", { server: real.id, addr: rogueAddr, load: 0 }))).code).toBe("E_AUTH");
  // Listing is for members.
  const listed = (await member.request("servers")).servers as { id: string }[];
  expect(listed.map((s) => s.id)).toEqual([real.id]);
  member.close();
  expect(cluster.balancer.servers().map((s) => s.addr)).toEqual([real.addr]);
});

test("the balancer closes a connection that says nothing, caps connections per address, and logs what callers claim only sanitised", async () => {
  const b = await startBalancer({
    port: 0,
    strategy: "roundrobin",
    identity: { tls: TEST_TLS, secret: TEST_SECRET },
    helloTimeoutMs: 300,
    maxPerAddress: 3,
    log: (line) => logs.push(line),
  });
  const addr = `127.0.0.1:${b.port}`;
  try {
    // Silent after the TLS handshake: closed, without a word from us.
    let closed = false;
    let handshaken = false;
    const silent = await Bun.connect({
      hostname: "127.0.0.1",
      port: b.port,
      tls: { ca: TEST_CA.certPem, rejectUnauthorized: true },
      socket: { handshake: () => void (handshaken = true), data() {}, close: () => void (closed = true), error: () => void (closed = true) },
    });
    await waitFor(() => closed, "the balancer to close the silent connection", 5000);
    expect(handshaken).toBe(true);
    silent.end();

    // Three at once from one address are served; a fourth is not.
    const held = await Promise.all([1, 2, 3].map(() => Link.connect(addr, { hello: { role: "client" } })));
    const fourth = await refusal(Link.connect(addr, { hello: { role: "client" }, timeoutMs: 2000 }));
    expect(["E_CLOSED", "E_UNAVAILABLE", "E_TIMEOUT"]).toContain(fourth.code);
    for (const link of held) link.close();
    // Once they are gone, there is room again.
    let again: Link | undefined;
    while (!again) again = await Link.connect(addr, { hello: { role: "client" } }).catch(() => undefined);
    again.close();

    // A member's claimed id reaches the log with its control characters defused.
    const evil = "evil\n[balancer] server real registered\u001b[2J";
    const liar = await withoutSecret(addr, evil);
    await refusal(liar.request("auth", { proof: crypto.getRandomValues(new Uint8Array(32)) }));
    await waitFor(() => logs.some((l) => l.includes("wrong proof")), "the refusal to be logged");
    const line = logs.find((l) => l.includes("wrong proof"))!;
    expect(line).not.toContain("\n");
    expect(line).not.toContain("\u001b");
    expect(line).toContain("evil\\n");
  } finally {
    b.stop();
  }
});
