/**
 * The password is the account: from an empty CHATTERBOX_HOME it restores the
 * identity keys and with them the whole history; a wrong one restores nothing;
 * a new one replaces it (and every resume token) at once. And asking for a
 * name's salt does not tell whether the account exists.
 */
import { Database } from "bun:sqlite";
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync, readFileSync, rmSync, statSync } from "node:fs";
import { join } from "node:path";
import { askBalancer } from "../balancer/ask";
import type { Received } from "../client/session";
import { DEFAULT_KDF } from "../crypto/kdf";
import type { IdentityKeys } from "../crypto/keys";
import { Link } from "../net/link";
import { connectPersistent, connectUser, freshHome, PASSWORD, ROOT, signup, startCluster, type Cluster } from "./support/cluster";

const NEW_PASSWORD = "a much better passphrase";

let cluster: Cluster;
const originalHome = process.env.CHATTERBOX_HOME;
const keys: Record<string, IdentityKeys> = {};
/** The conversation as alice should read it on any device: [from, text]. */
const conversation: [string, string][] = [
  ["alice", "hi bob, this is alice"],
  ["bob", "hi alice, bob here"],
  ["alice", "my own words must come back too"],
];

beforeAll(async () => {
  cluster = await startCluster({ servers: 2 });
  for (const name of ["alice", "bob"]) keys[name] = await signup(cluster.balancerAddr, name);
  const alice = await connectUser(cluster.balancerAddr, "alice");
  const bob = await connectUser(cluster.balancerAddr, "bob");
  // Each send resolves once stored, so the history is in this order.
  for (const [from, text] of conversation) {
    const [sender, reader] = from === "alice" ? [alice, bob] : [bob, alice];
    await sender.session.sendText(reader.name, text);
  }
  await alice.session.close();
  await bob.session.close();
}, 60_000);

afterAll(async () => {
  process.env.CHATTERBOX_HOME = originalHome;
  for (const home of homes) rmSync(home, { recursive: true, force: true });
  await cluster?.stop();
});

const homes: string[] = [];
/** The device's local store, which holds its identity keys and its token. */
const keysFile = (home: string, user: string) => join(home, user, "store.db");

/** A value the local store holds (keys as base64, the token), read the way a person would. */
function stored(home: string, user: string, key: string): string | undefined {
  if (!existsSync(keysFile(home, user))) return undefined;
  const db = new Database(keysFile(home, user), { readonly: true });
  try {
    return (db.query("select v from kv where k = ?").get(key) as { v: string } | null)?.v ?? undefined;
  } finally {
    db.close();
  }
}

/** The private keys as the local store holds them. */
function savedKeys(home: string, user: string): { dh?: string; sign?: string } {
  return { dh: stored(home, user, "identity.dh"), sign: stored(home, user, "identity.sign") };
}

function b64(bytes: Uint8Array): string {
  return Buffer.from(bytes).toString("base64");
}

function readable(messages: Received[]) {
  return messages.map((m) => ({ from: m.from, verified: m.verified, text: m.text }));
}

const expected = conversation.map(([from, text]) => ({ from, verified: true, text }));

async function refusedLogin(home: string, password: string): Promise<{ code?: string }> {
  return connectPersistent(cluster.balancerAddr, home, "alice", password).then(
    async (user) => {
      await user.session.close();
      return { code: "logged in" };
    },
    (error) => error,
  );
}

/** A bare connection to a server (the balancer's pick unless given), not logged in. */
async function anonymousLink(addr?: string): Promise<Link> {
  return Link.connect(addr ?? (await askBalancer(cluster.balancerAddr)), { hello: { role: "client" } });
}

describe("logging in on a new device", () => {
  test("a login from an empty CHATTERBOX_HOME restores the identity keys into the local store, readable by the user alone", async () => {
    const home = freshHome(homes);
    const alice = await connectPersistent(cluster.balancerAddr, home, "alice", PASSWORD);
    await alice.session.close();
    expect(savedKeys(home, "alice")).toEqual({ dh: b64(keys.alice!.dhPrivate), sign: b64(keys.alice!.signPrivate) });
    expect(statSync(keysFile(home, "alice")).mode & 0o777).toBe(0o600);
  });

  test("from an empty CHATTERBOX_HOME, the whole history decrypts, the user's own messages included", async () => {
    const alice = await connectPersistent(cluster.balancerAddr, freshHome(homes), "alice", PASSWORD);
    const history = await alice.session.history("bob");
    await alice.session.close();
    expect(readable(history)).toEqual(expected);
  });

  test("a wrong password is refused with E_AUTH and writes no keys", async () => {
    const home = freshHome(homes);
    expect((await refusedLogin(home, "not the password")).code).toBe("E_AUTH");
    expect(savedKeys(home, "alice")).toEqual({ dh: undefined, sign: undefined });
  });

  test("the chatterbox command, from an empty CHATTERBOX_HOME, prints the decrypted history", async () => {
    const home = freshHome(homes);
    const run = Bun.spawn([process.execPath, join(ROOT, "cli.ts"), "history", "--user", "alice", "--with", "bob", "--json", "--balancer", cluster.balancerAddr], {
      env: { ...process.env, CHATTERBOX_HOME: home, CHATTERBOX_PASSWORD: PASSWORD, CHATTERBOX_TEST_KDF: "1" },
      stdout: "pipe",
      stderr: "pipe",
    });
    const [out, err, code] = await Promise.all([new Response(run.stdout).text(), new Response(run.stderr).text(), run.exited]);
    expect({ code, err }).toEqual({ code: 0, err: "" });
    const lines = out.trim().split("\n").map((l) => JSON.parse(l));
    expect(lines.map((l) => ({ from: l.from, verified: l.verified, text: l.text }))).toEqual(expected);
    expect(savedKeys(home, "alice").sign).toBe(b64(keys.alice!.signPrivate));
  });

  test("the chatterbox command with a wrong password says so (E_AUTH) and writes no keys", async () => {
    const home = freshHome(homes);
    const run = Bun.spawn([process.execPath, join(ROOT, "cli.ts"), "history", "--user", "alice", "--with", "bob", "--balancer", cluster.balancerAddr], {
      env: { ...process.env, CHATTERBOX_HOME: home, CHATTERBOX_PASSWORD: "not the password", CHATTERBOX_TEST_KDF: "1" },
      stdout: "pipe",
      stderr: "pipe",
    });
    const [out, err, code] = await Promise.all([new Response(run.stdout).text(), new Response(run.stderr).text(), run.exited]);
    expect({ code, out, refused: err.includes("(E_AUTH)") }).toEqual({ code: 1, out: "", refused: true });
    expect(savedKeys(home, "alice")).toEqual({ dh: undefined, sign: undefined });
  });
});

describe("changing the password", () => {
  const home = freshHome(homes);
  let oldToken: string;

  beforeAll(async () => {
    const alice = await connectPersistent(cluster.balancerAddr, home, "alice", PASSWORD);
    await alice.session.close();
    oldToken = stored(home, "alice", "token")!;
    // The token works until the password changes.
    const link = await anonymousLink();
    await link.request("resume", { user: "alice", token: oldToken });
    link.close();
  });

  test("a logged-in session changes its password (passwd)", async () => {
    const alice = await connectPersistent(cluster.balancerAddr, home, "alice", PASSWORD);
    const changed = await alice.session.changePassword(PASSWORD, NEW_PASSWORD).then(
      () => "changed",
      (e) => `refused: ${e.code} ${e.message}`,
    );
    await alice.session.close();
    expect(changed).toBe("changed");
  });

  test("resume tokens issued before the change stop working (E_TOKEN)", async () => {
    const link = await anonymousLink();
    const refused = await link.request("resume", { user: "alice", token: oldToken }).catch((e) => e);
    link.close();
    expect(refused.code).toBe("E_TOKEN");
  });

  test("afterwards the old password is refused with E_AUTH and unlocks no keys", async () => {
    const fresh = freshHome(homes);
    expect((await refusedLogin(fresh, PASSWORD)).code).toBe("E_AUTH");
    expect(savedKeys(fresh, "alice")).toEqual({ dh: undefined, sign: undefined });
  });

  test("the new password restores the same keys on yet another new device, and the history still decrypts", async () => {
    const fresh = freshHome(homes);
    const alice = await connectPersistent(cluster.balancerAddr, fresh, "alice", NEW_PASSWORD);
    const history = await alice.session.history("bob");
    await alice.session.close();
    expect(savedKeys(fresh, "alice")).toEqual({ dh: b64(keys.alice!.dhPrivate), sign: b64(keys.alice!.signPrivate) });
    expect(readable(history)).toEqual(expected);
  });
});

describe("asking for a name's salt", () => {
  async function saltOf(link: Link, user: string): Promise<{ salt: Uint8Array; kdf: Record<string, unknown> }> {
    const reply = await link.request("salt", { user });
    return { salt: new Uint8Array(reply.salt as Uint8Array), kdf: reply.kdf as Record<string, unknown> };
  }

  test("an unknown name gets an answer of the same shape as a real account's", async () => {
    const link = await anonymousLink();
    const [real, unknown] = [await saltOf(link, "alice"), await saltOf(link, "nosuchuser")];
    link.close();
    const shape = (a: { salt: Uint8Array; kdf: Record<string, unknown> }) => ({
      saltBytes: a.salt.length,
      kdfFields: Object.keys(a.kdf).sort(),
      alg: a.kdf.alg,
    });
    expect(shape(unknown)).toEqual(shape(real));
    // Test accounts use the cheap test setting; unknown names get what real accounts get in production.
    expect(unknown.kdf).toEqual({ ...DEFAULT_KDF });
  });

  test("an unknown name's salt is stable across calls and servers, and differs between names", async () => {
    const [one, two] = [await anonymousLink(cluster.servers[0]!.addr), await anonymousLink(cluster.servers[1]!.addr)];
    const first = await saltOf(one, "nosuchuser");
    const again = await saltOf(two, "nosuchuser");
    const other = await saltOf(one, "nobodyelse");
    one.close();
    two.close();
    expect(again).toEqual(first);
    expect(Buffer.from(other.salt).equals(Buffer.from(first.salt))).toBe(false);
  });
});
