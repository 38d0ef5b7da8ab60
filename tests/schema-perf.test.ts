/**
 * Migration 0008: the tables updated on the hot path (a conversation's
 * last_seq, device cursors, read markers) leave room on each page, so that
 * those updates stay HOT; and every migration in the journal is embedded.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { migrate, openDatabase, type Database } from "../db/connect";
import { migrationFiles, migrationJournal } from "../db/migrations";
import { testDatabaseUrl } from "./support/pg";

let database: Database;

beforeAll(async () => {
  database = openDatabase(await testDatabaseUrl(), { max: 1 });
  await migrate(database);
}, 60_000);
afterAll(async () => {
  await database.close();
});

test("conversations, device_cursors and members are made with fillfactor 80", async () => {
  const rows = await database.sql`select relname, reloptions from pg_class where relname = any(${["conversations", "device_cursors", "members"]}) order by relname`;
  expect(rows.map((r) => [r.relname, r.reloptions])).toEqual([
    ["conversations", ["fillfactor=80"]],
    ["device_cursors", ["fillfactor=80"]],
    ["members", ["fillfactor=80"]],
  ]);
});

test("every journal entry, 0008_perf among them, is embedded in the binary", () => {
  const tags = migrationJournal.entries.map((e) => e.tag);
  expect(tags).toContain("0008_perf");
  expect(tags.filter((t) => migrationFiles[t] === undefined)).toEqual([]);
});
