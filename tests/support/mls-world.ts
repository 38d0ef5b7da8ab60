/**
 * What every MLS test file starts from: a cluster of real servers, a database
 * connection for what a test reads or edits behind the servers' backs (a forged
 * member, a counted epoch), the sessions opened, a client home that persists
 * devices, all closed and removed after the file.
 */
import { afterAll, beforeAll } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { openDatabase, type Database } from "../../db/connect";
import { startCluster, type Cluster, type TestUser } from "./cluster";

export interface MlsWorld {
  /** Sessions to close after the file. */
  open: TestUser[];
  /** A client home of this file's own (devices persist in it). */
  home: string;
}

/** Starts `servers` servers before the file's tests and hands them to `ready`; stops everything after. */
export function mlsWorld(name: string, servers: number, ready: (cluster: Cluster, db: Database) => void): MlsWorld {
  let cluster: Cluster | undefined;
  let db: Database | undefined;
  const world: MlsWorld = { open: [], home: mkdtempSync(join(tmpdir(), `chatterbox-${name}-`)) };
  beforeAll(async () => {
    cluster = await startCluster({ servers });
    db = openDatabase(cluster.url, { max: 2 });
    ready(cluster, db);
  }, 60_000);
  afterAll(async () => {
    for (const u of world.open) await u.session.close().catch(() => {});
    await db?.close();
    await cluster?.stop();
    rmSync(world.home, { recursive: true, force: true });
  });
  return world;
}
