/**
 * What every part of a chat server can reach, and the per-connection state.
 */
import type { Connection } from "../net/listener";
import type { Committer } from "./committer";
import type { Delivery } from "./delivery";
import type { Peers } from "./peers";
import type { Sessions } from "./sessions";
import type { Store } from "./store";
import type { GroupStore } from "./group-store";
import type { FileStore } from "./file-store";
import type { DeviceSession, DeviceStore } from "./device-store";
import type { CursorStore } from "./cursor-store";
import type { KeyPackageStore } from "./keypackage-store";
import type { Reads } from "./reads";
import type { LogFields } from "../roles/logger";

export interface ServerConfig {
  /** Close connections that have not logged in by then. */
  loginTimeoutMs: number;
  /** Largest message body, in bytes. */
  maxBody: number;
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
}

export const DEFAULT_CONFIG: ServerConfig = {
  loginTimeoutMs: 10_000,
  maxBody: 64 * 1024,
  outboxLimit: 8 * 1024 * 1024,
  tokenTtlMs: 7 * 24 * 3600_000,
  liveWithinMs: 5_000,
  maxGroupMembers: 1000,
  maxFileBytes: 100 * 1024 * 1024,
  uploadTtlMs: 24 * 3600_000,
  fileRetentionMs: 90 * 24 * 3600_000,
  maxDevices: 10,
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
  loginTimer?: Timer;
  /** The last send handed to the committer: the next waits for it, so one connection's sends keep their order. */
  sendTail?: Promise<void>;
  /** While the backlog replays, live messages wait here so that order holds. */
  held?: { conv: number; seq: number; bytes: Uint8Array }[];
  /** Bytes in `held`: bounded like the outbox. */
  heldBytes?: number;
  peerId?: string;
  /** The proof a connecting peer must bring in peer.auth (server/peer-proof.ts), until it does. */
  peerChallenge?: Uint8Array;
}

export type Conn = Connection<ClientState>;

export interface ServerContext {
  id: string;
  /** Makes the stable salts handed out for names that have no account. */
  saltSecret: Uint8Array;
  addr: string;
  config: ServerConfig;
  store: Store;
  devices: DeviceStore;
  cursors: CursorStore;
  groups: GroupStore;
  files: FileStore;
  keyPackages: KeyPackageStore;
  /** History, fetch and file downloads: from the read replica when it is caught up (server/reads.ts). */
  reads: Reads;
  committer: Committer;
  sessions: Sessions;
  delivery: Delivery;
  peers: Peers;
  log(line: string, fields?: LogFields): void;
  /** Makes a connection whose login ChatDB recorded live here (or undoes the record if it closed meanwhile). */
  live(conn: Conn, session: DeviceSession): Promise<void>;
}
