/**
 * The limits fit together (issue 14, item 4): a group of the largest size,
 * every name as long as names go, can send, and its history reads back through
 * replies that each fit one frame; limits that contradict each other stop a
 * server at start, naming the sizes.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import postgres from "postgres";
import { generateIdentity } from "../crypto/keys";
import { DEFAULT_CONFIG } from "../server/context";
import { assertLimits, bodyFor, pageBytes } from "../protocol/limits";
import { DEFAULT_MAX_FRAME } from "../protocol/frame";
import { connectUser, signup, startCluster, type Cluster, type TestUser } from "./support/cluster";

const MEMBERS = DEFAULT_CONFIG.maxGroupMembers;
/** Names of 32 characters, the longest there are: the largest envelope. */
const long = (prefix: string, i: number) => `${prefix}${String(i).padStart(32 - prefix.length, "0")}`;

let cluster: Cluster;
let sql: postgres.Sql;
let owner: TestUser;
const ownerName = long("owner", 0);

beforeAll(async () => {
  cluster = await startCluster({ servers: 1 });
  sql = postgres(cluster.url, { max: 1, onnotice: () => {} });
  await signup(cluster.balancerAddr, ownerName);
  // The other members straight into ChatDB (999 argon2id signups would take minutes): public keys only, no one logs in.
  const rows = Array.from({ length: MEMBERS - 1 }, (_, i) => {
    const keys = generateIdentity();
    return { name: long("m", i), auth_hash: "x", salt: new Uint8Array(16), kdf: "{}", dh_public: keys.dhPublic, sign_public: keys.signPublic, key_backup: new Uint8Array(64) };
  });
  await sql`insert into users ${sql(rows, "name", "auth_hash", "salt", "kdf", "dh_public", "sign_public", "key_backup")}`;
  owner = await connectUser(cluster.balancerAddr, ownerName);
}, 60_000);

afterAll(async () => {
  await owner?.session.close();
  await sql?.end();
  await cluster?.stop();
});

test(`a group of ${MEMBERS} members with 32-character names can send long messages, and /history 20 reads them all back`, async () => {
  const group = long("g", 1);
  await owner.session.createGroup(group, Array.from({ length: MEMBERS - 1 }, (_, i) => long("m", i)));
  const texts = Array.from({ length: 6 }, (_, i) => `${i} ${"x".repeat(60 * 1024)}`);
  for (const text of texts) await owner.session.sendGroupText(group, text);
  const [row] = await sql`select max(octet_length(body))::int as bytes from messages m join conversations c on c.id = m.conversation_id where c.name = ${group} and m.kind = 'chat'`;
  const bytes = row!.bytes as number;
  // Each envelope holds a key for every member: over 64 KiB of keys alone, and within the body limit.
  expect(bytes).toBeGreaterThan(MEMBERS * 81);
  expect(bytes).toBeLessThanOrEqual(DEFAULT_CONFIG.maxBody);
  // Six such messages are more than one frame: the server pages by bytes and the client asks again.
  expect(6 * bytes).toBeGreaterThan(pageBytes({ maxFrame: DEFAULT_MAX_FRAME }));
  const history = (await owner.session.groupHistory(group, 20)).filter((m) => m.verified && m.from === ownerName);
  expect(history.map((m) => m.text)).toEqual(texts);
}, 60_000);

test("the default limits are consistent, and contradictory ones are refused at start with the sizes named", async () => {
  expect(() => assertLimits(DEFAULT_CONFIG)).not.toThrow();
  expect(bodyFor(MEMBERS)).toBeLessThanOrEqual(DEFAULT_CONFIG.maxBody);
  expect(() => assertLimits({ ...DEFAULT_CONFIG, maxBody: 64 * 1024 })).toThrow(`A group of ${MEMBERS} members needs message bodies of ${bodyFor(MEMBERS)} bytes`);
  expect(() => assertLimits({ ...DEFAULT_CONFIG, maxGroupMembers: 20_000, maxBody: bodyFor(20_000) })).toThrow("does not fit a frame");
  const refused = await cluster.addServer({ maxBody: 64 * 1024 }).catch((e: Error) => e.message);
  expect(refused).toContain("needs message bodies of");
});
