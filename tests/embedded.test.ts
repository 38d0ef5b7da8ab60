import { afterAll, expect, test } from "bun:test";
import { chmod, mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import postgres from "postgres";
import { startEmbeddedPostgres } from "../db/embedded";
import { testDatabaseUrl } from "./support/pg";

const root = await mkdtemp(join(tmpdir(), "chatterbox-embedded-test-"));
// As root, PostgreSQL runs as the postgres user, who must be able to enter it.
await chmod(root, 0o755);
afterAll(() => rm(root, { recursive: true, force: true }));

async function query(url: string, text: string): Promise<unknown[]> {
  const sql = postgres(url, { max: 1, onnotice: () => {} });
  try {
    return [...(await sql.unsafe(text))];
  } finally {
    await sql.end();
  }
}

test("a table created before stop() is there after a restart on the same data directory", async () => {
  const dataDir = join(root, "durable");
  // Not fast mode: this is the configuration a real server runs with.
  const first = await startEmbeddedPostgres({ dataDir });
  expect(await query(first.url, "select 1 as one")).toEqual([{ one: 1 }]);
  await query(first.url, "create table kept (v text); insert into kept values ('hello')");
  await first.stop();
  await first.stop();

  const second = await startEmbeddedPostgres({ dataDir });
  try {
    expect(second.url).toContain("/chatterbox");
    expect(await query(second.url, "select v from kept")).toEqual([{ v: "hello" }]);
  } finally {
    await second.stop();
  }
});

test("a postmaster killed with SIGKILL leaves a postmaster.pid that does not block the next start", async () => {
  const dataDir = join(root, "crashed");
  const first = await startEmbeddedPostgres({ dataDir, fast: true });
  process.kill(first.pid, "SIGKILL");
  await first.stop();
  expect(await Bun.file(join(dataDir, "postmaster.pid")).exists()).toBe(true);

  const second = await startEmbeddedPostgres({ dataDir, fast: true });
  try {
    expect(await query(second.url, "select 1 as one")).toEqual([{ one: 1 }]);
  } finally {
    await second.stop();
  }
});

test("a non-empty directory that is not a PostgreSQL cluster is refused, not initialised", async () => {
  const dataDir = join(root, "unrelated");
  await mkdir(dataDir);
  await writeFile(join(dataDir, "notes.txt"), "mine");
  await expect(startEmbeddedPostgres({ dataDir })).rejects.toThrow("is not a PostgreSQL data directory");
});

test.if(process.getuid?.() === 0)("as root, a data directory the postgres user cannot reach is refused with a hint", async () => {
  const hidden = await mkdtemp(join(tmpdir(), "chatterbox-hidden-")); // mode 700, owned by root
  try {
    await expect(startEmbeddedPostgres({ dataDir: join(hidden, "data") })).rejects.toThrow("--data /var/lib/chatterbox/data");
  } finally {
    await rm(hidden, { recursive: true, force: true });
  }
});

test("testDatabaseUrl() hands each caller its own empty database", async () => {
  const [a, b] = await Promise.all([testDatabaseUrl(), testDatabaseUrl()]);
  expect(a).not.toBe(b);
  const tables = "select count(*)::int as n from pg_tables where schemaname = 'public'";
  expect(await query(a, tables)).toEqual([{ n: 0 }]);
  await query(a, "create table only_in_a (id int)");
  expect(await query(a, tables)).toEqual([{ n: 1 }]);
  expect(await query(b, tables)).toEqual([{ n: 0 }]);
});
