/**
 * An operator with a domain gives --tls-cert and --tls-key: clients then check
 * the balancer and servers against the system's roots (here, a stand-in public
 * CA added with NODE_EXTRA_CA_CERTS), while members still authenticate each
 * other under the cluster CA.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createCa, issueCertificate } from "../net/ca";
import { publicServerTls } from "../net/tls";
import { startBalancer, type Balancer } from "../roles/balancer";
import { startServer, type ChatServer } from "../roles/server";
import { PASSWORD, ROOT, uniqueName, waitFor } from "./support/cluster";
import { testDatabaseUrl } from "./support/pg";
import { seedCluster, TEST_SECRET, TEST_TLS } from "./support/tls";

let dir: string;
let balancer: Balancer;
const servers: ChatServer[] = [];
let files: { cert: string; key: string; roots: string };

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "chatterbox-public-tls-"));
  const publicCa = await createCa("Stand-in public CA");
  const issued = await issueCertificate(publicCa, ["127.0.0.1"]);
  files = { cert: join(dir, "cert.pem"), key: join(dir, "key.pem"), roots: join(dir, "roots.pem") };
  writeFileSync(files.cert, issued.certPem);
  writeFileSync(files.key, issued.keyPem, { mode: 0o600 });
  writeFileSync(files.roots, publicCa.certPem);
  // The "system roots" of this machine: the servers here read it for their member links, clients (processes) get it from Bun.
  process.env.NODE_EXTRA_CA_CERTS = files.roots;
  const url = await testDatabaseUrl();
  await seedCluster(url);
  balancer = await startBalancer({ port: 0, strategy: "roundrobin", identity: { tls: publicServerTls(files.cert, files.key, TEST_TLS), secret: TEST_SECRET } });
  for (let i = 0; i < 2; i++) {
    servers.push(
      await startServer({ port: 0, databaseUrl: url, balancer: `127.0.0.1:${balancer.port}`, publicTls: { certFile: files.cert, keyFile: files.key }, log: () => {} }),
    );
  }
  await waitFor(() => balancer.servers().length === 2, "both servers to register over public-certificate TLS");
});

afterAll(async () => {
  for (const s of servers) await s.stop();
  balancer?.stop();
  delete process.env.NODE_EXTRA_CA_CERTS;
  rmSync(dir, { recursive: true, force: true });
});

async function cli(home: string, args: string[], roots: boolean) {
  const env: Record<string, string | undefined> = { ...process.env, CHATTERBOX_HOME: home, CHATTERBOX_PASSWORD: PASSWORD };
  if (!roots) delete env.NODE_EXTRA_CA_CERTS;
  const proc = Bun.spawn([process.execPath, join(ROOT, "cli.ts"), ...args, "--balancer", `127.0.0.1:${balancer.port}`], { env, stdout: "pipe", stderr: "pipe" });
  const [out, err] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text()]);
  return { code: await proc.exited, out, err };
}

test("with --tls-cert, clients check the balancer and servers against the system roots, and messages flow", async () => {
  const [alice, bob] = [uniqueName("alice"), uniqueName("bob")];
  const home = join(dir, "home");
  expect((await cli(home, ["signup", "--user", alice], true)).code).toBe(0);
  expect((await cli(home, ["signup", "--user", bob], true)).code).toBe(0);
  const sent = await cli(home, ["send", "--user", alice, "--to", bob, "over public TLS"], true);
  expect(sent.code, sent.err).toBe(0);
  const inbox = await cli(home, ["inbox", "--user", bob], true);
  expect(inbox.out).toContain("over public TLS");
  // Nothing of the cluster CA is pinned: the public roots decide for this balancer.
  expect(readFileSync(join(home, "known_hosts"), "utf8")).toContain(`127.0.0.1:${balancer.port} PUBLIC-PKI -`);
}, 60_000);

test("a client whose system roots do not include the certificate's CA refuses it", async () => {
  const refused = await cli(join(dir, "other-home"), ["signup", "--user", uniqueName("carol")], false);
  expect(refused.code).toBe(1);
  expect(refused.err).toContain("E_TLS");
}, 60_000);
