/**
 * The drizzle-kit migrations, imported as text so that `bun build --compile`
 * embeds them in the binary. After `drizzle-kit generate`, add the new file here:
 * tests/migrations.test.ts fails until every journal entry is listed.
 */
import journal from "./migrations/meta/_journal.json";
import m0000 from "./migrations/0000_init.sql" with { type: "text" };
import m0001 from "./migrations/0001_identity_keys.sql" with { type: "text" };
import m0002 from "./migrations/0002_groups.sql" with { type: "text" };

export const migrationFiles: Record<string, string> = {
  "0000_init": m0000,
  "0001_identity_keys": m0001,
  "0002_groups": m0002,
};

export const migrationJournal: { entries: { tag: string; when: number; breakpoints: boolean }[] } = journal;
