/**
 * ChatDB: the source of truth shared by every chat server. Message bodies are
 * opaque bytes here; the servers never see plaintext.
 */
import { sql } from "drizzle-orm";
import {
  bigint,
  bigserial,
  boolean,
  customType,
  index,
  integer,
  pgTable,
  primaryKey,
  serial,
  text,
  timestamp,
  uniqueIndex,
  uuid,
} from "drizzle-orm/pg-core";

const bytea = customType<{ data: Uint8Array; driverData: Uint8Array }>({
  dataType: () => "bytea",
});

export const users = pgTable("users", {
  id: serial("id").primaryKey(),
  name: text("name").notNull().unique(),
  /** argon2id hash of the login secret: a key the client derives from the password, never the password. */
  authHash: text("auth_hash").notNull(),
  /** The client's key derivation: its salt and parameters, handed back at login. */
  salt: bytea("salt"),
  kdf: text("kdf"),
  /** The public halves of the identity keys (X25519, Ed25519). */
  dhPublic: bytea("dh_public"),
  signPublic: bytea("sign_public"),
  /** The identity private keys, encrypted under a key only the password gives. */
  keyBackup: bytea("key_backup"),
  /** Whether this user sends read receipts and sees other people's (as in Signal: both or neither). */
  readReceipts: boolean("read_receipts").notNull().default(true),
  /**
   * The contacts' keys this user pinned or trusted, encrypted under a key derived
   * from the wrapping key (the server cannot read it), so that every device of
   * the user starts with what the user already trusts. `pinsVersion` orders writes.
   */
  pins: bytea("pins"),
  pinsVersion: integer("pins_version").notNull().default(0),
  /** Consecutive failed logins, and until when the next attempt is refused. */
  failedLogins: integer("failed_logins").notNull().default(0),
  lockedUntil: timestamp("locked_until", { withTimezone: true }),
  createdAt: timestamp("created_at", { withTimezone: true }).notNull().defaultNow(),
});

/**
 * A user's devices: one client home each. The client picks the random `key`
 * at its first login; `id` is what the other tables use. A login takes this
 * row under SELECT ... FOR UPDATE (and the user's row, for the device cap).
 */
export const devices = pgTable(
  "devices",
  {
    id: serial("id").primaryKey(),
    userId: integer("user_id")
      .notNull()
      .references(() => users.id, { onDelete: "cascade" }),
    key: text("key").notNull(),
    name: text("name").notNull(),
    createdAt: timestamp("created_at", { withTimezone: true }).notNull().defaultNow(),
    lastSeenAt: timestamp("last_seen_at", { withTimezone: true }).notNull().defaultNow(),
    /** Set by `devices revoke`: its tokens are gone and its connections closed. */
    revokedAt: timestamp("revoked_at", { withTimezone: true }),
  },
  (t) => [uniqueIndex("devices_user_key").on(t.userId, t.key)],
);

/**
 * Live connections: which server holds which connection of which device. A
 * user may have many at once (several devices, several processes of one).
 */
export const connections = pgTable(
  "connections",
  {
    serverId: text("server_id").notNull(),
    connId: integer("conn_id").notNull(),
    userId: integer("user_id")
      .notNull()
      .references(() => users.id, { onDelete: "cascade" }),
    deviceId: integer("device_id")
      .notNull()
      .references(() => devices.id, { onDelete: "cascade" }),
    startedAt: timestamp("started_at", { withTimezone: true }).notNull().defaultNow(),
  },
  (t) => [primaryKey({ columns: [t.serverId, t.connId] }), index("connections_user").on(t.userId), index("connections_device").on(t.deviceId)],
);

/** Resume tokens, one per login, each bound to its device: SHA-256 of 256 random bits. */
export const tokens = pgTable(
  "tokens",
  {
    hash: bytea("hash").primaryKey(),
    userId: integer("user_id")
      .notNull()
      .references(() => users.id, { onDelete: "cascade" }),
    deviceId: integer("device_id")
      .notNull()
      .references(() => devices.id, { onDelete: "cascade" }),
    expiresAt: timestamp("expires_at", { withTimezone: true }).notNull(),
  },
  (t) => [index("tokens_device").on(t.deviceId)],
);

/** Live chat servers, so that any server can find and reach any other. */
export const servers = pgTable("servers", {
  id: text("id").primaryKey(),
  addr: text("addr").notNull(),
  startedAt: timestamp("started_at", { withTimezone: true }).notNull().defaultNow(),
  heartbeatAt: timestamp("heartbeat_at", { withTimezone: true }).notNull().defaultNow(),
});

/** Cluster-wide settings, such as the secret that servers show each other on the peer link. */
export const settings = pgTable("settings", {
  key: text("key").primaryKey(),
  value: bytea("value").notNull(),
});

/**
 * A direct conversation (a pair of users) or, later, a group. last_seq is allocated under this row's lock.
 * This table, members and device_cursors have fillfactor 80 (migration 0008: drizzle has no table storage
 * parameters), so that their hot updates stay HOT.
 */
export const conversations = pgTable(
  "conversations",
  {
    id: serial("id").primaryKey(),
    kind: text("kind").notNull(),
    /** For a direct conversation, "lowId:highId", so a pair has exactly one. */
    dmKey: text("dm_key"),
    /** For a group, its name, unique among groups. */
    name: text("name"),
    lastSeq: bigint("last_seq", { mode: "number" }).notNull().default(0),
    /** Bumped by every membership change: a message sealed for an older membership is refused. */
    epoch: integer("epoch").notNull().default(0),
    createdAt: timestamp("created_at", { withTimezone: true }).notNull().defaultNow(),
  },
  (t) => [
    uniqueIndex("conversations_dm_key").on(t.dmKey).where(sql`${t.dmKey} is not null`),
    uniqueIndex("conversations_group_name").on(t.name).where(sql`${t.name} is not null`),
  ],
);

/**
 * Membership, and the person's read marker in the conversation: it moves only
 * past messages that some client of theirs has shown (what each device has
 * received is in device_cursors).
 */
export const members = pgTable(
  "members",
  {
    /** No foreign keys here, on purpose: see migration 0011 (their per-row checks were a third of a new pair's cost). */
    conversationId: integer("conversation_id").notNull(),
    userId: integer("user_id").notNull(),
    readSeq: bigint("read_seq", { mode: "number" }).notNull().default(0),
    /** The member sees messages after this sequence number only. */
    joinedSeq: bigint("joined_seq", { mode: "number" }).notNull().default(0),
    /**
     * Set when the member leaves or is removed: the sequence number of that
     * change, the last message they see. Null while they are a member.
     */
    leftSeq: bigint("left_seq", { mode: "number" }),
    /** In a group: "admin" or "member". */
    role: text("role").notNull().default("member"),
    joinedAt: timestamp("joined_at", { withTimezone: true }).notNull().defaultNow(),
  },
  (t) => [primaryKey({ columns: [t.conversationId, t.userId] }), index("members_user").on(t.userId)],
);

/**
 * What each device has received, per conversation: replay to that device starts
 * past it. A missing row means "from the member's joining" (devices made after
 * a conversation began get rows from the read marker when they are made).
 */
export const deviceCursors = pgTable(
  "device_cursors",
  {
    /** No foreign key, on purpose: see migration 0011 (a per-row check for every first cursor of a new pair). */
    deviceId: integer("device_id").notNull(),
    /** No foreign key, on purpose: see migration 0006 (its lock deadlocked acks with the group commit). */
    conversationId: integer("conversation_id").notNull(),
    seq: bigint("seq", { mode: "number" }).notNull().default(0),
  },
  (t) => [primaryKey({ columns: [t.deviceId, t.conversationId] })],
);

/**
 * Every message, stored once however many members its conversation has.
 *
 * No foreign keys here, on purpose: their per-row checks were half of
 * PostgreSQL's time per stored message (PERFORMANCE.md). The one writer, the
 * group commit in server/append.ts, stores a message only with its
 * conversation's row locked and updated in the same statement, for a sender
 * the server has logged in; the cascades the keys gave (deleting a user or a
 * conversation deletes its messages) are statement-level triggers, in
 * migration 0005.
 */
export const messages = pgTable(
  "messages",
  {
    id: bigserial("id", { mode: "number" }).primaryKey(),
    conversationId: integer("conversation_id").notNull(),
    seq: bigint("seq", { mode: "number" }).notNull(),
    senderId: integer("sender_id").notNull(),
    /** The sender's client message id: a retried send finds its first copy. */
    cmid: text("cmid").notNull(),
    /** "chat": an envelope only its recipients can open; "system": a membership change the server records. */
    kind: text("kind").notNull().default("chat"),
    body: bytea("body").notNull(),
    createdAt: timestamp("created_at", { withTimezone: true }).notNull().defaultNow(),
  },
  (t) => [uniqueIndex("messages_conv_seq").on(t.conversationId, t.seq), uniqueIndex("messages_sender_cmid").on(t.senderId, t.cmid)],
);

/**
 * Files: uploaded in encrypted chunks, kept in PostgreSQL like the messages
 * they belong to, so any server can serve any file and one backup holds all.
 */
export const files = pgTable("files", {
  id: uuid("id").primaryKey().defaultRandom(),
  uploaderId: integer("uploader_id")
    .notNull()
    .references(() => users.id, { onDelete: "cascade" }),
  conversationId: integer("conversation_id")
    .notNull()
    .references(() => conversations.id, { onDelete: "cascade" }),
  /** The conversation's last sequence number when the upload began: who may read it is decided by membership then. */
  seqAtBegin: bigint("seq_at_begin", { mode: "number" }).notNull(),
  /** Plaintext size in bytes. */
  size: bigint("size", { mode: "number" }).notNull(),
  chunkSize: integer("chunk_size").notNull(),
  chunks: integer("chunks").notNull(),
  createdAt: timestamp("created_at", { withTimezone: true }).notNull().defaultNow(),
  completedAt: timestamp("completed_at", { withTimezone: true }),
});

export const fileChunks = pgTable(
  "file_chunks",
  {
    fileId: uuid("file_id")
      .notNull()
      .references(() => files.id, { onDelete: "cascade" }),
    idx: integer("idx").notNull(),
    data: bytea("data").notNull(),
  },
  (t) => [primaryKey({ columns: [t.fileId, t.idx] })],
);

/**
 * MLS key packages a device uploaded for others to add it with (crypto/mls):
 * one-time packages, each handed out once and deleted as it is, and at most one
 * last-resort package per device, handed out when the one-time supply is empty.
 */
export const keyPackages = pgTable(
  "key_packages",
  {
    id: serial("id").primaryKey(),
    deviceId: integer("device_id")
      .notNull()
      .references(() => devices.id, { onDelete: "cascade" }),
    data: bytea("data").notNull(),
    lastResort: boolean("last_resort").notNull().default(false),
    createdAt: timestamp("created_at", { withTimezone: true }).notNull().defaultNow(),
  },
  (t) => [index("key_packages_device").on(t.deviceId, t.id), uniqueIndex("key_packages_last_resort").on(t.deviceId).where(sql`last_resort`)],
);

/**
 * Each account's MLS device list (crypto/mls/device-list.ts): signed by the
 * account's identity key, checked by the server at upload and by every client
 * that uses it. `version` only grows, so an older list cannot come back.
 */
export const deviceLists = pgTable("device_lists", {
  userId: integer("user_id")
    .primaryKey()
    .references(() => users.id, { onDelete: "cascade" }),
  version: bigint("version", { mode: "number" }).notNull(),
  data: bytea("data").notNull(),
  updatedAt: timestamp("updated_at", { withTimezone: true }).notNull().defaultNow(),
});

/**
 * A conversation's MLS group as the server orders it: the epoch its next
 * commit must be made from. One commit per epoch is stored (under the
 * conversation's row lock); a commit for any other epoch is refused.
 */
export const mlsGroups = pgTable("mls_groups", {
  conversationId: integer("conversation_id")
    .primaryKey()
    .references(() => conversations.id, { onDelete: "cascade" }),
  epoch: bigint("epoch", { mode: "number" }).notNull(),
  /** The MLS group id of the conversation's group now (its commits' clear header): a reset makes a new group, and what was for the old one is stale. */
  groupId: bytea("group_id"),
  updatedAt: timestamp("updated_at", { withTimezone: true }).notNull().defaultNow(),
});

/**
 * The opt-in history backup (client/mls/history-backup.ts): batches of a
 * user's messages sealed under a key only their password gives, so that a new
 * device can read what forward secrecy would otherwise keep from it.
 */
export const historyBackups = pgTable(
  "history_backups",
  {
    id: bigserial("id", { mode: "number" }).primaryKey(),
    userId: integer("user_id")
      .notNull()
      .references(() => users.id, { onDelete: "cascade" }),
    data: bytea("data").notNull(),
    createdAt: timestamp("created_at", { withTimezone: true }).notNull().defaultNow(),
  },
  (t) => [index("history_backups_user").on(t.userId, t.id)],
);
