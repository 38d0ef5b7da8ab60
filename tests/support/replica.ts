/**
 * A real PostgreSQL streaming replica on loopback, for tests: a primary of our
 * own (the embedded binaries), a base backup taken with the low-level API
 * (pg_backup_start / a copy of the data folder / pg_backup_stop: the embedded
 * package has no pg_basebackup), and a standby started on the copy that
 * streams from the primary. `delay` injects replica lag.
 */
import { spawn, spawnSync } from "node:child_process";
import { chmod, cp, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import postgres from "postgres";
import { binariesFor, findPostgresBinaries, postgresUser } from "../../db/paths";
import { startEmbeddedPostgres, type EmbeddedPostgres } from "../../db/embedded";

export interface Replicated {
  primary: EmbeddedPostgres;
  /** URL of the standby, same user and password as the primary. */
  replicaUrl: string;
  /** Sets the standby's recovery_min_apply_delay (0 for none). */
  delay(ms: number): Promise<void>;
  /** Waits until the standby has replayed everything the primary has written. */
  caughtUp(): Promise<void>;
  stop(): Promise<void>;
}

export async function startReplicated(dir: string): Promise<Replicated> {
  const primary = await startEmbeddedPostgres({ dataDir: join(dir, "primary"), fast: true });
  const replicaDir = join(dir, "replica");
  const sql = postgres(primary.url.replace(/\/chatterbox$/, "/postgres"), { max: 1, onnotice: () => {} });
  try {
    await sql`select pg_backup_start('chatterbox-test', true)`;
    await cp(join(dir, "primary"), replicaDir, { recursive: true, verbatimSymlinks: true });
    const [stopped] = await sql`select labelfile, spcmapfile from pg_backup_stop(true)`;
    await rm(join(replicaDir, "postmaster.pid"), { force: true });
    await rm(join(replicaDir, "pg_wal"), { recursive: true, force: true });
    await cp(join(dir, "primary", "pg_wal"), join(replicaDir, "pg_wal"), { recursive: true });
    await writeFile(join(replicaDir, "backup_label"), stopped!.labelfile);
    if (stopped!.spcmapfile) await writeFile(join(replicaDir, "tablespace_map"), stopped!.spcmapfile);
  } finally {
    await sql.end();
  }
  const password = new URL(primary.url).password;
  await writeFile(join(replicaDir, "standby.signal"), "");
  await writeFile(
    join(replicaDir, "postgresql.auto.conf"),
    `primary_conninfo = 'host=127.0.0.1 port=${primary.port} user=chatterbox password=${password} application_name=replica'\n`,
    { flag: "a" },
  );
  // As root, PostgreSQL runs as the postgres user, as the primary does (db/paths.ts).
  const user = postgresUser();
  const bins = await binariesFor(user, findPostgresBinaries()!);
  await chmod(replicaDir, 0o700);
  if (user) spawnSync("chown", ["-R", `${user.uid}:${user.gid}`, replicaDir]);
  const port = 20_000 + Math.floor(Math.random() * 30_000);
  const child = spawn(bins.postgres, ["-D", replicaDir, "-p", String(port), "-c", "listen_addresses=127.0.0.1", "-c", "unix_socket_directories=", "-c", "hot_standby=on", "-c", "max_connections=200"], {
    stdio: ["ignore", "pipe", "pipe"],
    uid: user?.uid,
    gid: user?.gid,
    cwd: "/",
    env: { ...process.env, LC_ALL: "C" },
  });
  let output = "";
  if (process.env.REPLICA_LOG) child.stderr!.on("data", (c) => process.stderr.write(c));
  child.stderr!.on("data", (chunk) => (output += chunk));
  child.stdout!.on("data", (chunk) => (output += chunk));
  const exited = new Promise<void>((resolve) => child.on("close", () => resolve()));
  const replicaUrl = `postgres://chatterbox:${password}@127.0.0.1:${port}/chatterbox`;
  const replica = postgres(replicaUrl, { max: 1, onnotice: () => {} });
  const admin = postgres(primary.url, { max: 1, onnotice: () => {} });
  const deadline = Date.now() + 30_000;
  for (;;) {
    try {
      await replica`select 1`;
      break;
    } catch (error) {
      if (Date.now() > deadline || child.exitCode !== null) throw new Error(`the replica did not start: ${output}`);
      await Bun.sleep(100);
    }
  }
  return {
    primary,
    replicaUrl,
    async delay(ms) {
      // A standby cannot run ALTER SYSTEM: write the setting and reload.
      await writeFile(join(replicaDir, "postgresql.auto.conf"), `recovery_min_apply_delay = '${ms}ms'\n`, { flag: "a" });
      process.kill(child.pid!, "SIGHUP");
      await Bun.sleep(200);
    },
    async caughtUp() {
      const [{ lsn }] = (await admin`select pg_current_wal_insert_lsn()::text as lsn`) as unknown as [{ lsn: string }];
      const deadline = Date.now() + 30_000;
      while (!(await replica`select pg_last_wal_replay_lsn() >= ${lsn}::pg_lsn as ok`)[0]!.ok) {
        if (Date.now() > deadline) throw new Error("the replica did not catch up");
        await Bun.sleep(20);
      }
    },
    async stop() {
      await replica.end();
      await admin.end();
      child.kill("SIGINT");
      await exited;
      await primary.stop();
    },
  };
}
