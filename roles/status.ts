/**
 * `chatterbox status`: the cluster at a glance. The balancer (its version,
 * strategy and servers), each server (version, connections, logged-in users,
 * peer links, uptime), the database (PostgreSQL's version, size, messages,
 * schema), gathered over the same protocol the clients speak.
 */
import postgres from "postgres";
import { redactUrl } from "../db/explain";
import { connectAsMember, type Membership } from "../balancer/member";
import { Link } from "../net/link";
import { PLAINTEXT } from "../net/tls";
import { ClientTrust, setDefaultTrust } from "../net/trust";
import { clusterIdentityFrom } from "../server/cluster-identity";
import { VERSION } from "./version";

/** --insecure-plaintext (CHATTERBOX_INSECURE_PLAINTEXT=1, which the flag sets). */
const plaintextRequested = () => process.env.CHATTERBOX_INSECURE_PLAINTEXT === "1";

export interface ServerStatus {
  id: string;
  addr: string;
  /** What the server last reported to the balancer: its logged-in users. */
  load: number;
  version?: string;
  connections?: number;
  sessions?: number;
  peers?: number;
  uptimeSeconds?: number;
  error?: string;
}

export interface DatabaseStatus {
  url: string;
  version?: string;
  sizeBytes?: number;
  messages?: number;
  migrations?: number;
  /** Servers whose heartbeat in the servers table is under 5 s old. */
  liveServers?: number;
  error?: string;
}

export interface ClusterStatus {
  version: string;
  balancer: { addr: string; version?: string; strategy?: string; error?: string; unlisted?: string };
  servers: ServerStatus[];
  database?: DatabaseStatus;
}

const TIMEOUT_MS = 3000;

export async function gatherStatus(options: { balancer: string; databaseUrl?: string }): Promise<ClusterStatus> {
  const status: ClusterStatus = { version: VERSION, balancer: { addr: options.balancer }, servers: [] };
  const database = options.databaseUrl ? databaseStatus(options.databaseUrl) : undefined;
  // The balancer lists its servers to cluster members only: with the database, status is one
  // (its certificate and the cluster secret are there), and checks every server against the cluster CA.
  const member = options.databaseUrl ? await membership(options.databaseUrl).catch(() => undefined) : undefined;
  try {
    await withLink(options.balancer, async (link) => {
      Object.assign(status.balancer, { version: text(link.helloReply.version), strategy: text(link.helloReply.strategy) });
      if (!member) {
        status.balancer.unlisted = "its servers are listed to cluster members only: give --database-url, or --data for up's database";
        return;
      }
      const listing = await connectAsMember(options.balancer, member, { timeoutMs: TIMEOUT_MS });
      try {
        const { servers } = await listing.request("servers", {}, TIMEOUT_MS);
        status.servers = (servers as { id: string; addr: string; load: number }[]).map(({ id, addr, load }) => ({ id, addr, load }));
      } finally {
        listing.close();
      }
    });
  } catch (error) {
    status.balancer.error = (error as Error).message;
  }
  await Promise.all(
    status.servers.map(async (server) => {
      try {
        await withLink(server.addr, async (link) => {
          const info = await link.request("server.info", {}, TIMEOUT_MS);
          Object.assign(server, {
            version: text(info.version),
            connections: Number(info.connections),
            sessions: Number(info.sessions),
            peers: Number(info.peers),
            uptimeSeconds: Number(info.uptimeSeconds),
          });
        });
      } catch (error) {
        server.error = (error as Error).message;
      }
    }),
  );
  status.servers.sort((a, b) => a.addr.localeCompare(b.addr));
  if (database) status.database = await database;
  return status;
}

/** Whether everything asked answered (and the servers could be asked at all): the exit code of `status`. */
export function healthy(status: ClusterStatus): boolean {
  return !status.balancer.error && !status.balancer.unlisted && status.servers.every((s) => !s.error) && !status.database?.error;
}

export function renderStatus(status: ClusterStatus): string {
  const lines = [`ChatterBox status (this program: version ${status.version})`, ""];
  const b = status.balancer;
  lines.push(
    b.error
      ? `balancer  ${b.addr}  UNREACHABLE: ${b.error}`
      : `balancer  ${b.addr}  version ${b.version ?? "?"}, strategy ${b.strategy ?? "?"}, ` +
          // Reached, but it would not say which servers it has: not "unreachable", and not "0 registered".
          (b.unlisted ?? `${plural(status.servers.length, "server")} registered`),
  );
  for (const s of status.servers) {
    const head = `server    ${s.addr}`;
    lines.push(
      s.error
        ? `${head}  UNREACHABLE: ${s.error}  (id ${s.id})`
        : `${head}  version ${s.version}, ${plural(s.connections!, "connection")}, ${s.sessions} logged in (load ${s.load}), ` +
            `${plural(s.peers!, "peer link")}, up ${duration(s.uptimeSeconds!)}  (id ${s.id})`,
    );
  }
  const d = status.database;
  if (!d) lines.push("database  (give --database-url, set DATABASE_URL, or --data for the embedded one, to see it)");
  else if (d.error) lines.push(`database  ${d.url}  UNREACHABLE: ${d.error}`);
  else {
    lines.push(
      `database  ${d.url}  ${d.version}, ${megabytes(d.sizeBytes!)}, about ${d.messages!.toLocaleString("en")} messages, ` +
        `${plural(d.migrations!, "migration")} applied, ${plural(d.liveServers!, "server")} heartbeating`,
    );
  }
  return lines.join("\n");
}

async function databaseStatus(url: string): Promise<DatabaseStatus> {
  const shown = redactUrl(url);
  const sql = postgres(url, { max: 1, onnotice: () => {}, connect_timeout: TIMEOUT_MS / 1000 });
  try {
    const [row] = await sql`
      select current_setting('server_version') as version,
             pg_database_size(current_database())::float8 as size,
             (select greatest(reltuples, 0)::float8 from pg_class where oid = to_regclass('public.messages')) as messages,
             (select count(*)::int from servers where heartbeat_at > now() - interval '5 seconds') as live`;
    // drizzle's own journal of applied migrations.
    const [applied] = await sql`select count(*)::int as n from drizzle.__drizzle_migrations`.catch(() => [{ n: 0 }]);
    return {
      url: shown,
      version: `PostgreSQL ${row!.version}`,
      sizeBytes: row!.size,
      messages: Math.round(row!.messages ?? 0),
      liveServers: row!.live,
      migrations: applied!.n,
    };
  } catch (error) {
    const code = (error as { code?: string }).code;
    return { url: shown, error: `${(error as Error).message}${code && !(error as Error).message.includes(code) ? ` (${code})` : ""}` };
  } finally {
    await sql.end({ timeout: 1 });
  }
}

/** This tool as a cluster member, from what ChatDB holds; its connections then trust the cluster CA. */
async function membership(databaseUrl: string): Promise<Membership> {
  const identity = await clusterIdentityFrom(databaseUrl, ["status"]);
  if (!plaintextRequested()) setDefaultTrust(new ClientTrust(undefined, { caPem: identity.tls.caPem }));
  return { id: "status", secret: identity.secret, tls: plaintextRequested() ? PLAINTEXT : { ...identity.tls } };
}

/** One short connection, bounded in time (Bun.connect has no timeout of its own). */
async function withLink<T>(addr: string, use: (link: Link) => Promise<T>): Promise<T> {
  let timer: Timer | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no answer within ${TIMEOUT_MS / 1000} s`)), TIMEOUT_MS);
  });
  const attempt = (async () => {
    const link = await Link.connect(addr, { hello: { role: "client" }, timeoutMs: TIMEOUT_MS });
    try {
      return await use(link);
    } finally {
      link.close();
    }
  })();
  attempt.catch(() => {});
  try {
    return await Promise.race([attempt, deadline]);
  } finally {
    clearTimeout(timer);
  }
}

function text(value: unknown): string | undefined {
  return typeof value === "string" ? value : undefined;
}

function plural(n: number, word: string): string {
  return `${n} ${word}${n === 1 ? "" : "s"}`;
}

function duration(seconds: number): string {
  if (seconds < 120) return `${seconds} s`;
  if (seconds < 7200) return `${Math.round(seconds / 60)} min`;
  return `${(seconds / 3600).toFixed(1)} h`;
}

function megabytes(bytes: number): string {
  return `${(bytes / 1024 / 1024).toFixed(1)} MiB`;
}
