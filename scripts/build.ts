/**
 * `npm run build`: dist/chatterbox, one file that runs every role, `up`
 * included, on a machine with no node_modules. The embedded PostgreSQL's
 * binaries travel inside it as a gzipped tarball (bun --compile embeds it as a
 * file), unpacked once beside the data folder on first use (db/bundled.ts).
 */
import { mkdir, rename } from "node:fs/promises";
import { join } from "node:path";
import { bundledArchiveName } from "../db/bundled";
import { findPostgresBinaries } from "../db/paths";

const ROOT = join(import.meta.dir, "..");
const outfile = process.argv[2] ?? join(ROOT, "dist", "chatterbox");

const found = findPostgresBinaries();
if (!found) throw new Error("The embedded PostgreSQL package is not installed: run npm ci first");
await mkdir(join(ROOT, "dist"), { recursive: true });
const archive = join(ROOT, "dist", bundledArchiveName(found.dir));
if (!(await Bun.file(archive).exists())) {
  // Static libraries are for linking against PostgreSQL, never for running it.
  const tar = Bun.spawnSync(["tar", "-C", found.dir, "--exclude=*.a", "-czf", `${archive}.tmp`, "."], { stderr: "inherit" });
  if (tar.exitCode !== 0) throw new Error("tar failed");
  await rename(`${archive}.tmp`, archive);
}
const build = Bun.spawnSync(
  // @opentui/core's loader also names its musl package, which is not installed here: left out of the bundle.
  [process.execPath, "build", "--compile", join(ROOT, "cli.ts"), archive, "--asset-naming=[name].[ext]", "--external", "@opentui/core-linux-x64-musl", "--outfile", outfile],
  { cwd: ROOT, stdout: "inherit", stderr: "inherit" },
);
process.exit(build.exitCode ?? 1);
