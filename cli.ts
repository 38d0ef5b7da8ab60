#!/usr/bin/env bun
/**
 * The command line: one citty command per role, each a thin call into roles/.
 */
import { defineCommand, renderUsage, runCommand, runMain, type ArgsDef, type CommandDef } from "citty";
import { passwordSource } from "./client/password";
import { ChatError } from "./protocol/errors";
import { bench, benchWorker } from "./bench/command";
import { bodyFor } from "./protocol/limits";

const DEFAULT_BALANCER = "127.0.0.1:7000";

const databaseUrl = {
  "database-url": { type: "string", description: "PostgreSQL URL of ChatDB (default: $DATABASE_URL)" },
} as const;

const dataArg = {
  data: { type: "string", description: "The data folder of `chatterbox up`, to use its running embedded database (default: the one up uses)" },
} as const;

/** The limits a server operator sets; `up` passes them on to its servers. */
const serverLimits = {
  "max-group-members": { type: "string", description: "Most members a group may have", default: "1000" },
  "max-file-mb": { type: "string", description: "Largest file, in MiB", default: "100" },
  "upload-ttl-hours": { type: "string", description: "Delete uploads not completed within this many hours", default: "24" },
  "file-retention-days": { type: "string", description: "Keep completed files this many days", default: "90" },
  "max-devices": { type: "string", description: "Most devices one user may have", default: "10" },
  "retention-days": { type: "string", description: "Delete messages older than this many days (0: keep them all)", default: "0" },
  "storage-quota-mb": { type: "string", description: "Files one user may keep, in MiB (declared sizes, complete or not)", default: "1024" },
  "max-uploads": { type: "string", description: "Uploads one user may have not yet complete at once", default: "4" },
  "send-rate": { type: "string", description: "Messages one user may send a second, after a burst (0: no limit; raise it for bots)", default: "10" },
  "send-burst": { type: "string", description: "Messages one user may send at once before --send-rate applies, once earned (see --send-first-burst)", default: "500" },
  "send-first-burst": { type: "string", description: "Messages a user new to this server (a new session) may send at once; the rest of --send-burst is earned at --send-rate", default: "50" },
  "address-send-rate": { type: "string", description: "Messages all users from one source address may send a second, after a burst (0: no limit)", default: "100" },
  "address-send-burst": { type: "string", description: "Messages from one source address at once before --address-send-rate applies", default: "1000" },
  "address-limit-loopback": { type: "string", description: "yes: the per-address allowance applies to loopback (127.0.0.1, ::1) too, which every local process shares", default: "no" },
  "admission-rate": { type: "string", description: "Messages a second a server admits from everyone before the heaviest senders wait (0: no fixed budget)", default: "0" },
  "admission-lag-ms": { type: "string", description: "Event loop lag, in ms, past which the heaviest senders wait (0: not a signal)", default: "30" },
  "admission-queue": { type: "string", description: "Messages waiting for a commit past which the heaviest senders wait (0: not a signal)", default: "2000" },
  "admission-reads": { type: "string", description: "yes: under pressure, a user reading more than 10 history/fetch pages a second is refused with a retry-after too (off by default: see PERFORMANCE.md)", default: "no" },
  "admission-commit-ms": { type: "string", description: "A send's wait for its commit, in ms, past which the heaviest senders and readers wait (0: not a signal)", default: "50" },
  "outbox-total-mb": { type: "string", description: "MiB queued for all of a server's connections together; past it, those furthest behind are cut off", default: "256" },
  "max-connections": { type: "string", description: "Connections a server holds at once", default: "20000" },
  "max-connections-per-address": { type: "string", description: "Connections a server holds at once from one source address", default: "4096" },
  "commit-batches": { type: "string", description: "Group commits a server runs at once, each on a database connection of its own", default: "3" },
  "commit-gap-ms": { type: "string", description: "Back-to-back group commits start at least this many ms apart, so that a busy server makes fewer, larger commits (0: each as soon as one ends)", default: "2" },
  "cache-entries": { type: "string", description: "Entries in each of a server's caches (names, conversations, where users are, members); past it, one not used lately goes for each new one", default: "200000" },
} as const;

function limitsOf(args: Record<string, unknown>) {
  const number = (name: string, min: number) => {
    const value = Number(args[name]);
    if (!Number.isFinite(value) || value < min) fail(new ChatError("E_BAD_REQUEST", `--${name} takes a number of at least ${min}`));
    return value;
  };
  return {
    maxGroupMembers: Math.floor(number("max-group-members", 1)),
    maxFileBytes: Math.floor(number("max-file-mb", 0.001) * 1024 * 1024),
    uploadTtlMs: number("upload-ttl-hours", 0.001) * 3600_000,
    fileRetentionMs: number("file-retention-days", 0.001) * 24 * 3600_000,
    maxDevices: Math.floor(number("max-devices", 1)),
    storageQuotaBytes: Math.floor(number("storage-quota-mb", 0) * 1024 * 1024),
    maxConcurrentUploads: Math.floor(number("max-uploads", 1)),
    sendsPerSecond: number("send-rate", 0),
    sendBurst: Math.floor(number("send-burst", 1)),
    sendFirstBurst: Math.floor(number("send-first-burst", 1)),
    sendsPerSecondPerAddress: number("address-send-rate", 0),
    sendBurstPerAddress: Math.floor(number("address-send-burst", 1)),
    sendLimitLoopback: yesNo(args, "address-limit-loopback"),
    admissionRate: number("admission-rate", 0),
    admissionLagMs: number("admission-lag-ms", 0),
    admissionQueue: Math.floor(number("admission-queue", 0)),
    admissionCommitMs: number("admission-commit-ms", 0),
    admissionReads: yesNo(args, "admission-reads"),
    outboxTotalLimit: Math.floor(number("outbox-total-mb", 0.001) * 1024 * 1024),
    maxConnections: Math.floor(number("max-connections", 1)),
    maxConnectionsPerAddress: Math.floor(number("max-connections-per-address", 1)),
    commitBatches: Math.floor(number("commit-batches", 1)),
    commitGapMs: number("commit-gap-ms", 0),
    cacheEntries: Math.floor(number("cache-entries", 1)),
    // A body large enough for the largest group's envelope (protocol/limits.ts); the server checks it fits a frame.
    maxBody: Math.max(160 * 1024, bodyFor(Math.floor(number("max-group-members", 1)))),
  };
}

function yesNo(args: Record<string, unknown>, name: string): boolean {
  const value = String(args[name] ?? "no");
  if (value !== "yes" && value !== "no") fail(new ChatError("E_BAD_REQUEST", `--${name} takes yes or no`));
  return value === "yes";
}

/** What an operator sets on every long-running role. */
const operations = {
  metrics: { type: "string", description: "Serve Prometheus metrics at HOST:PORT (or PORT, on 127.0.0.1), at /metrics" },
  "log-format": { type: "string", description: "json (one object a line) or pretty; default: pretty on a terminal, json otherwise" },
} as const;

async function operationsOf(args: { metrics?: string; "log-format"?: string }) {
  const { parseLogFormat } = await import("./roles/logger");
  const { parseMetricsAddress } = await import("./net/metrics-http");
  if (args.metrics) parseMetricsAddress(args.metrics);
  return { metrics: args.metrics || undefined, logFormat: parseLogFormat(args["log-format"]) };
}

function retentionOf(args: Record<string, unknown>): number {
  const days = Number(args["retention-days"] ?? 0);
  if (!Number.isFinite(days) || days < 0) fail(new ChatError("E_BAD_REQUEST", "--retention-days takes a number of days, or 0 to keep every message"));
  return days;
}

const tlsNamesArg = {
  "tls-names": { type: "string", description: "More host names or addresses for this process's certificate, comma-separated (those others dial)" },
} as const;

const publicTlsArgs = {
  "tls-cert": { type: "string", description: "A certificate chain from a public CA (PEM), presented to clients instead of the cluster's own" },
  "tls-key": { type: "string", description: "The private key of --tls-cert (PEM)" },
} as const;

function publicTlsOf(args: { "tls-cert"?: string; "tls-key"?: string }): { certFile: string; keyFile: string } | undefined {
  const [certFile, keyFile] = [args["tls-cert"], args["tls-key"]];
  if (!certFile && !keyFile) return undefined;
  if (!certFile || !keyFile) fail(new ChatError("E_BAD_REQUEST", "Give both --tls-cert and --tls-key, or neither"));
  return { certFile: certFile!, keyFile: keyFile! };
}

function namesOf(text: unknown): string[] {
  return typeof text === "string" ? text.split(",").map((n) => n.trim()).filter(Boolean) : [];
}

const plaintextArg = {
  "insecure-plaintext": { type: "boolean", description: "No TLS on any hop: only to measure what TLS costs, never in earnest" },
} as const;

/** How a client checks the cluster: trust on first use, unless told the CA or its fingerprint. */
const trustArgs = {
  ca: { type: "string", description: "The cluster CA certificate (PEM file) to trust, instead of trusting on first use" },
  "ca-fingerprint": { type: "string", description: "The cluster CA's SHA-256 fingerprint to expect (from `chatterbox ca fingerprint`)" },
  ...plaintextArg,
} as const;

const clientArgs = {
  balancer: { type: "string", description: "Balancer address, HOST:PORT", default: DEFAULT_BALANCER },
  user: { type: "string", description: "Your user name", required: true },
  "device-name": { type: "string", description: "This device's name, shown by `chatterbox devices` (kept from its first login; default: the host name)" },
  wait: { type: "string", description: "Seconds to keep trying the balancer and a server before giving up", default: "30" },
  ...trustArgs,
} as const;

/**
 * The trust flags go into the environment, where net/trust.ts reads them, so
 * that the processes this one starts (bench workers) trust the same way.
 */
function applyTrust(args: { ca?: string; "ca-fingerprint"?: string; "insecure-plaintext"?: boolean }): void {
  if (args["insecure-plaintext"]) process.env.CHATTERBOX_INSECURE_PLAINTEXT = "1";
  if (args.ca) process.env.CHATTERBOX_CA = args.ca;
  if (args["ca-fingerprint"]) process.env.CHATTERBOX_CA_FINGERPRINT = args["ca-fingerprint"];
}

function needDatabase(url: string | undefined): string {
  const found = url || process.env.DATABASE_URL;
  if (!found) fail(new ChatError("E_BAD_REQUEST", "Give --database-url or set DATABASE_URL (or use `chatterbox up`, which runs its own database)"));
  return found!;
}

function fail(error: unknown): never {
  if (error instanceof ChatError) console.error(`chatterbox: ${error.message} (${error.code})`);
  // A sentence for people; the stack only when asked for (CHATTERBOX_DEBUG=1).
  else console.error(`chatterbox: ${process.env.CHATTERBOX_DEBUG ? ((error as Error)?.stack ?? error) : ((error as Error)?.message ?? error)}`);
  process.exit(1);
}

async function guarded(run: () => Promise<unknown>): Promise<void> {
  try {
    await run();
  } catch (error) {
    fail(error);
  }
}

function client(args: { balancer: string; user: string; wait?: string; "device-name"?: string; ca?: string; "ca-fingerprint"?: string; "insecure-plaintext"?: boolean }) {
  applyTrust(args);
  const wait = Number(args.wait ?? 30);
  if (!Number.isFinite(wait) || wait < 0) fail(new ChatError("E_BAD_REQUEST", "--wait takes a number of seconds, 0 or more"));
  return {
    balancer: args.balancer,
    user: args.user,
    password: passwordSource(),
    waitMs: wait * 1000,
    deviceName: args["device-name"],
    passwordGiven: !!process.env.CHATTERBOX_PASSWORD,
  };
}

const balance = defineCommand({
  meta: { name: "balance", description: "Run the load balancer that tells clients which chat server to use" },
  args: {
    port: { type: "string", description: "Port to listen on", default: "7000" },
    host: { type: "string", description: "Address to listen on", default: "127.0.0.1" },
    strategy: { type: "string", description: "roundrobin, leastconn, random or p2c", default: "roundrobin" },
    ...operations,
    ...databaseUrl,
    ...tlsNamesArg,
    ...publicTlsArgs,
    ...plaintextArg,
  },
  run: ({ args }) =>
    guarded(async () => {
      const { runBalancer } = await import("./roles/run");
      await runBalancer({
        port: Number(args.port),
        hostname: args.host,
        strategy: args.strategy,
        databaseUrl: needDatabase(args["database-url"]),
        tlsNames: namesOf(args["tls-names"]),
        publicTls: publicTlsOf(args),
        insecurePlaintext: !!args["insecure-plaintext"],
        ...(await operationsOf(args)),
      });
    }),
});

const serve = defineCommand({
  meta: { name: "serve", description: "Run a chat server" },
  args: {
    port: { type: "positional", description: "Port to listen on (0 = any free port)", required: true },
    host: { type: "string", description: "Address to listen on", default: "127.0.0.1" },
    balancer: { type: "string", description: "Balancer to register with, HOST:PORT", default: DEFAULT_BALANCER },
    ...databaseUrl,
    "read-database-url": { type: "string", description: "A streaming replica of ChatDB for history, fetch and file downloads (the primary serves what it has not replayed yet)" },
    ...serverLimits,
    ...operations,
    ...tlsNamesArg,
    ...publicTlsArgs,
    ...plaintextArg,
  },
  run: ({ args }) =>
    guarded(async () => {
      const { runServer } = await import("./roles/run");
      await runServer({
        ...(await operationsOf(args)),
        port: Number(args.port),
        hostname: args.host,
        balancer: args.balancer,
        databaseUrl: needDatabase(args["database-url"]),
        readDatabaseUrl: args["read-database-url"] || undefined,
        config: limitsOf(args),
        retentionDays: retentionOf(args),
        tlsNames: namesOf(args["tls-names"]),
        publicTls: publicTlsOf(args),
        insecurePlaintext: !!args["insecure-plaintext"],
      });
    }),
});

const up = defineCommand({
  meta: { name: "up", description: "Run the whole system on this machine: embedded PostgreSQL, a balancer and servers" },
  args: {
    servers: { type: "string", description: "How many chat servers", default: "2" },
    port: { type: "string", description: "Balancer port; servers take the next ports", default: "7000" },
    strategy: { type: "string", description: "Balancing strategy", default: "roundrobin" },
    data: { type: "string", description: "Folder for the embedded database (default: under your data directory)" },
    ...databaseUrl,
    ...serverLimits,
    metrics: { type: "string", description: "Balancer metrics at HOST:PORT (or PORT); server i gets PORT+i" },
    "log-format": operations["log-format"],
  },
  run: ({ args }) =>
    guarded(async () => {
      const { runUp } = await import("./roles/up");
      limitsOf(args);
      retentionOf(args);
      await runUp({
        serverArgs: Object.keys(serverLimits).flatMap((name) => [`--${name}`, String(args[name as keyof typeof serverLimits])]),
        servers: Number(args.servers),
        port: Number(args.port),
        strategy: args.strategy,
        dataDir: args.data,
        databaseUrl: args["database-url"] || process.env.DATABASE_URL,
        ...(await operationsOf(args)),
      });
    }),
});

const db = defineCommand({
  meta: { name: "db", description: "Database administration" },
  subCommands: {
    migrate: defineCommand({
      meta: { name: "migrate", description: "Apply the schema migrations to ChatDB" },
      args: { ...databaseUrl },
      run: ({ args }) =>
        guarded(async () => {
          const { migrate, openDatabase } = await import("./db/connect");
          const { explainDatabaseError } = await import("./db/explain");
          const url = needDatabase(args["database-url"]);
          const database = openDatabase(url);
          try {
            await migrate(database);
          } catch (error) {
            throw explainDatabaseError(error, url);
          } finally {
            await database.close();
          }
          console.log("ChatDB is up to date");
        }),
    }),
    backup: defineCommand({
      meta: { name: "backup", description: "Write every row of ChatDB to FILE (gzipped), from one consistent snapshot" },
      args: { file: { type: "positional", description: "The backup file to write", required: true }, ...databaseUrl, ...dataArg },
      run: ({ args }) =>
        guarded(async () => {
          const { backup } = await import("./roles/maintenance");
          const done = await backup({ databaseUrl: args["database-url"] || process.env.DATABASE_URL, dataDir: args.data }, args.file);
          console.log(`Backed up ${done.rows} rows of ${done.tables} tables from ${done.from} to ${args.file}`);
        }),
    }),
    restore: defineCommand({
      meta: { name: "restore", description: "Load a backup FILE into a new, empty ChatDB (a new --data folder, or an empty --database-url)" },
      args: { file: { type: "positional", description: "The backup file to read", required: true }, ...databaseUrl, ...dataArg },
      run: ({ args }) =>
        guarded(async () => {
          const { restore } = await import("./roles/maintenance");
          const done = await restore({ databaseUrl: args["database-url"] || process.env.DATABASE_URL, dataDir: args.data }, args.file);
          console.log(`Restored ${done.rows} rows of ${done.tables} tables into ${done.into}`);
        }),
    }),
  },
});

/** The database a maintenance command works on: the URL given, or the embedded one `up` runs on --data. */
async function databaseOf(args: { "database-url"?: string; data?: string }): Promise<string | undefined> {
  const given = args["database-url"] || process.env.DATABASE_URL;
  if (given) return given;
  const { defaultDataDir, runningEmbeddedUrl } = await import("./db/embedded");
  return runningEmbeddedUrl(args.data || defaultDataDir());
}

const status = defineCommand({
  meta: { name: "status", description: "Show the cluster at a glance: the balancer, each server, the database, their versions" },
  args: {
    balancer: clientArgs.balancer,
    ...databaseUrl,
    ...dataArg,
    json: { type: "boolean", description: "Print one JSON object" },
  },
  run: ({ args }) =>
    guarded(async () => {
      const { gatherStatus, healthy, renderStatus } = await import("./roles/status");
      const found = await gatherStatus({ balancer: args.balancer, databaseUrl: await databaseOf(args) });
      console.log(args.json ? JSON.stringify(found) : renderStatus(found));
      process.exit(healthy(found) ? 0 : 1);
    }),
});

const ca = defineCommand({
  meta: { name: "ca", description: "The cluster's certificate authority, kept in ChatDB (made at first start)" },
  subCommands: {
    fingerprint: defineCommand({
      meta: { name: "fingerprint", description: "Print the cluster CA's fingerprint, which clients pin on first use" },
      args: { ...databaseUrl },
      run: ({ args }) =>
        guarded(async () => {
          const { caFrom } = await import("./server/cluster-identity");
          const { fingerprint } = await import("./net/ca");
          console.log(fingerprint((await caFrom(needDatabase(args["database-url"]))).certPem));
        }),
    }),
    export: defineCommand({
      meta: { name: "export", description: "Print the cluster CA's certificate (PEM), for clients' --ca FILE" },
      args: { ...databaseUrl },
      run: ({ args }) =>
        guarded(async () => {
          const { caFrom } = await import("./server/cluster-identity");
          process.stdout.write((await caFrom(needDatabase(args["database-url"]))).certPem);
        }),
    }),
  },
});

const signup = defineCommand({
  meta: { name: "signup", description: "Create an account (password from CHATTERBOX_PASSWORD or a prompt)" },
  args: { ...clientArgs },
  run: ({ args }) =>
    guarded(async () => {
      const roles = await import("./roles/client");
      const typed = !process.env.CHATTERBOX_PASSWORD && process.stdin.isTTY === true;
      await roles.signup({ ...client(args), ...(typed ? { confirmPassword: passwordSource("Password again: ") } : {}) });
      console.log(`Account ${args.user} created`);
    }),
});

const send = defineCommand({
  meta: { name: "send", description: "Send one message; exits 0 once the server has stored it" },
  args: {
    ...clientArgs,
    to: { type: "string", description: "Recipient user" },
    group: { type: "string", description: "Recipient group (instead of --to)" },
    file: { type: "string", description: "Send this file instead of a text" },
    text: { type: "positional", description: "The message (unless --file)", required: false },
  },
  run: ({ args }) =>
    guarded(async () => {
      const roles = await import("./roles/client");
      const { msg } = await roles.send({ ...client(args), to: args.to, group: args.group, text: args.text, file: args.file });
      console.log(args.file ? `Sent ${args.file} (message ${msg})` : `Sent (message ${msg})`);
    }),
});

const devices = defineCommand({
  meta: { name: "devices", description: "List your devices (name, last seen, online now), or revoke one" },
  args: {
    ...clientArgs,
    json: { type: "boolean", description: "One JSON object" },
    revoke: { type: "positional", description: "`revoke ID`: end that device's sessions and tokens", required: false },
    id: { type: "positional", description: "The device id to revoke", required: false },
  },
  run: ({ args }) =>
    guarded(async () => {
      if (args.revoke !== undefined && (args.revoke !== "revoke" || !args.id)) fail(new ChatError("E_BAD_REQUEST", "usage: chatterbox devices [revoke ID]"));
      const roles = await import("./roles/client");
      await roles.devices({ ...client(args), revoke: args.revoke ? args.id : undefined, json: !!args.json });
    }),
});

const settings = defineCommand({
  meta: { name: "settings", description: "Show your settings, or change them (--read-receipts on|off)" },
  args: {
    ...clientArgs,
    "read-receipts": { type: "string", description: "on: send and see read receipts; off: neither" },
    json: { type: "boolean", description: "One JSON object" },
  },
  run: ({ args }) =>
    guarded(async () => {
      const value = args["read-receipts"];
      if (value !== undefined && value !== "on" && value !== "off") fail(new ChatError("E_BAD_REQUEST", "--read-receipts takes on or off"));
      const roles = await import("./roles/client");
      await roles.settings({ ...client(args), readReceipts: value === undefined ? undefined : value === "on", json: !!args.json });
    }),
});

const inbox = defineCommand({
  meta: { name: "inbox", description: "Print every unread message, oldest first, and mark read what was printed" },
  args: { ...clientArgs, json: { type: "boolean", description: "One JSON object a line" } },
  run: ({ args }) =>
    guarded(async () => {
      const roles = await import("./roles/client");
      await roles.inbox({ ...client(args), json: !!args.json });
    }),
});

const history = defineCommand({
  meta: { name: "history", description: "Print your conversation with another user, or in a group" },
  args: {
    ...clientArgs,
    with: { type: "string", description: "The other user" },
    group: { type: "string", description: "A group (instead of --with)" },
    limit: { type: "string", description: "How many of the latest messages", default: "50" },
    json: { type: "boolean", description: "One JSON object a line" },
  },
  run: ({ args }) =>
    guarded(async () => {
      const roles = await import("./roles/client");
      await roles.history({ ...client(args), with: args.with, group: args.group, limit: Number(args.limit), json: !!args.json });
    }),
});

const chat = defineCommand({
  meta: { name: "chat", description: "The interactive chat client: full screen on a terminal, line mode with --plain or from a pipe, JSON lines with --json" },
  args: {
    ...clientArgs,
    json: { type: "boolean", description: "Print each event as one JSON object a line" },
    plain: { type: "boolean", description: "Line mode on a terminal: a prompt, with messages printed above it (default there: the full-screen client)" },
  },
  run: ({ args }) =>
    guarded(async () => {
      const roles = await import("./roles/client");
      await roles.chat({ ...client(args), json: !!args.json, plain: !!args.plain });
      process.exit(0);
    }),
});

const fetchFile = defineCommand({
  meta: { name: "fetch", description: "Download a file you received, again, by its id" },
  args: { ...clientArgs, file: { type: "string", description: "The file's id (shown by inbox and history --json)", required: true }, json: { type: "boolean", description: "Print a JSON object" } },
  run: ({ args }) =>
    guarded(async () => {
      const roles = await import("./roles/client");
      await roles.fetch({ ...client(args), file: args.file, json: !!args.json });
    }),
});

const verify = defineCommand({
  meta: { name: "verify", description: "Show the safety number of you and a contact, to compare with them" },
  args: { ...clientArgs, with: { type: "string", description: "The contact", required: true } },
  run: ({ args }) =>
    guarded(async () => {
      const roles = await import("./roles/client");
      const number = await roles.verify({ ...client(args), with: args.with });
      console.log(`Safety number for ${args.user} and ${args.with}:\n\n    ${number}\n`);
      console.log(`It is the same on both sides only if nobody swapped your keys. Compare it with ${args.with} in person or on a call.`);
    }),
});

const passwd = defineCommand({
  meta: { name: "passwd", description: "Change your password (new one from CHATTERBOX_NEW_PASSWORD or a prompt)" },
  args: { ...clientArgs },
  run: ({ args }) =>
    guarded(async () => {
      const roles = await import("./roles/client");
      await roles.passwd({ ...client(args), newPassword: passwordSource("New password: ", "CHATTERBOX_NEW_PASSWORD") });
      console.log("Password changed; other devices must log in again with the new password");
    }),
});

const main = defineCommand({
  meta: { name: "chatterbox", version: "0.1.0", description: "A distributed, end-to-end encrypted terminal chat system" },
  subCommands: { up, balance, serve, status, db, ca, signup, send, inbox, history, fetch: fetchFile, chat, verify, passwd, devices, settings, bench, "bench-worker": benchWorker },
});

/** Help as citty renders it, without colour unless it goes to a terminal. */
const showUsage = async <T extends ArgsDef>(cmd: CommandDef<T>, parent?: CommandDef<T>) => {
  const text = await renderUsage(cmd, parent);
  console.log(process.stdout.isTTY ? text : Bun.stripANSI(text));
};
const rawArgs = process.argv.slice(2);
const wantsHelp = rawArgs.length === 0 || rawArgs.some((a) => a === "--help" || a === "-h" || a === "--version" || a === "-v");
if (wantsHelp) await runMain(main, { rawArgs, showUsage });
else {
  try {
    await runCommand(main, { rawArgs });
  } catch (error) {
    // A usage mistake: the one-line error first, then where the help is, not the whole help.
    if ((error as Error)?.name !== "CLIError") throw error;
    const sub = rawArgs.find((a) => !a.startsWith("-"));
    console.error(`chatterbox: ${Bun.stripANSI((error as Error).message)}`);
    console.error(`Run \`chatterbox ${sub && sub in (main.subCommands as object) ? `${sub} ` : ""}--help\` for usage.`);
    process.exit(1);
  }
}
