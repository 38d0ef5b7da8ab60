/**
 * A resume racing a password change (issue 14): the token is checked under the
 * same lock on the user's row that the change takes (server/device-store.ts),
 * so a resume in flight while `passwd` commits cannot complete with the old
 * token. The race is made certain, not hoped for: a transaction of the test
 * holds the user's token rows, so that the password change stops inside its
 * transaction (holding the user's row, waiting to delete the tokens); the
 * resume, from another process, then waits on the user's row; and only when
 * both are seen waiting in pg_stat_activity is the hold let go.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { join } from "node:path";
import postgres from "postgres";
import { loginKeys } from "../client/account";
import { deriveKeys, TEST_KDF } from "../crypto/kdf";
import { Link } from "../net/link";
import { askBalancer } from "../balancer/ask";
import { ROOT, PASSWORD, signup, startCluster, uniqueName, until, type Cluster } from "./support/cluster";
import { TEST_CA } from "./support/tls";

let cluster: Cluster;
let sql: postgres.Sql;

beforeAll(async () => {
  cluster = await startCluster({ servers: 1 });
  sql = postgres(cluster.url, { max: 4, onnotice: () => {} });
}, 60_000);

afterAll(async () => {
  await sql?.end();
  await cluster?.stop();
});

/** Backends of the server waiting for a lock, with the start of their statement. */
async function waitingOnLocks(): Promise<string[]> {
  const rows = await sql`select query from pg_stat_activity where wait_event_type = 'Lock' and datname = current_database()`;
  return rows.map((r) => String(r.query).replace(/\s+/g, " ").trim());
}

/** A resume from another process: what the server answered it. */
async function resumeElsewhere(addr: string, user: string, token: string): Promise<string> {
  const proc = Bun.spawn([process.execPath, join(ROOT, "tests/support/hostile-client.ts"), "resume", addr, user, token], {
    stdout: "pipe",
    stderr: "pipe",
    env: { ...process.env, HOSTILE_CA: TEST_CA.certPem },
  });
  const [out, err, code] = [await new Response(proc.stdout).text(), await new Response(proc.stderr).text(), await proc.exited];
  if (code !== 0) throw new Error(`resume process exited ${code}: ${err}`);
  return JSON.parse(out.trim().split("\n").pop()!).code;
}

test("a resume in flight while passwd commits does not complete with the old token", async () => {
  const name = uniqueName("racer");
  await signup(cluster.balancerAddr, name);
  const addr = await askBalancer(cluster.balancerAddr);
  // The device whose token is to be resumed, logged in once with the password.
  const device = await Link.connect(addr, { hello: { role: "client" } });
  const { authKey } = await loginKeys(device, name, PASSWORD);
  const { token } = (await device.request("login", { user: name, auth: authKey, device: { id: "racer-device", name: "racer" } })) as { token: string };
  device.close();
  // Sanity: the token resumes while nothing changes it.
  expect(await resumeElsewhere(addr, name, token)).toBe("ok");

  const changer = await Link.connect(addr, { hello: { role: "client" } });
  const old = await loginKeys(changer, name, PASSWORD);
  await changer.request("login", { user: name, auth: old.authKey, device: { id: "changer-device", name: "changer" } });
  const salt = crypto.getRandomValues(new Uint8Array(16));
  const next = deriveKeys("a new password", salt, TEST_KDF);

  let release!: () => void;
  const released = new Promise<void>((resolve) => (release = resolve));
  let held!: () => void;
  const holding = new Promise<void>((resolve) => (held = resolve));
  const hold = sql.begin(async (tx) => {
    await tx`select t.hash from tokens t join users u on u.id = t.user_id where u.name = ${name} for update of t`;
    held();
    await released;
  });
  await holding;
  try {
    const passwd = changer.request("passwd", { old: old.authKey, auth: next.authKey, salt, kdf: TEST_KDF, backup: new Uint8Array(64) }, 60_000).then(
      () => "ok",
      (e) => e.code,
    );
    // The change holds the user's row and waits for the tokens.
    await until(async () => (await waitingOnLocks()).some((q) => q.startsWith("delete from tokens")), "passwd to wait inside its transaction", 30_000);
    const resumed = resumeElsewhere(addr, name, token);
    // The resume waits on the user's row, behind the change.
    await until(async () => (await waitingOnLocks()).some((q) => q.startsWith("select id from users")), "the resume to wait on the user's row", 30_000);
    release();
    await hold;
    expect(await passwd).toBe("ok");
    expect(await resumed).toBe("E_TOKEN");
  } finally {
    release();
    await hold.catch(() => {});
    changer.close();
  }
  // And afterwards, the old token stays refused; the new password logs in.
  expect(await resumeElsewhere(addr, name, token)).toBe("E_TOKEN");
  const after = await Link.connect(addr, { hello: { role: "client" } });
  const keys = await loginKeys(after, name, "a new password");
  expect(await after.request("login", { user: name, auth: keys.authKey, device: { id: "racer-device", name: "racer" } })).toMatchObject({ ok: true, user: name });
  after.close();
});
