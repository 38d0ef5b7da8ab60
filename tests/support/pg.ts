/**
 * A fresh, empty database for each test file, on a real PostgreSQL: the server
 * at DATABASE_URL when set (CI), otherwise one embedded PostgreSQL per
 * `bun test` process, started on first use with durability off.
 */
import { randomBytes } from "node:crypto";
import { chmod, mkdtemp, readdir, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import postgres from "postgres";
import { startEmbeddedPostgres, type EmbeddedPostgres } from "../../db/embedded";

interface Server {
  url: string;
  embedded?: { pg: EmbeddedPostgres; dir: string };
}

/** The process id follows the prefix, so a later run can tell abandoned directories. */
const TMP_PREFIX = "chatterbox-test-pg-";
let server: Promise<Server> | undefined;
const created: string[] = [];

/** A superuser URL for the test server, starting the embedded one if needed. */
export async function adminUrl(): Promise<string> {
  return (await (server ??= startServer())).url;
}

export async function testDatabaseUrl(): Promise<string> {
  try {
    return await createDatabase(await adminUrl());
  } catch (error) {
    if (!(await replaceEmbedded(error))) throw error;
    return await createDatabase(await adminUrl());
  }
}

async function createDatabase(admin: string): Promise<string> {
  const name = `cb_test_${randomBytes(6).toString("hex")}`;
  const sql = postgres(admin, { max: 1, onnotice: () => {} });
  try {
    await sql.unsafe(`create database ${name}`);
  } finally {
    await sql.end();
  }
  created.push(name);
  const url = new URL(admin);
  url.pathname = `/${name}`;
  return url.href;
}

/**
 * When a test times out, bun test SIGTERMs every process its file spawned:
 * our embedded server too, if that file happened to start it. Later files
 * then get a new one rather than "the database system is shutting down".
 */
async function replaceEmbedded(error: unknown): Promise<boolean> {
  const code = (error as { code?: string }).code;
  const current = server && (await server);
  if (!current?.embedded || (code !== "57P03" && code !== "ECONNREFUSED")) return false;
  server = undefined;
  await current.embedded.pg.stop();
  await rm(current.embedded.dir, { recursive: true, force: true });
  return true;
}

/**
 * Once every test file has run (tests/support/preload.ts): stops the embedded
 * server and deletes its files, or drops this run's databases from DATABASE_URL's.
 */
export async function releaseTestServer(): Promise<void> {
  if (!server) return;
  const { url, embedded } = await server;
  server = undefined;
  if (embedded) {
    await embedded.pg.stop();
    await rm(embedded.dir, { recursive: true, force: true });
    return;
  }
  const sql = postgres(url, { max: 1, onnotice: () => {} });
  try {
    // with (force): a test file that forgot to close its pool must not keep its database alive.
    for (const name of created.splice(0)) await sql.unsafe(`drop database if exists ${name} with (force)`);
  } finally {
    await sql.end();
  }
}

async function startServer(): Promise<Server> {
  if (process.env.DATABASE_URL) return { url: process.env.DATABASE_URL };
  await removeAbandoned();
  const dir = await mkdtemp(join(tmpdir(), `${TMP_PREFIX}${process.pid}-`));
  // As root, PostgreSQL runs as the postgres user, who must be able to enter it.
  await chmod(dir, 0o755);
  const pg = await startEmbeddedPostgres({ dataDir: join(dir, "data"), fast: true });
  return { url: pg.url, embedded: { pg, dir } };
}

/**
 * Runs interrupted by Ctrl-C never reach releaseTestServer(); their PostgreSQL
 * stopped with them (see watch() in db/embedded.ts), but ~40 MB stays in /tmp.
 */
async function removeAbandoned(): Promise<void> {
  for (const entry of await readdir(tmpdir())) {
    if (!entry.startsWith(TMP_PREFIX)) continue;
    const pid = Number(entry.slice(TMP_PREFIX.length).split("-")[0]);
    if (Number.isInteger(pid) && !isAlive(pid)) await rm(join(tmpdir(), entry), { recursive: true, force: true });
  }
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === "EPERM";
  }
}
