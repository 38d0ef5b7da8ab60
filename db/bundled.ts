/**
 * The PostgreSQL binaries carried inside the compiled binary (see
 * scripts/build.ts): found among Bun.embeddedFiles by name, and unpacked once
 * into a folder named after their version, beside the data folder. Unpacked
 * under a temporary name and renamed, so a half-finished unpack is never used.
 */
import { mkdir, rename, rm } from "node:fs/promises";
import { existsSync, readFileSync } from "node:fs";
import { arch, platform } from "node:os";
import { join } from "node:path";
import type { PostgresBinaries } from "./paths";

const PREFIX = `pgsql-${platform()}-${arch()}-`;
const SUFFIX = ".tar.gz";

/** The archive's file name for the package whose `native` directory is given: it carries the version. */
export function bundledArchiveName(nativeDir: string): string {
  const version = JSON.parse(readFileSync(join(nativeDir, "..", "package.json"), "utf8")).version as string;
  return `${PREFIX}${version}${SUFFIX}`;
}

/** The embedded archive, when this is a compiled binary that carries one for this platform. */
function bundledArchive(): Blob | undefined {
  if (!Bun.isStandaloneExecutable) return undefined;
  return Bun.embeddedFiles.find((file) => {
    const name = (file as Blob & { name?: string }).name ?? "";
    return name.startsWith(PREFIX) && name.endsWith(SUFFIX);
  });
}

export function hasBundledPostgres(): boolean {
  return bundledArchive() !== undefined;
}

/** Unpacks the carried binaries into `parent` (once); undefined when this binary carries none. */
export async function unpackBundledPostgres(parent: string): Promise<PostgresBinaries | undefined> {
  const archive = bundledArchive();
  if (!archive) return undefined;
  const name = (archive as Blob & { name: string }).name.slice(0, -SUFFIX.length);
  const dir = join(parent, name);
  const binaries = { dir, initdb: join(dir, "bin", "initdb"), postgres: join(dir, "bin", "postgres") };
  if (existsSync(binaries.postgres) && existsSync(binaries.initdb)) return binaries;
  await mkdir(parent, { recursive: true });
  const temporary = `${dir}.tmp-${process.pid}`;
  await rm(temporary, { recursive: true, force: true });
  await mkdir(temporary, { mode: 0o755 });
  await new Bun.Archive(await archive.bytes()).extract(temporary);
  await rename(temporary, dir).catch(async (error) => {
    await rm(temporary, { recursive: true, force: true });
    // Another start unpacked it first: theirs is as good as ours.
    if (!existsSync(binaries.postgres)) throw error;
  });
  return binaries;
}
