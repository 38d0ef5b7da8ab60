/**
 * A chat server's configuration, and the state it keeps per connection. What
 * each part uses of the server it declares itself, as a narrow interface
 * (AuthDeps, DeliveryDeps, PeersDeps, RouteDeps, ...), and roles/server.ts
 * hands it exactly that.
 */
import type { Connection } from "../net/listener";
import { DEFAULT_MAX_FRAME } from "../protocol/frame";
import { DEFAULT_GAP_MS } from "./committer";
import type { ConnFlow } from "./flow";

export interface ServerConfig {
  /** Close connections that have not logged in by then. */
  loginTimeoutMs: number;
  /** Largest message body, in bytes: enough for a full group's envelope (protocol/limits.ts). */
  maxBody: number;
  /** Largest frame either way, in bytes; every reply is paged to fit it. */
  maxFrame: number;
  /** Bytes queued for one connection before it is cut off as too slow. */
  outboxLimit: number;
  /** How long a resume token stays valid. */
  tokenTtlMs: number;
  /** A server whose heartbeat is older than this is considered gone. */
  liveWithinMs: number;
  /** The most members a group may have. */
  maxGroupMembers: number;
  /** The largest file, in bytes. */
  maxFileBytes: number;
  /** An upload not completed within this long is deleted. */
  uploadTtlMs: number;
  /** How long completed files are kept. */
  fileRetentionMs: number;
  /** The most devices one user may have. */
  maxDevices: number;
  /** Connections at once, overall and from one source address. */
  maxConnections: number;
  maxConnectionsPerAddress: number;
  /** Requests answered at once per connection; past it the server stops reading that connection. */
  maxInFlight: number;
  /** The largest frame before login: what a stranger can make the server buffer. */
  strangerMaxFrame: number;
  /** argon2id hashes running at once, server-wide (each takes 64 MiB and a core). */
  maxConcurrentHashes: number;
  /** Reads with large replies (history, fetch, file chunks) running at once, server-wide. */
  maxConcurrentReads: number;
  /** Password hashes (signup, login, passwd) one source address may ask for: a burst, then this many a second. */
  hashBurstPerAddress: number;
  hashesPerSecondPerAddress: number;
  /** Messages one user may send: a burst, then this many a second (0: no limit). */
  sendBurst: number;
  sendsPerSecond: number;
  /** What a user new to this server may send at once: the rest of the burst is earned at sendsPerSecond. */
  sendFirstBurst: number;
  /** Messages from one source address, over all its users: a burst, then this many a second (0: no limit). */
  sendBurstPerAddress: number;
  sendsPerSecondPerAddress: number;
  /** Whether the per-address allowance applies to loopback too (off: every local process shares 127.0.0.1). */
  sendLimitLoopback: boolean;
  /** Server-wide admission of sends (server/admission.ts): a budget a second, a loop lag and a commit queue depth past which the heaviest senders wait (0: that signal off). */
  admissionRate: number;
  admissionLagMs: number;
  admissionQueue: number;
  admissionCommitMs: number;
  /** Whether large reads are refused under pressure too (server/admission.ts admitRead). */
  admissionReads: boolean;
  /** Bytes queued for all connections together; past it, those with the most queued are cut off as too slow. */
  outboxTotalLimit: number;
  /** Bytes of files one user may keep (the sizes declared at file.begin), and uploads not yet complete at once. */
  storageQuotaBytes: number;
  maxConcurrentUploads: number;
  /** Group-commit batches in flight at once, each on a connection of its own (server/committer.ts). */
  commitBatches: number;
  /** Back-to-back batches start at least this far apart (server/committer.ts gapMs); 0: no pacing. */
  commitGapMs: number;
  /** Entries in each of the server's caches (names, conversations, where users are, conversation members). */
  cacheEntries: number;
}

export const DEFAULT_CONFIG: ServerConfig = {
  loginTimeoutMs: 10_000,
  // bodyFor(1000) is ~145 KiB: a 1,000-member group's envelope with 64 KiB of text.
  maxBody: 160 * 1024,
  maxFrame: DEFAULT_MAX_FRAME,
  outboxLimit: 8 * 1024 * 1024,
  tokenTtlMs: 7 * 24 * 3600_000,
  liveWithinMs: 5_000,
  maxGroupMembers: 1000,
  maxFileBytes: 100 * 1024 * 1024,
  uploadTtlMs: 24 * 3600_000,
  fileRetentionMs: 90 * 24 * 3600_000,
  maxDevices: 10,
  maxConnections: 20_000,
  // Loopback and NAT put many honest clients behind one address: high enough for them, far below the total.
  maxConnectionsPerAddress: 4096,
  maxInFlight: 32,
  strangerMaxFrame: 8 * 1024,
  // Half the cores at most: a flood of signups never takes the cores that deliver messages.
  maxConcurrentHashes: Math.max(1, Math.floor(navigator.hardwareConcurrency / 2)),
  maxConcurrentReads: 16,
  hashBurstPerAddress: 100,
  hashesPerSecondPerAddress: 2,
  // A person sends a few messages a second at most: the burst covers a client's queue sent on reconnecting, the rate a bot's pace (bots and the bench set their own).
  sendBurst: 500,
  sendsPerSecond: 10,
  // A client's queue after a short absence; an account new to the server earns the rest of the burst (45 s at 10 a second), so a hundred fresh accounts cannot pour 50,000 messages in at once.
  sendFirstBurst: 50,
  // Many honest users behind one NAT; far less than a hundred accounts' allowances from one host.
  sendBurstPerAddress: 1000,
  sendsPerSecondPerAddress: 100,
  sendLimitLoopback: false,
  admissionRate: 0,
  admissionLagMs: 30,
  admissionQueue: 2000,
  // A neighbour's send waits ~2-10 ms for its commit on a server that keeps up; 50 ms is a backlog forming, before the loop is late.
  admissionCommitMs: 50,
  // Off until its cost is understood: with 1,000 non-readers it raised the neighbours' p99 and the server's RSS (PERFORMANCE.md, round 4).
  admissionReads: false,
  outboxTotalLimit: 256 * 1024 * 1024,
  storageQuotaBytes: 1024 * 1024 * 1024,
  maxConcurrentUploads: 4,
  commitBatches: 3,
  commitGapMs: DEFAULT_GAP_MS,
  cacheEntries: 200_000,
};

export interface ClientState {
  role: "unknown" | "client" | "peer";
  user?: { id: number; name: string };
  /** The device this connection logged in from. */
  device?: { id: number; key: string };
  /** When this connection last told others that its user is typing, per conversation (rate limit). */
  typingAt?: Map<number, number>;
  /** A login or resume is in progress: one at a time per connection. */
  authenticating: boolean;
  /** A request that hashes a password (signup, passwd) is in progress: one at a time per connection. */
  hashing?: boolean;
  /** A sync is replaying: one at a time per connection. */
  syncing?: boolean;
  loginTimer?: Timer;
  /** Per target ("g" group or "u" user name), the last send still being looked up: the next to it waits, so each conversation's sends keep their order. */
  sendTails?: Map<string, Promise<void>>;
  /** While the backlog replays, live messages wait here so that order holds. */
  held?: { conv: number; seq: number; bytes: Uint8Array }[];
  /** Bytes in `held`: bounded like the outbox. */
  heldBytes?: number;
  /** What server/flow.ts keeps for this connection: what was sent, what fell behind. On the state itself, read per delivery. */
  flow?: ConnFlow;
  peerId?: string;
  /** The proof a connecting peer must bring in peer.auth (server/peer-proof.ts), until it does. */
  peerChallenge?: Uint8Array;
}

export type Conn = Connection<ClientState>;
