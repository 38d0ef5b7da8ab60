/**
 * Database failures said for an operator: that it is the database, which one
 * (the URL without its password), and what to check. postgres.js reports a
 * refused connection as a bare "connect ECONNREFUSED 127.0.0.1:5999".
 */

/** The URL as it is safe to print: the password replaced. */
export function redactUrl(url: string): string {
  try {
    const parsed = new URL(url);
    if (parsed.password) parsed.password = "***";
    return parsed.toString();
  } catch {
    return "(a database URL that does not parse)";
  }
}

const NETWORK: Record<string, string> = {
  ECONNREFUSED: "connection refused: is PostgreSQL running there, on that port?",
  ENOTFOUND: "no such host",
  EAI_AGAIN: "the host name did not resolve",
  ETIMEDOUT: "no answer in time",
  CONNECT_TIMEOUT: "no answer in time",
  ECONNRESET: "the connection was reset",
  EHOSTUNREACH: "the host is unreachable",
};

const SERVER: Record<string, string> = {
  "28P01": "wrong user name or password",
  "28000": "this user may not connect from here (pg_hba.conf)",
  "3D000": "no such database: create it first",
  "57P03": "PostgreSQL is starting up or shutting down; try again",
  "53300": "too many connections: raise max_connections or run fewer servers",
};

/** An Error that says it is the database; the error itself when it is not a connection failure. */
export function explainDatabaseError(error: unknown, url: string): unknown {
  // drizzle wraps the driver's error ("Failed query: ...") and keeps it as the cause.
  const cause = (error as { cause?: { code?: string; message?: string } })?.cause;
  const code = (error as { code?: string })?.code ?? cause?.code;
  const why = code ? (NETWORK[code] ?? SERVER[code]) : undefined;
  if (why) return new Error(`Cannot use the database at ${redactUrl(url)}: ${why} (${code})`);
  if (cause?.message && error instanceof Error) return new Error(`${error.message.split("\n")[0]}: ${cause.message}${code ? ` (${code})` : ""}`);
  return error;
}
