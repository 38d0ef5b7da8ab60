/**
 * Accounts and logins: argon2id hashes made off the event loop (Bun.password
 * runs on a worker thread), a per-account slowdown after repeated failures that
 * holds across servers because it lives in ChatDB, and resume tokens so that a
 * reconnect storm after a crash does not hash passwords again.
 */
import { createHash, timingSafeEqual } from "node:crypto";
import { ChatError } from "../protocol/errors";
import type { Conn, ServerContext } from "./context";

export const MIN_SECRET = 8;
const MAX_SECRET = 1024;

export function checkSecret(secret: unknown): string {
  if (typeof secret !== "string" || secret.length < MIN_SECRET) {
    throw new ChatError("E_WEAK_PASSWORD", `Passwords have at least ${MIN_SECRET} characters`);
  }
  if (secret.length > MAX_SECRET) throw new ChatError("E_BAD_REQUEST", `Passwords have at most ${MAX_SECRET} characters`);
  return secret;
}

export async function signup(ctx: ServerContext, name: string, secret: string): Promise<number> {
  const hash = await Bun.password.hash(secret, { algorithm: "argon2id" });
  return ctx.store.createUser(name, hash);
}

export interface LoginResult {
  user: { id: number; name: string };
  token: string;
}

export async function login(ctx: ServerContext, conn: Conn, name: string, secret: string): Promise<LoginResult> {
  const found = await ctx.store.findUser(name);
  if (!found) throw new ChatError("E_NO_SUCH_USER", `No user is called "${name}"`);
  if (found.lockedUntil !== null && found.lockedUntil > Date.now()) {
    const seconds = Math.ceil((found.lockedUntil - Date.now()) / 1000);
    throw new ChatError("E_RATE_LIMITED", `Too many failed logins for "${name}": try again in ${seconds} s`);
  }
  if (!(await Bun.password.verify(secret, found.authHash))) {
    await ctx.store.recordLoginFailure(found.id);
    throw new ChatError("E_AUTH", `Wrong password for "${name}"`);
  }
  if (found.failedLogins > 0) await ctx.store.clearLoginFailures(found.id);
  const token = crypto.getRandomValues(new Uint8Array(32));
  const user = { id: found.id, name: found.name };
  await ctx.sessions.start(conn, user, { hash: sha256(token), expires: new Date(Date.now() + ctx.config.tokenTtlMs) });
  return { user, token: Buffer.from(token).toString("base64url") };
}

export async function resume(ctx: ServerContext, conn: Conn, name: string, token: string): Promise<LoginResult> {
  const found = await ctx.store.findUser(name);
  const session = found ? await ctx.store.session(found.id) : undefined;
  const given = sha256(Buffer.from(token, "base64url"));
  if (
    !found ||
    !session?.tokenHash ||
    session.tokenHash.length !== given.length ||
    !timingSafeEqual(session.tokenHash, given) ||
    (session.tokenExpires ?? 0) < Date.now()
  ) {
    throw new ChatError("E_TOKEN", "The resume token is not valid or has expired; log in with the password");
  }
  const user = { id: found.id, name: found.name };
  await ctx.sessions.start(conn, user);
  return { user, token };
}

function sha256(bytes: Uint8Array): Uint8Array {
  return new Uint8Array(createHash("sha256").update(bytes).digest());
}
