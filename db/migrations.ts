/**
 * The drizzle-kit migrations, imported as text so that `bun build --compile`
 * embeds them in the binary. After `drizzle-kit generate`, add the new file here:
 * tests/migrations.test.ts fails until every journal entry is listed.
 */
import journal from "./migrations/meta/_journal.json";
import m0000 from "./migrations/0000_init.sql" with { type: "text" };
import m0001 from "./migrations/0001_identity_keys.sql" with { type: "text" };
import m0002 from "./migrations/0002_groups.sql" with { type: "text" };
import m0003 from "./migrations/0003_files.sql" with { type: "text" };
import m0004 from "./migrations/0004_chunk_storage.sql" with { type: "text" };
import m0005 from "./migrations/0005_messages_without_fk_checks.sql" with { type: "text" };
import m0006 from "./migrations/0006_devices.sql" with { type: "text" };
import m0007 from "./migrations/0007_key_packages.sql" with { type: "text" };
import m0008 from "./migrations/0008_perf.sql" with { type: "text" };
import m0009 from "./migrations/0009_mls.sql" with { type: "text" };
import m0010 from "./migrations/0010_mls_group_id.sql" with { type: "text" };
import m0011 from "./migrations/0011_members_without_fk_checks.sql" with { type: "text" };

export const migrationFiles: Record<string, string> = {
  "0000_init": m0000,
  "0001_identity_keys": m0001,
  "0002_groups": m0002,
  "0003_files": m0003,
  "0004_chunk_storage": m0004,
  "0005_messages_without_fk_checks": m0005,
  "0006_devices": m0006,
  "0007_key_packages": m0007,
  "0008_perf": m0008,
  "0009_mls": m0009,
  "0010_mls_group_id": m0010,
  "0011_members_without_fk_checks": m0011,
};

export const migrationJournal: { entries: { tag: string; when: number; breakpoints: boolean }[] } = journal;
