/**
 * Accounts and logins. The server never sees a password: the client derives a
 * login key from it (and a wrapping key the server never sees), and the server
 * keeps an argon2id hash of the login key, made off the event loop (Bun.password
 * runs on a worker thread). Failures slow the account down across servers, since
 * the count lives in ChatDB, and resume tokens spare a reconnect storm the hashing.
 */
import { createHash } from "node:crypto";
import { DEFAULT_KDF, unknownUserSalt, type KdfParams } from "../crypto/kdf";
import { ChatError } from "../protocol/errors";
import type { Conn, ServerConfig } from "./context";
import type { Delivery } from "./delivery";
import type { DeviceSession, DeviceStore } from "./device-store";
import type { Limits } from "./limits";
import type { Identity, Store } from "./store";

export const AUTH_KEY_BYTES = 32;

/** What accounts and logins use of the server, and no more. */
export interface AuthDeps {
  /** This server's id, recorded with each connection that logs in here. */
  id: string;
  /** Makes the stable salts handed out for names that have no account. */
  saltSecret: Uint8Array;
  config: Pick<ServerConfig, "tokenTtlMs">;
  store: Pick<Store, "createUser" | "findUser" | "clearLoginFailures" | "changePassword" | "sql">;
  devices: Pick<DeviceStore, "login" | "resume">;
  limits: Pick<Limits, "hash">;
  /** Makes a connection whose login ChatDB recorded live here (or undoes the record if it closed meanwhile). */
  live(conn: Conn, session: DeviceSession): Promise<void>;
  /** Events to all of a user's connections, on any server. */
  delivery: Pick<Delivery, "send">;
}

/**
 * Every argon2id hash goes through here: within the caller's address allowance
 * and the server-wide bound on hashes at once (server/limits.ts), so a flood of
 * signups queues behind itself instead of taking every core from logins.
 */
function hashed<T>(ctx: AuthDeps, conn: Conn, work: () => Promise<T>): Promise<T> {
  return ctx.limits.hash(conn.remote, work);
}

export async function signup(ctx: AuthDeps, conn: Conn, name: string, auth: Uint8Array, identity: Identity): Promise<number> {
  const hash = await hashed(ctx, conn, () => Bun.password.hash(auth, { algorithm: "argon2id" }));
  return ctx.store.createUser(name, hash, identity);
}

/**
 * How the named user derives keys. An unknown name gets a salt that is stable
 * and looks like any other, so that asking does not tell which accounts exist.
 */
export async function prelogin(ctx: AuthDeps, name: string): Promise<{ salt: Uint8Array; kdf: KdfParams }> {
  const user = await ctx.store.findUser(name);
  if (user) return { salt: user.salt, kdf: JSON.parse(user.kdf) };
  return { salt: unknownUserSalt(ctx.saltSecret, name), kdf: DEFAULT_KDF };
}

export interface LoginResult {
  user: { id: number; name: string };
  device: string;
  token: string;
  /** The wrapped identity keys, for a client that does not hold them yet. */
  backup?: Uint8Array;
}

/**
 * Checks the login key and the account's slowdown; throws E_AUTH, E_NO_SUCH_USER or E_RATE_LIMITED.
 * The attempt is counted before the hash, by an UPDATE that succeeds only while
 * the account is not locked: N attempts in parallel when a lock ends take one
 * guess between them, not N. A right key then clears the count.
 */
export async function verify(ctx: AuthDeps, conn: Conn, name: string, auth: Uint8Array) {
  const found = await ctx.store.findUser(name);
  if (!found) throw new ChatError("E_NO_SUCH_USER", `No user is called "${name}"`);
  const [reserved] = await ctx.store.sql`
    update users set failed_logins = failed_logins + 1,
      locked_until = case when failed_logins + 1 >= 5
        then now() + least(power(2, failed_logins + 1 - 5), 300) * interval '1 second' else locked_until end
    where id = ${found.id} and (locked_until is null or locked_until <= now())
    returning id`;
  if (!reserved) {
    const [row] = await ctx.store.sql`select (extract(epoch from locked_until - now()) * 1000)::float8 as ms from users where id = ${found.id}`;
    const ms = Math.max(1000, row?.ms ?? 1000);
    throw new ChatError("E_RATE_LIMITED", `Too many failed logins for "${name}": try again in ${Math.ceil(ms / 1000)} s`, ms);
  }
  if (!(await hashed(ctx, conn, () => Bun.password.verify(auth, found.authHash)))) throw new ChatError("E_AUTH", `Wrong password for "${name}"`);
  await ctx.store.clearLoginFailures(found.id);
  return found;
}

/** A password login from a device (made at its first login): the connection is recorded with a new token. */
export async function login(ctx: AuthDeps, conn: Conn, name: string, auth: Uint8Array, device: { key: string; name: string }): Promise<LoginResult> {
  const found = await verify(ctx, conn, name, auth);
  const token = crypto.getRandomValues(new Uint8Array(32));
  const session = await ctx.devices.login(found.id, device, { serverId: ctx.id, connId: conn.id }, { hash: sha256(token), expires: new Date(Date.now() + ctx.config.tokenTtlMs) });
  await ctx.live(conn, session);
  // A password login may be a device the user's others have not seen (a new one, or a revoked one back): they look
  // at the list again and say so (client/own-devices.ts). Resumes are devices that logged in before.
  void ctx.delivery.send([found.id], { t: "ev", ev: "devices" }).catch(() => {});
  return { user: { id: found.id, name: found.name }, device: session.deviceKey, token: Buffer.from(token).toString("base64url"), backup: found.backup };
}

/** A resume with the token a device got at its login: no password, the same device. */
export async function resume(ctx: AuthDeps, conn: Conn, name: string, token: string): Promise<LoginResult> {
  const session = await ctx.devices.resume(name, sha256(Buffer.from(token, "base64url")), { serverId: ctx.id, connId: conn.id });
  await ctx.live(conn, session);
  return { user: { id: session.userId, name: session.userName }, device: session.deviceKey, token };
}

/** A password change: the old login key proves it, then key hash, salt and backup change together. */
export async function changePassword(
  ctx: AuthDeps,
  conn: Conn,
  name: string,
  oldAuth: Uint8Array,
  auth: Uint8Array,
  next: { salt: Uint8Array; kdf: string; backup: Uint8Array },
): Promise<void> {
  const found = await verify(ctx, conn, name, oldAuth);
  const hash = await hashed(ctx, conn, () => Bun.password.hash(auth, { algorithm: "argon2id" }));
  await ctx.store.changePassword(found.id, hash, next);
}

function sha256(bytes: Uint8Array): Uint8Array {
  return new Uint8Array(createHash("sha256").update(bytes).digest());
}
