/**
 * What an operator can read, as haystacks: every value of every table, and a
 * search for a needle in every encoding a leak could take (raw, UTF-16, hex,
 * base64 at each alignment).
 */
import type postgres from "postgres";

export interface Haystack {
  where: string;
  bytes: Buffer;
}

/** The needle as raw bytes (and UTF-16LE, for text), as hex and as base64 (at each of the three alignments it can have inside a longer text). */
export function encodings(needle: string | Uint8Array): { name: string; bytes: Buffer }[] {
  const raw = Buffer.from(typeof needle === "string" ? new TextEncoder().encode(needle) : needle);
  const forms = [{ name: "raw", bytes: raw }];
  if (typeof needle === "string") forms.push({ name: "utf-16le", bytes: Buffer.from(needle, "utf16le") });
  forms.push({ name: "hex", bytes: Buffer.from(raw.toString("hex")) }, { name: "HEX", bytes: Buffer.from(raw.toString("hex").toUpperCase()) });
  for (let shift = 0; shift < 3; shift++) {
    const b64 = Buffer.concat([Buffer.alloc(shift), raw]).toString("base64");
    // Only the groups made of needle bytes alone are the same whatever surrounds it.
    const middle = b64.slice(shift === 0 ? 0 : 4, Math.floor((shift + raw.length) / 3) * 4);
    forms.push({ name: `base64+${shift}`, bytes: Buffer.from(middle) });
    forms.push({ name: `base64url+${shift}`, bytes: Buffer.from(middle.replaceAll("+", "-").replaceAll("/", "_")) });
  }
  return forms;
}

/** Where the needle occurs, in any of its encodings: "table.column as hex", say. */
export function findIn(haystacks: Haystack[], needle: string | Uint8Array): string[] {
  const found: string[] = [];
  for (const form of encodings(needle)) {
    for (const h of haystacks) if (h.bytes.indexOf(form.bytes) >= 0) found.push(`${h.where} as ${form.name}`);
  }
  return found;
}

/** Every value of every row of every table but those skipped, as bytes; and each row as PostgreSQL prints it. */
export async function dumpDatabase(sql: postgres.Sql, skip: string[] = []): Promise<Haystack[]> {
  const tables = await sql`
    select table_schema, table_name from information_schema.tables
    where table_schema in ('public', 'drizzle') and table_type = 'BASE TABLE'`;
  const out: Haystack[] = [];
  for (const { table_schema: schema, table_name: name } of tables) {
    if (skip.includes(name)) continue;
    const qualified = `"${schema}"."${name}"`;
    for (const row of await sql.unsafe(`select * from ${qualified}`)) {
      for (const [column, value] of Object.entries(row)) out.push({ where: `${schema}.${name}.${column}`, bytes: toBytes(value) });
    }
    for (const row of await sql.unsafe(`select t::text as text from ${qualified} t`)) {
      out.push({ where: `${schema}.${name} (row text)`, bytes: Buffer.from(row.text as string) });
    }
  }
  return out;
}

function toBytes(value: unknown): Buffer {
  if (value === null || value === undefined) return Buffer.alloc(0);
  if (value instanceof Uint8Array) return Buffer.from(value);
  if (typeof value === "string") return Buffer.from(value);
  if (value instanceof Date) return Buffer.from(value.toISOString());
  if (typeof value === "object") return Buffer.from(JSON.stringify(value));
  return Buffer.from(String(value));
}
