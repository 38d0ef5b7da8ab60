/**
 * A PostgreSQL of a test's own, which the test stops and starts: on a fixed
 * port, so that servers reconnect to the same URL, and stopped the way pg_ctl
 * does it: `-m fast` is SIGINT to the postmaster, `-m immediate` (a crash:
 * the next start runs crash recovery) is SIGQUIT.
 */
import { chmodSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startEmbeddedPostgres, type EmbeddedPostgres } from "../../db/embedded";

export interface RestartablePostgres {
  url: string;
  /** pg_ctl stop -m fast: clients are disconnected, what is committed is kept. */
  stopFast(): Promise<void>;
  /** pg_ctl stop -m immediate: the postmaster and its backends quit at once, as in a crash. */
  crash(): Promise<void>;
  start(): Promise<void>;
  remove(): Promise<void>;
}

export async function startRestartablePostgres(): Promise<RestartablePostgres> {
  const dir = mkdtempSync(join(tmpdir(), "chatterbox-faults-pg-"));
  // As root, PostgreSQL runs as the postgres user, who must be able to enter it.
  chmodSync(dir, 0o755);
  const dataDir = join(dir, "data");
  // Not `fast`: with synchronous_commit off, a crash loses commits already acknowledged.
  let pg: EmbeddedPostgres = await startEmbeddedPostgres({ dataDir });
  const port = pg.port;
  let running = true;
  const stopWith = async (signal: "SIGINT" | "SIGQUIT") => {
    if (!running) return;
    running = false;
    process.kill(pg.pid, signal);
    await pg.stop();
  };
  return {
    url: pg.url,
    stopFast: () => stopWith("SIGINT"),
    crash: () => stopWith("SIGQUIT"),
    async start() {
      if (running) return;
      pg = await startEmbeddedPostgres({ dataDir, port });
      running = true;
    },
    async remove() {
      await stopWith("SIGINT");
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
