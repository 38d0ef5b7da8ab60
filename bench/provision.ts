/**
 * Bench accounts, made straight in ChatDB when the bench owns the database.
 * Through the protocol each signup and each first login costs the server an
 * argon2id hash (~60-140 ms of a core): 10,000 accounts would take a quarter
 * of an hour before measuring anything. These rows are what a signup makes
 * (users and sessions), for accounts that share one password and one salt,
 * so one derivation and one argon2id hash serve them all; each still has its
 * own identity keys and key backup. Their resume tokens are issued here too,
 * so the clients log in with `resume`. What is measured afterwards (sending,
 * delivering, holding connections) goes through the protocol as always.
 */
import { createHash, randomBytes } from "node:crypto";
import postgres from "postgres";
import { TEST_KDF, deriveKeys, wrapIdentity } from "../crypto/kdf";
import { generateIdentity } from "../crypto/keys";
import { chunks } from "../protocol/messages";

const TOKEN_DAYS = 6;

export async function provision(
  url: string,
  prefix: string,
  clients: number,
  password: string,
  tokens: Record<string, string>,
  log: (line: string) => void,
): Promise<Record<string, string>> {
  const sql = postgres(url, { max: 1, onnotice: () => {} });
  try {
    const names = Array.from({ length: clients }, (_, i) => `${prefix}${i}`);
    const rows = await sql`select id, name from users where name = any(${names})`;
    const have = new Set(rows.map((r) => r.name as string));
    const missing = names.filter((n) => !have.has(n));
    if (missing.length > 0) {
      const t0 = performance.now();
      // One salt for every bench account: one derivation, one argon2id hash.
      const salt = createHash("sha256").update(`chatterbox bench salt ${prefix}`).digest().subarray(0, 16);
      const { authKey, wrapKey } = deriveKeys(password, new Uint8Array(salt), TEST_KDF);
      const hash = await Bun.password.hash(authKey, { algorithm: "argon2id" });
      for (const part of chunks(missing, 1000)) {
        const chunk = part.map((name) => {
          const keys = generateIdentity();
          return { name, auth_hash: hash, salt, kdf: JSON.stringify(TEST_KDF), dh_public: keys.dhPublic, sign_public: keys.signPublic, key_backup: wrapIdentity(keys, wrapKey, name) };
        });
        await sql.begin(async (tx) => {
          const made = await tx`insert into users ${tx(chunk, "name", "auth_hash", "salt", "kdf", "dh_public", "sign_public", "key_backup")}
                                on conflict (name) do nothing returning id`;
          // Each account's one device, as its first login would make it.
          const users = await tx`select id, name from users where id = any(${made.map((r) => r.id as number)})`;
          await tx`insert into devices (user_id, key, name)
                   select * from unnest(${users.map((r) => r.id as number)}::int[], ${users.map((r) => benchDevice(r.name).id)}::text[], ${users.map(() => "bench")}::text[])`;
        });
      }
      log(`made ${missing.length} bench accounts in ChatDB in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
    }
    // Tokens for every account whose saved one we cannot vouch for.
    const issued: Record<string, string> = {};
    const valid = await validTokens(sql, names, tokens);
    const fresh = names.filter((n) => !valid.has(n));
    for (const part of chunks(fresh, 1000)) {
      const chunk = part.map((name) => ({ name, token: randomBytes(32) }));
      for (const c of chunk) issued[c.name] = c.token.toString("base64url");
      await sql`
        insert into tokens (hash, user_id, device_id, expires_at)
        select t.hash, u.id, d.id, now() + ${TOKEN_DAYS} * interval '1 day'
        from unnest(${chunk.map((c) => c.name)}::text[], ${sql.array(chunk.map((c) => createHash("sha256").update(c.token).digest()) as never[], 17)}::bytea[]) as t(name, hash)
        join users u on u.name = t.name join devices d on d.user_id = u.id`;
    }
    return { ...tokens, ...issued };
  } finally {
    await sql.end({ timeout: 5 });
  }
}

/** The names whose saved token matches ChatDB and has a day left. */
async function validTokens(sql: postgres.Sql, names: string[], tokens: Record<string, string>): Promise<Set<string>> {
  const rows = await sql`
    select u.name, t.hash from users u join tokens t on t.user_id = u.id
    where u.name = any(${names}) and t.expires_at > now() + interval '1 day'`;
  const ok = new Set<string>();
  for (const r of rows) {
    const token = tokens[r.name];
    if (token && createHash("sha256").update(Buffer.from(token, "base64url")).digest().equals(Buffer.from(r.hash))) ok.add(r.name);
  }
  return ok;
}

/** A bench account's one device: its id derived from the name, so every run and worker agrees. */
export function benchDevice(name: string): { id: string; name: string } {
  return { id: createHash("sha256").update(name).digest("base64url").slice(0, 32), name: "bench" };
}
