/**
 * A throwaway system for the one-off scripts (dm-quick, group-latency,
 * file-transfer): a durable embedded PostgreSQL in a scratch folder (or the
 * one at --database-url), a balancer in this process and chat servers as
 * separate processes, started as `chatterbox bench` starts its own.
 */
import { chmodSync, mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { openBenchDatabase, startSystem, type ServerInfo } from "./system";

export interface LocalSystem {
  url: string;
  /** Whether the database is ours (embedded), not one given by URL. */
  embedded: boolean;
  balancer: string;
  /** Each server's id, address and process id. */
  servers: ServerInfo[];
  stop(): Promise<void>;
}

/** A new folder in the system's temp directory that PostgreSQL can enter. */
export function scratchDir(prefix: string): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  // As root, PostgreSQL runs as the postgres user, who must be able to enter it.
  chmodSync(dir, 0o755);
  return dir;
}

/** The embedded PostgreSQL keeps its files under `dir`; the caller removes it after stop(). */
export async function startLocalSystem(options: { dir: string; databaseUrl?: string; servers?: number; log?(line: string): void }): Promise<LocalSystem> {
  const log = options.log ?? (() => {});
  const database = await openBenchDatabase({ databaseUrl: options.databaseUrl, dataDir: options.dir, log: () => {} });
  const system = await startSystem({ url: database.url, servers: options.servers ?? 2, strategy: "roundrobin", log });
  return {
    url: database.url,
    embedded: database.pid !== undefined,
    balancer: system.balancer,
    servers: await system.servers(),
    async stop() {
      await system.stop();
      await database.stop();
    },
  };
}
