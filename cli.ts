#!/usr/bin/env bun
/**
 * The command line: one citty command per role, each a thin call into roles/.
 */
import { defineCommand, runMain } from "citty";
import { passwordSource } from "./client/password";
import { ChatError } from "./protocol/errors";
import { bench, benchWorker } from "./bench/command";

const DEFAULT_BALANCER = "127.0.0.1:7000";

const databaseUrl = {
  "database-url": { type: "string", description: "PostgreSQL URL of ChatDB (default: $DATABASE_URL)" },
} as const;

/** The limits a server operator sets; `up` passes them on to its servers. */
const serverLimits = {
  "max-group-members": { type: "string", description: "Most members a group may have", default: "1000" },
  "max-file-mb": { type: "string", description: "Largest file, in MiB", default: "100" },
  "upload-ttl-hours": { type: "string", description: "Delete uploads not completed within this many hours", default: "24" },
  "file-retention-days": { type: "string", description: "Keep completed files this many days", default: "90" },
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
  };
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

function client(args: { balancer: string; user: string; ca?: string; "ca-fingerprint"?: string; "insecure-plaintext"?: boolean }) {
  applyTrust(args);
  return { balancer: args.balancer, user: args.user, password: passwordSource() };
}

const balance = defineCommand({
  meta: { name: "balance", description: "Run the load balancer that tells clients which chat server to use" },
  args: {
    port: { type: "string", description: "Port to listen on", default: "7000" },
    host: { type: "string", description: "Address to listen on", default: "127.0.0.1" },
    strategy: { type: "string", description: "roundrobin, leastconn, random or p2c", default: "roundrobin" },
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
    ...serverLimits,
    ...tlsNamesArg,
    ...publicTlsArgs,
    ...plaintextArg,
  },
  run: ({ args }) =>
    guarded(async () => {
      const { runServer } = await import("./roles/run");
      await runServer({
        port: Number(args.port),
        hostname: args.host,
        balancer: args.balancer,
        databaseUrl: needDatabase(args["database-url"]),
        config: limitsOf(args),
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
  },
  run: ({ args }) =>
    guarded(async () => {
      const { runUp } = await import("./roles/up");
      limitsOf(args);
      await runUp({
        serverArgs: Object.keys(serverLimits).flatMap((name) => [`--${name}`, String(args[name as keyof typeof serverLimits])]),
        servers: Number(args.servers),
        port: Number(args.port),
        strategy: args.strategy,
        dataDir: args.data,
        databaseUrl: args["database-url"] || process.env.DATABASE_URL,
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
          const database = openDatabase(needDatabase(args["database-url"]));
          await migrate(database);
          await database.close();
          console.log("ChatDB is up to date");
        }),
    }),
  },
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
      await roles.signup(client(args));
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

const inbox = defineCommand({
  meta: { name: "inbox", description: "Print every message waiting for you, oldest first, and acknowledge them" },
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
  meta: { name: "chat", description: "The interactive chat client (scriptable when stdin is not a terminal)" },
  args: { ...clientArgs, json: { type: "boolean", description: "Print each event as one JSON object a line" } },
  run: ({ args }) =>
    guarded(async () => {
      const roles = await import("./roles/client");
      await roles.chat({ ...client(args), json: !!args.json });
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
  subCommands: { up, balance, serve, db, ca, signup, send, inbox, history, fetch: fetchFile, chat, verify, passwd, bench, "bench-worker": benchWorker },
});

await runMain(main);
