/**
 * `chatterbox bench --pg-statements`: PostgreSQL's own account of where its
 * time went (pg_stat_statements), for our own embedded database: which
 * statements ran, how often, and how long each took, per delivered message.
 */
import postgres from "postgres";

/** The embedded PostgreSQL's settings for it: the module loads at start-up only. */
export const STATEMENT_SETTINGS = ["shared_preload_libraries=pg_stat_statements", "pg_stat_statements.track_utility=off"];

export async function resetStatements(url: string): Promise<void> {
  const sql = postgres(url, { max: 1, onnotice: () => {} });
  try {
    await sql`create extension if not exists pg_stat_statements`;
    await sql`select pg_stat_statements_reset()`;
  } finally {
    await sql.end();
  }
}

/** The statements that took the most time since the reset, as text lines. */
export async function topStatements(url: string, delivered: number, limit = 10): Promise<string> {
  const sql = postgres(url, { max: 1, onnotice: () => {} });
  try {
    const rows = await sql`
      select calls::float8 as calls, total_exec_time::float8 as ms, rows::float8 as rows,
             left(regexp_replace(query, '[[:space:]]+', ' ', 'g'), 90) as q
      from pg_stat_statements where query not like '%pg_stat_statements%' order by total_exec_time desc limit ${limit}`;
    const per = (x: number) => (delivered > 0 ? ((x * 1000) / delivered).toFixed(2) : "-");
    const lines = rows.map((r) => `  ${per(r.ms).padStart(8)} µs/delivered ${String(r.calls).padStart(9)} calls ${((r.ms * 1000) / Math.max(1, r.calls)).toFixed(0).padStart(7)} µs/call ${(r.rows / Math.max(1, r.calls)).toFixed(0).padStart(6)} rows/call  ${r.q}`);
    return [`PostgreSQL statements by execution time (pg_stat_statements; ${delivered.toLocaleString("en-US")} deliveries):`, ...lines].join("\n");
  } finally {
    await sql.end();
  }
}
