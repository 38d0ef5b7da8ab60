/**
 * The database a maintenance command (`db backup`, `db restore`) works on: the
 * URL given; or the embedded PostgreSQL of a data folder, the one `up` is
 * running there, or else started for the command alone and stopped after it.
 */
import { existsSync } from "node:fs";
import { join } from "node:path";
import { backupDatabase, restoreDatabase, type BackupSummary } from "../db/backup";
import { defaultDataDir, runningEmbeddedUrl, startEmbeddedPostgres } from "../db/embedded";
import { explainDatabaseError, redactUrl } from "../db/explain";

export interface Target {
  databaseUrl?: string;
  dataDir?: string;
}

async function withDatabase<T>(target: Target, create: boolean, use: (url: string) => Promise<T>): Promise<T> {
  const explained = (url: string) => use(url).catch((error) => Promise.reject(explainDatabaseError(error, url)));
  if (target.databaseUrl) return explained(target.databaseUrl);
  const dataDir = target.dataDir ?? defaultDataDir();
  const running = await runningEmbeddedUrl(dataDir);
  if (running) return explained(running);
  if (!create && !existsSync(join(dataDir, "PG_VERSION"))) throw new Error(`No ChatterBox database in ${dataDir}: give --data DIR or --database-url URL`);
  const postgres = await startEmbeddedPostgres({ dataDir });
  try {
    return await explained(postgres.url);
  } finally {
    await postgres.stop();
  }
}

export async function backup(target: Target, file: string): Promise<BackupSummary & { from: string }> {
  return withDatabase(target, false, async (url) => ({ ...(await backupDatabase(url, file)), from: redactUrl(url) }));
}

export async function restore(target: Target, file: string): Promise<BackupSummary & { into: string }> {
  if (!existsSync(file)) throw new Error(`No such file: ${file}`);
  return withDatabase(target, true, async (url) => ({ ...(await restoreDatabase(url, file)), into: redactUrl(url) }));
}
