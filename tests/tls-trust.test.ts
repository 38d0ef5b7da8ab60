/**
 * Clients trust the cluster on first use, as SSH does: the first balancer
 * pins the cluster CA, and afterwards a balancer or server under another CA,
 * or with a certificate for another name, is refused, loudly.
 */
import { afterAll, afterEach, expect, test } from "bun:test";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { KnownHostsFile } from "../client/known-hosts";
import { createCa, fingerprint, issueCertificate, type CertificateAuthority } from "../net/ca";
import { Link } from "../net/link";
import { PLAINTEXT, type ServerTls } from "../net/tls";
import { ClientTrust } from "../net/trust";
import { ChatError } from "../protocol/errors";
import { startBalancer, type Balancer } from "../roles/balancer";
import { ROOT, signup, startCluster, uniqueName, type Cluster } from "./support/cluster";
import { refusal } from "./support/errors";
import { TEST_CA, TEST_SECRET } from "./support/tls";

const homes: string[] = [];
const stops: (() => unknown)[] = [];
afterEach(async () => {
  for (const stop of stops.splice(0).reverse()) await stop();
});
afterAll(() => {
  for (const home of homes) rmSync(home, { recursive: true, force: true });
});

function freshHome(): string {
  const home = mkdtempSync(join(tmpdir(), "chatterbox-tls-home-"));
  homes.push(home);
  return home;
}

async function tlsUnder(ca: CertificateAuthority, hosts = ["127.0.0.1"]): Promise<ServerTls> {
  const issued = await issueCertificate(ca, hosts);
  return { certPem: issued.certPem, keyPem: issued.keyPem, caPem: ca.certPem };
}

/** A balancer presenting `tls`: any listener of ours names its CA in hello, and this one needs no database. */
async function balancerWith(tls: ServerTls, port = 0): Promise<Balancer & { addr: string }> {
  const b = await startBalancer({ port, strategy: "roundrobin", identity: { tls, secret: TEST_SECRET } });
  stops.push(() => b.stop());
  return { ...b, addr: `127.0.0.1:${b.port}` };
}

async function ask(addr: string, trust: ClientTrust): Promise<Link> {
  const link = await Link.connect(addr, { hello: { role: "client" }, trust, timeoutMs: 3000 });
  stops.push(() => link.close());
  return link;
}

test("the first connection pins the cluster CA, and the same balancer under another CA is refused with both fingerprints", async () => {
  const home = freshHome();
  const ours = await createCa("ours");
  const first = await balancerWith(await tlsUnder(ours));
  const link = await ask(first.addr, new ClientTrust(new KnownHostsFile(() => home)));
  expect(link.helloReply.role).toBe("balancer");
  expect(link.tlsVersion()).toBe("TLSv1.3");
  expect(readFileSync(join(home, "known_hosts"), "utf8")).toContain(`${first.addr} ${fingerprint(ours.certPem)} `);

  // A later run of the client (a new trust over the same file) still trusts it without asking,
  // and resumes the TLS session of the connection before: no certificate exchange again.
  const again = await ask(first.addr, new ClientTrust(new KnownHostsFile(() => home)));
  expect(again.resumed()).toBe(true);
  expect(link.resumed()).toBe(false);

  // Someone else now answers on that address, with a CA of their own.
  const port = first.port;
  for (const stop of stops.splice(0).reverse()) await stop();
  const theirs = await createCa("theirs");
  await balancerWith(await tlsUnder(theirs), port);
  const error = await refusal(ask(`127.0.0.1:${port}`, new ClientTrust(new KnownHostsFile(() => home))));
  expect(error.code).toBe("E_CA_CHANGED");
  expect(error.message).toContain(fingerprint(ours.certPem));
  expect(error.message).toContain(fingerprint(theirs.certPem));
  expect(error.message).toContain("chatterbox ca fingerprint");
  // The pin is unchanged: refusing once does not mean trusting next time.
  expect(readFileSync(join(home, "known_hosts"), "utf8")).toContain(fingerprint(ours.certPem));
});

test("--ca-fingerprint: the CA it names is accepted on first use, any other refused", async () => {
  const ca = await createCa("expected");
  const b = await balancerWith(await tlsUnder(ca));
  const other = await createCa("other");
  const wrong = await refusal(ask(b.addr, new ClientTrust(new KnownHostsFile(() => freshHome()), { fingerprint: fingerprint(other.certPem) })));
  expect(wrong.code).toBe("E_CA_CHANGED");
  expect(wrong.message).toContain(fingerprint(ca.certPem));
  // As people paste it: lower case, no colons.
  const pasted = fingerprint(ca.certPem).toLowerCase().replace(/:/g, "");
  await ask(b.addr, new ClientTrust(new KnownHostsFile(() => freshHome()), { fingerprint: pasted }));
});

test("--ca FILE: trusted from the start, nothing pinned; a balancer under another CA is refused", async () => {
  const ca = await createCa("given");
  const home = freshHome();
  const b = await balancerWith(await tlsUnder(ca));
  await ask(b.addr, new ClientTrust(new KnownHostsFile(() => home), { caPem: ca.certPem }));
  expect(() => readFileSync(join(home, "known_hosts"))).toThrow();
  const stranger = await balancerWith(await tlsUnder(await createCa("stranger")));
  expect((await refusal(ask(stranger.addr, new ClientTrust(undefined, { caPem: ca.certPem })))).code).toBe("E_CA_CHANGED");
});

test("a server under another CA is refused by a client that pinned the cluster at its balancer", async () => {
  const home = freshHome();
  const trust = new ClientTrust(new KnownHostsFile(() => home));
  const cluster = await balancerWith(await tlsUnder(await createCa("cluster")));
  await ask(cluster.addr, trust);
  // The balancer could be made to name this server; its certificate gives it away.
  const rogue = await balancerWith(await tlsUnder(await createCa("rogue")));
  expect((await refusal(ask(rogue.addr, trust))).code).toBe("E_CA_CHANGED");
  // So in a later run, which finds the balancer's CA pinned: servers are checked, never trusted on first use.
  const later = new ClientTrust(new KnownHostsFile(() => home));
  await ask(cluster.addr, later);
  expect((await refusal(ask(rogue.addr, later))).code).toBe("E_CA_CHANGED");
  expect(readFileSync(join(home, "known_hosts"), "utf8")).not.toContain(rogue.addr);
});

test("a certificate under the right CA but for another name is refused", async () => {
  const ca = await createCa("names");
  const elsewhere = await balancerWith(await tlsUnder(ca, ["chat.example.org"]));
  const error = await refusal(ask(elsewhere.addr, new ClientTrust(undefined, { caPem: ca.certPem })));
  expect(error.code).toBe("E_TLS");
  expect(error.message).toContain("127.0.0.1");
});

test("a client expecting TLS never falls back to plaintext against a plaintext listener", async () => {
  const plain = await startBalancer({ port: 0, strategy: "roundrobin", identity: { tls: PLAINTEXT, secret: TEST_SECRET } });
  stops.push(() => plain.stop());
  const error = await refusal(ask(`127.0.0.1:${plain.port}`, new ClientTrust(undefined, { caPem: TEST_CA.certPem })));
  expect(error).toBeInstanceOf(ChatError);
  expect(["E_UNAVAILABLE", "E_TLS", "E_CLOSED", "E_TIMEOUT"]).toContain(error.code);
});

test("the command line pins on first use, `ca fingerprint` shows the same, and a wrong --ca-fingerprint exits loudly", async () => {
  const cluster: Cluster = await startCluster({ servers: 1 });
  stops.push(() => cluster.stop());
  const home = freshHome();
  const env = { ...process.env, CHATTERBOX_HOME: home, CHATTERBOX_PASSWORD: "correct horse battery", DATABASE_URL: cluster.url };
  const run = async (args: string[]) => {
    const proc = Bun.spawn([process.execPath, join(ROOT, "cli.ts"), ...args], { env, stdout: "pipe", stderr: "pipe" });
    const [out, err] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text()]);
    return { code: await proc.exited, out, err };
  };
  const shown = await run(["ca", "fingerprint"]);
  expect(shown.code).toBe(0);
  expect(shown.out.trim()).toBe(fingerprint(TEST_CA.certPem));

  const name = uniqueName("tofu");
  const friend = uniqueName("friend");
  await signup(cluster.balancerAddr, friend);
  const ok = await run(["signup", "--user", name, "--balancer", cluster.balancerAddr]);
  expect(ok.code, ok.err).toBe(0);
  expect(readFileSync(join(home, "known_hosts"), "utf8")).toContain(`${cluster.balancerAddr} ${fingerprint(TEST_CA.certPem)}`);

  const wrong = fingerprint((await createCa("wrong")).certPem);
  const refused = await run(["send", "--user", name, "--balancer", cluster.balancerAddr, "--to", friend, "--ca-fingerprint", wrong, "hello"]);
  expect(refused.code).toBe(1);
  expect(refused.err).toContain("REFUSED");
  expect(refused.err).toContain(wrong);
  expect(refused.err).toContain(fingerprint(TEST_CA.certPem));

  // `ca export` writes the CA for --ca FILE, which a new device can use instead of trusting on first use.
  const exported = await run(["ca", "export"]);
  const caFile = join(freshHome(), "ca.pem");
  writeFileSync(caFile, exported.out);
  const other = await run(["send", "--user", name, "--balancer", cluster.balancerAddr, "--to", friend, "--ca", caFile, "hello"]);
  expect(other.code, other.err).toBe(0);
}, 60_000);
