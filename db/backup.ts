/**
 * `chatterbox db backup FILE` and `db restore FILE`: every row of ChatDB, read
 * in one repeatable-read snapshot with PostgreSQL's COPY and gzipped into one
 * file; restored in one transaction into an empty database that start-up's
 * migrations have just made. COPY through postgres.js rather than pg_dump:
 * the embedded PostgreSQL package ships no pg_dump, and a machine's pg_dump
 * (Debian's 15) refuses a newer server (18). The tables are read from the
 * catalog, so a schema change needs no change here.
 *
 * The file: a first line naming the format, a JSON line (tables, columns,
 * migrations), then for each table a `TABLE name` line, its rows in COPY's
 * text format (one row a line, newlines escaped), and a `\.` line.
 */
import { createReadStream, createWriteStream } from "node:fs";
import { rename, rm } from "node:fs/promises";
import { createInterface } from "node:readline";
import { once } from "node:events";
import { finished } from "node:stream/promises";
import { createGunzip, createGzip } from "node:zlib";
import postgres from "postgres";
import { migrationJournal } from "./migrations";
import { migrate, openDatabase } from "./connect";

const MAGIC = "CHATTERBOX BACKUP 1";
/** Live state that a restored cluster makes afresh: the servers running now. */
const SKIPPED = new Set(["servers"]);

interface Header {
  created: string;
  migrations: number;
  tables: { name: string; columns: string[]; rows?: number }[];
}

export interface BackupSummary {
  tables: number;
  rows: number;
}

export async function backupDatabase(url: string, file: string): Promise<BackupSummary> {
  const sql = postgres(url, { max: 1, onnotice: () => {} });
  const temporary = `${file}.tmp-${process.pid}`;
  try {
    let rows = 0;
    const tables = await tablesInOrder(sql);
    const gzip = createGzip();
    const out = gzip.pipe(createWriteStream(temporary, { mode: 0o600 }));
    const write = async (chunk: string | Buffer) => {
      if (!gzip.write(chunk)) await once(gzip, "drain");
    };
    await sql.begin("isolation level repeatable read read only", async (tx) => {
      const header: Header = { created: new Date().toISOString(), migrations: await appliedMigrations(tx), tables: [] };
      for (const name of tables) {
        const [count] = await tx`select count(*)::int as n from ${tx(name)}`;
        header.tables.push({ name, columns: await columnsOf(tx, name), rows: count!.n });
        rows += count!.n;
      }
      await write(`${MAGIC}\n${JSON.stringify(header)}\n`);
      for (const { name, columns } of header.tables) {
        await write(`TABLE ${name}\n`);
        const copy = await tx`copy ${tx(name)} (${tx(columns)}) to stdout`.readable();
        for await (const chunk of copy) await write(chunk as Buffer);
        await write("\\.\n");
      }
    });
    gzip.end();
    await finished(out);
    await rename(temporary, file);
    return { tables: tables.length, rows };
  } catch (error) {
    await rm(temporary, { force: true });
    throw error;
  } finally {
    await sql.end({ timeout: 5 });
  }
}

export async function restoreDatabase(url: string, file: string): Promise<BackupSummary> {
  const lines = createInterface({ input: createReadStream(file).pipe(createGunzip()), crlfDelay: Infinity })[Symbol.asyncIterator]();
  const next = async () => {
    const { value, done } = await lines.next();
    return done ? undefined : (value as string);
  };
  if ((await next()) !== MAGIC) throw new Error(`${file} is not a ChatterBox backup`);
  const header = JSON.parse((await next()) ?? "{}") as Header;
  const ours = migrationJournal.entries.length;
  if (header.migrations > ours) throw new Error(`${file} was made by a newer ChatterBox (schema ${header.migrations}, this one knows ${ours}): restore it with that version`);

  const database = openDatabase(url, { max: 1 });
  await migrate(database);
  await database.close();
  const sql = postgres(url, { max: 1, onnotice: () => {} });
  try {
    let rows = 0;
    await sql.begin(async (tx) => {
      for (const { name } of header.tables) {
        const [row] = await tx`select exists (select 1 from ${tx(name)}) as taken`;
        if (row!.taken) throw new Error(`The database already has rows in ${name}: restore into a new, empty database (or a new --data folder)`);
      }
      for (const { name, columns } of header.tables) {
        if ((await next()) !== `TABLE ${name}`) throw new Error(`${file} is damaged: expected table ${name}`);
        const copy = await tx`copy ${tx(name)} (${tx(columns)}) from stdin`.writable();
        for (let line = await next(); line !== "\\."; line = await next()) {
          if (line === undefined) throw new Error(`${file} is cut short in table ${name}`);
          rows++;
          if (!copy.write(`${line}\n`)) await once(copy, "drain");
        }
        copy.end();
        await finished(copy);
      }
      // Ids keep counting from where the backup stopped.
      const serials = await tx`
        select table_name as t, column_name as c from information_schema.columns
        where table_schema = 'public' and (column_default like 'nextval(%' or is_identity = 'YES')`;
      for (const { t, c } of serials) {
        if (!header.tables.some((table) => table.name === t)) continue;
        await tx`select setval(pg_get_serial_sequence(${`public.${t}`}, ${c}), coalesce((select max(${tx(c)}) from ${tx(t)}), 0) + 1, false)`;
      }
    });
    return { tables: header.tables.length, rows };
  } finally {
    await sql.end({ timeout: 5 });
  }
}

/** The public tables, parents before children, so that a restore meets every foreign key. */
async function tablesInOrder(sql: postgres.Sql): Promise<string[]> {
  const tables = (await sql`select tablename from pg_tables where schemaname = 'public' order by tablename`).map((r) => r.tablename as string).filter((t) => !SKIPPED.has(t));
  const edges = await sql`
    select conrelid::regclass::text as child, confrelid::regclass::text as parent
    from pg_constraint where contype = 'f' and connamespace = 'public'::regnamespace`;
  const parents = new Map(tables.map((t) => [t, new Set<string>()]));
  for (const { child, parent } of edges) if (child !== parent) parents.get(child)?.add(parent);
  const ordered: string[] = [];
  const visit = (table: string, path: Set<string>) => {
    if (ordered.includes(table) || path.has(table)) return;
    path.add(table);
    for (const parent of parents.get(table) ?? []) visit(parent, path);
    ordered.push(table);
  };
  for (const table of tables) visit(table, new Set());
  return ordered;
}

type Query = postgres.Sql | postgres.TransactionSql;

async function columnsOf(sql: Query, table: string): Promise<string[]> {
  const rows = await sql`
    select attname from pg_attribute
    where attrelid = ${`public.${table}`}::regclass and attnum > 0 and not attisdropped and attgenerated = ''
    order by attnum`;
  return rows.map((r) => r.attname as string);
}

async function appliedMigrations(sql: Query): Promise<number> {
  // Looked up first: a failed query would end the snapshot's transaction.
  const [journal] = await sql`select to_regclass('drizzle.__drizzle_migrations') is not null as present`;
  if (!journal!.present) return 0;
  const [row] = await sql`select count(*)::int as n from drizzle.__drizzle_migrations`;
  return row!.n;
}
