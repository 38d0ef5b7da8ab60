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
          if (made.length > 0) await tx`insert into sessions (user_id) select * from unnest(${made.map((r) => r.id as number)}::int[])`;
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
        update sessions s set token_hash = t.hash, token_expires = now() + ${TOKEN_DAYS} * interval '1 day'
        from unnest(${chunk.map((c) => c.name)}::text[], ${sql.array(chunk.map((c) => createHash("sha256").update(c.token).digest()) as never[], 17)}::bytea[]) as t(name, hash)
        join users u on u.name = t.name where s.user_id = u.id`;
    }
    return { ...tokens, ...issued };
  } finally {
    await sql.end({ timeout: 5 });
  }
}

/** The names whose saved token matches ChatDB and has a day left. */
async function validTokens(sql: postgres.Sql, names: string[], tokens: Record<string, string>): Promise<Set<string>> {
  const rows = await sql`
    select u.name, s.token_hash from users u join sessions s on s.user_id = u.id
    where u.name = any(${names}) and s.token_expires > now() + interval '1 day'`;
  const ok = new Set<string>();
  for (const r of rows) {
    const token = tokens[r.name];
    if (token && r.token_hash && createHash("sha256").update(Buffer.from(token, "base64url")).digest().equals(Buffer.from(r.token_hash))) ok.add(r.name);
  }
  return ok;
}
