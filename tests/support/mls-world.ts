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
import { connectPersistent, signup, startCluster, uniqueName, until, type Cluster, type TestUser } from "./cluster";

export interface MlsWorld {
  /** Sessions to close after the file. */
  open: TestUser[];
  /** A client home of this file's own (devices persist in it). */
  home: string;
  /** New accounts, one a prefix, each logged in on a device of its own in `home`, once each has published its key packages. */
  people(...prefixes: string[]): Promise<TestUser[]>;
  /** A group's chat bodies as ChatDB holds them, in order (a commit with its welcome, then the messages). */
  groupBodies(group: string): Promise<Uint8Array[]>;
}

/** Starts `servers` servers before the file's tests and hands them to `ready`; stops everything after. */
export function mlsWorld(name: string, servers: number, ready: (cluster: Cluster, db: Database) => void): MlsWorld {
  let cluster: Cluster | undefined;
  let db: Database | undefined;
  const world: MlsWorld = {
    open: [],
    home: mkdtempSync(join(tmpdir(), `chatterbox-${name}-`)),
    async people(...prefixes) {
      const out: TestUser[] = [];
      for (const p of prefixes) {
        const name = uniqueName(p);
        await signup(cluster!.balancerAddr, name);
        const u = await connectPersistent(cluster!.balancerAddr, world.home, name);
        world.open.push(u);
        out.push(u);
      }
      for (const u of out)
        await until(async () => {
          const [row] = await db!.sql`select count(*)::int as n from key_packages k join devices d on d.id = k.device_id join users u on u.id = d.user_id
                                     join device_lists l on l.user_id = u.id where u.name = ${u.name} and k.last_resort`;
          return row!.n > 0;
        }, `${u.name} to publish`);
      return out;
    },
    async groupBodies(group) {
      const rows = await db!.sql`select m.body from messages m join conversations c on c.id = m.conversation_id
                                where c.kind = 'group' and c.name = ${group} and m.kind = 'chat' order by m.seq`;
      return rows.map((r) => new Uint8Array(r.body));
    },
  };
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
