/**
 * The device's local store: one SQLite database (bun:sqlite, WAL) under
 * CHATTERBOX_HOME/<user>/store.db, readable by the user alone, that several
 * processes of one user share safely (a `chat` open while a script runs
 * `send`). It holds the device's identity and resume token, how far each
 * conversation was received and read, the outbox, the pinned contact keys,
 * the replay memory, and a copy of every message this device has received,
 * with full-text search over their text.
 */
import { Database } from "bun:sqlite";
import { chmodSync, existsSync, readFileSync, renameSync } from "node:fs";
import { hostname } from "node:os";
import { join } from "node:path";
import { identityFromPrivate, type IdentityKeys, type PublicIdentity } from "../crypto/keys";
import { userDir } from "./state";

export interface StoredMessage {
  id: number;
  conv: number;
  seq: number;
  from: string;
  to: string;
  group?: string;
  kind: "chat" | "system";
  at: number;
  cmid: string;
  text: string;
  file?: string;
  verified: boolean;
  problem?: string;
  code?: string;
}

export interface Pin extends PublicIdentity {
  since: string;
}

export interface OutboxEntry {
  cmid: string;
  /** "dm:NAME" or "group:NAME" */
  target: string;
  /** The content, as the session encodes it (plaintext: this file is the user's alone). */
  content: Uint8Array;
  createdAt: number;
}

const SCHEMA = `
  create table if not exists kv (k text primary key, v blob);
  create table if not exists convs (conv integer primary key, received integer not null default 0, read integer not null default 0);
  create table if not exists messages (
    conv integer not null, seq integer not null, id integer not null, sender text not null, recipient text not null,
    grp text, kind text not null, at real not null, cmid text not null, text text not null, file text,
    verified integer not null, problem text, code text, primary key (conv, seq));
  create virtual table if not exists messages_fts using fts5(text, content='messages', content_rowid='rowid');
  create trigger if not exists messages_fts_insert after insert on messages begin
    insert into messages_fts(rowid, text) values (new.rowid, new.text);
  end;
  create table if not exists outbox (
    n integer primary key autoincrement, cmid text not null unique, target text not null, content blob not null,
    created_at real not null, lease_pid integer, lease_until real);
  create table if not exists pins (name text primary key, dh blob not null, sign blob not null, since text not null);
  create table if not exists seen (k text primary key, id integer not null);
`;

/** How long a process may hold an outbox entry before another process of the user takes it over. */
const LEASE_MS = 60_000;

export class LocalStore {
  readonly db: Database;

  constructor(
    readonly user: string,
    persist = true,
  ) {
    const file = persist ? join(userDir(user), "store.db") : ":memory:";
    const fresh = persist && !existsSync(file);
    this.db = new Database(file, { create: true });
    if (persist) chmodSync(file, 0o600);
    // Another process of this user may be writing (or making the file): wait for it rather than fail.
    this.db.exec("pragma busy_timeout = 10000");
    this.db.exec("pragma journal_mode = wal");
    this.db.exec("pragma synchronous = normal");
    this.db.exec(SCHEMA);
    if (fresh) this.importJsonState(userDir(user));
  }

  close(): void {
    this.release();
    this.db.close();
  }

  // --- small values ---

  get(key: string): string | undefined {
    const row = this.db.query("select v from kv where k = ?").get(key) as { v: unknown } | null;
    return row ? String(row.v) : undefined;
  }

  set(key: string, value: string | undefined): void {
    if (value === undefined) this.db.query("delete from kv where k = ?").run(key);
    else this.db.query("insert into kv (k, v) values (?, ?) on conflict (k) do update set v = excluded.v").run(key, value);
  }

  /** This device's id and name, made at its first login. */
  device(name?: string): { id: string; name: string } {
    const id = this.get("device.id") ?? this.claim("device.id", Buffer.from(crypto.getRandomValues(new Uint8Array(16))).toString("base64url"));
    if (name) this.set("device.name", name);
    return { id, name: this.get("device.name") ?? hostname() };
  }

  identity(): IdentityKeys | undefined {
    const dh = this.get("identity.dh");
    const sign = this.get("identity.sign");
    if (!dh || !sign) return undefined;
    return identityFromPrivate(new Uint8Array(Buffer.from(dh, "base64")), new Uint8Array(Buffer.from(sign, "base64")));
  }

  saveIdentity(keys: IdentityKeys): void {
    this.db.transaction(() => {
      this.set("identity.dh", Buffer.from(keys.dhPrivate).toString("base64"));
      this.set("identity.sign", Buffer.from(keys.signPrivate).toString("base64"));
    })();
  }

  // --- positions ---

  positions(): Map<number, { received: number; read: number }> {
    const rows = this.db.query("select conv, received, read from convs").all() as { conv: number; received: number; read: number }[];
    return new Map(rows.map((r) => [r.conv, { received: r.received, read: r.read }]));
  }

  /** The read marker of one conversation as this device knows it (0 before any). */
  readOf(conv: number): number {
    return (this.db.query("select read from convs where conv = ?").get(conv) as { read: number } | null)?.read ?? 0;
  }

  received(conv: number, seq: number): void {
    this.db.query("insert into convs (conv, received) values (?1, ?2) on conflict (conv) do update set received = max(received, ?2)").run(conv, seq);
  }

  read(conv: number, seq: number): void {
    this.db.query("insert into convs (conv, read) values (?1, ?2) on conflict (conv) do update set read = max(read, ?2)").run(conv, seq);
  }

  // --- history ---

  /** Keeps a message this device received (or sent); a second copy changes nothing. */
  keep(m: StoredMessage): void {
    this.db
      .query(
        `insert into messages (conv, seq, id, sender, recipient, grp, kind, at, cmid, text, file, verified, problem, code)
         values (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) on conflict do nothing`,
      )
      .run(m.conv, m.seq, m.id, m.from, m.to, m.group ?? null, m.kind, m.at, m.cmid, m.text, m.file ?? null, m.verified ? 1 : 0, m.problem ?? null, m.code ?? null);
  }

  /** Messages from others past the read marker, oldest first in each conversation. */
  unread(me: string): StoredMessage[] {
    const rows = this.db
      .query(
        `select m.* from messages m left join convs c on c.conv = m.conv
         where m.seq > coalesce(c.read, 0) and m.sender <> ? order by m.conv, m.seq`,
      )
      .all(me) as Row[];
    return rows.map(fromRow);
  }

  history(conv: number, before: number, limit: number): StoredMessage[] {
    const rows = this.db.query("select * from messages where conv = ? and seq < ? order by seq desc limit ?").all(conv, before, limit) as Row[];
    return rows.map(fromRow).reverse();
  }

  /** Full-text search over what this device holds, newest first. */
  search(text: string, limit = 50): StoredMessage[] {
    const query = text
      .split(/\s+/)
      .filter(Boolean)
      .map((w) => `"${w.replace(/"/g, '""')}"`)
      .join(" ");
    if (!query) return [];
    const rows = this.db
      .query("select m.* from messages_fts f join messages m on m.rowid = f.rowid where messages_fts match ? order by m.at desc limit ?")
      .all(query, limit) as Row[];
    return rows.map(fromRow);
  }

  // --- outbox ---

  enqueue(entry: OutboxEntry): void {
    this.db
      .query("insert into outbox (cmid, target, content, created_at, lease_pid, lease_until) values (?, ?, ?, ?, ?, ?) on conflict (cmid) do nothing")
      .run(entry.cmid, entry.target, entry.content, entry.createdAt, process.pid, Date.now() + LEASE_MS);
  }

  /** Renews this process's hold on its entries. */
  renew(cmids: string[]): void {
    const until = Date.now() + LEASE_MS;
    const q = this.db.query("update outbox set lease_until = ? where cmid = ? and lease_pid = ?");
    this.db.transaction(() => cmids.forEach((c) => q.run(until, c, process.pid)))();
  }

  /**
   * Entries whose process is gone (it exited or crashed, or its lease ran
   * out), taken over by this one, oldest first.
   */
  orphans(): OutboxEntry[] {
    return this.db.transaction(() => {
      const rows = (
        this.db.query("select cmid, target, content, created_at, lease_pid, lease_until from outbox where lease_pid is not ? order by n").all(process.pid) as {
          cmid: string;
          target: string;
          content: Uint8Array;
          created_at: number;
          lease_pid: number | null;
          lease_until: number | null;
        }[]
      ).filter((r) => r.lease_pid === null || !alive(r.lease_pid) || (r.lease_until ?? 0) < Date.now());
      const take = this.db.query("update outbox set lease_pid = ?, lease_until = ? where cmid = ?");
      for (const r of rows) take.run(process.pid, Date.now() + LEASE_MS, r.cmid);
      return rows.map((r) => ({ cmid: r.cmid, target: r.target, content: new Uint8Array(r.content), createdAt: r.created_at }));
    })();
  }

  /** Leaving: what this process still holds is anyone's to send. */
  release(): void {
    this.db.query("update outbox set lease_pid = null where lease_pid = ?").run(process.pid);
  }

  sent(cmid: string): void {
    this.db.query("delete from outbox where cmid = ?").run(cmid);
  }

  pendingCount(): number {
    return (this.db.query("select count(*) as n from outbox").get() as { n: number }).n;
  }

  // --- pins ---

  pin(name: string): Pin | undefined {
    const row = this.db.query("select dh, sign, since from pins where name = ?").get(name) as { dh: Uint8Array; sign: Uint8Array; since: string } | null;
    return row ? { dh: new Uint8Array(row.dh), sign: new Uint8Array(row.sign), since: row.since } : undefined;
  }

  setPin(name: string, pin: Pin): void {
    this.db.query("insert into pins (name, dh, sign, since) values (?, ?, ?, ?) on conflict (name) do update set dh = excluded.dh, sign = excluded.sign, since = excluded.since").run(name, pin.dh, pin.sign, pin.since);
  }

  allPins(): Map<string, Pin> {
    const rows = this.db.query("select name, dh, sign, since from pins").all() as { name: string; dh: Uint8Array; sign: Uint8Array; since: string }[];
    return new Map(rows.map((r) => [r.name, { dh: new Uint8Array(r.dh), sign: new Uint8Array(r.sign), since: r.since }]));
  }

  // --- replay memory ---

  seenId(key: string): number | undefined {
    return (this.db.query("select id from seen where k = ?").get(key) as { id: number } | null)?.id;
  }

  remember(key: string, id: number): void {
    this.db.query("insert into seen (k, id) values (?, ?) on conflict do nothing").run(key, id);
  }

  /** A value only the first process to ask sets; every other gets that one. */
  private claim(key: string, value: string): string {
    this.db.query("insert into kv (k, v) values (?, ?) on conflict do nothing").run(key, value);
    return this.get(key)!;
  }

  /** A home from before the local store: its JSON files come in once, and are kept as *.imported. */
  private importJsonState(dir: string): void {
    const read = (name: string) => {
      const file = join(dir, name);
      if (!existsSync(file)) return undefined;
      try {
        const value = JSON.parse(readFileSync(file, "utf8"));
        renameSync(file, `${file}.imported`);
        return value;
      } catch {
        return undefined;
      }
    };
    const keys = read("keys.json");
    if (keys?.dh && keys?.sign) this.saveIdentity(identityFromPrivate(new Uint8Array(Buffer.from(keys.dh, "base64")), new Uint8Array(Buffer.from(keys.sign, "base64"))));
    const contacts = read("contacts.json") as Record<string, { dh: string; sign: string; since: string }> | undefined;
    for (const [name, p] of Object.entries(contacts ?? {})) {
      this.setPin(name, { dh: new Uint8Array(Buffer.from(p.dh, "base64")), sign: new Uint8Array(Buffer.from(p.sign, "base64")), since: p.since });
    }
    const state = read("state.json") as { shown?: Record<string, number>; seen?: [string, number][] } | undefined;
    for (const [conv, seq] of Object.entries(state?.shown ?? {})) this.received(Number(conv), seq);
    for (const [k, id] of state?.seen ?? []) this.remember(k, id);
  }
}

/** Whether a process of this machine is still running (the store is on the user's own disk). */
function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === "EPERM";
  }
}

type Row = {
  conv: number;
  seq: number;
  id: number;
  sender: string;
  recipient: string;
  grp: string | null;
  kind: "chat" | "system";
  at: number;
  cmid: string;
  text: string;
  file: string | null;
  verified: number;
  problem: string | null;
  code: string | null;
};

function fromRow(r: Row): StoredMessage {
  return {
    id: r.id,
    conv: r.conv,
    seq: r.seq,
    from: r.sender,
    to: r.recipient,
    ...(r.grp !== null ? { group: r.grp } : {}),
    kind: r.kind,
    at: r.at,
    cmid: r.cmid,
    text: r.text,
    ...(r.file !== null ? { file: r.file } : {}),
    verified: r.verified === 1,
    ...(r.problem !== null ? { problem: r.problem } : {}),
    ...(r.code !== null ? { code: r.code } : {}),
  };
}
