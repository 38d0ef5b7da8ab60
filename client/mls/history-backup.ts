/**
 * The opt-in history backup (off by default): the messages this device keeps
 * go, in sealed batches, to the server, under a key derived from the account's
 * wrapping key; a new device of the account, at its first login, reads them
 * back into its store, and so can show what forward secrecy would keep from it.
 * The trade-off: whoever gets the password (and the server's data) reads the
 * backed-up history, which MLS alone would have protected.
 */
import { historyKey, openHistory, sealHistory } from "../../crypto/history-backup.ts";
import type { StoredMessage } from "../store";
import type { Call } from "./account";
import type { KeyValues } from "./local";

/** Messages per batch, and how long the first of a batch waits for others. */
const BATCH = 50;
const BATCH_MS = 2_000;
/** Well under the server's 256 KiB a batch. */
const MAX_BATCH_BYTES = 192 * 1024;

export interface BackupDeps {
  user: string;
  kv: KeyValues;
  call: Call;
  keep(m: StoredMessage): void;
}

export class HistoryBackup {
  private pending: StoredMessage[] = [];
  private timer?: Timer;
  private uploading: Promise<void> = Promise.resolve();

  constructor(private readonly deps: BackupDeps) {}

  get enabled(): boolean {
    return this.deps.kv.get("history.backup") === "on" || process.env.CHATTERBOX_HISTORY_BACKUP === "on";
  }

  set(on: boolean): void {
    this.deps.kv.set("history.backup", on ? "on" : undefined);
  }

  /** A password login gives the wrapping key: the backup's key is derived from it and kept. */
  passwordLogin(wrapKey: Uint8Array): void {
    this.deps.kv.set("history.key", Buffer.from(historyKey(wrapKey)).toString("base64"));
  }

  private key(): Uint8Array | undefined {
    const k = this.deps.kv.get("history.key");
    return k ? new Uint8Array(Buffer.from(k, "base64")) : undefined;
  }

  /** A message this device kept (received, or its own): into the next batch, when the backup is on. */
  kept(m: StoredMessage): void {
    if (!this.enabled || !this.key()) return;
    const { id, conv, seq, from, to, group, kind, at, cmid, text, file, verified, problem, code } = m;
    this.pending.push({ id, conv, seq, from, to, ...(group !== undefined ? { group } : {}), kind, at, cmid, text, ...(file ? { file } : {}), verified, ...(problem ? { problem } : {}), ...(code ? { code } : {}) });
    if (this.pending.length >= BATCH) void this.flush().catch(() => {});
    else this.timer ??= setTimeout(() => void this.flush().catch(() => {}), BATCH_MS);
  }

  /** Seals and uploads what is pending (what fails is kept for the next flush). */
  flush(): Promise<void> {
    clearTimeout(this.timer);
    this.timer = undefined;
    const key = this.key();
    if (!key || this.pending.length === 0) return this.uploading;
    const items = this.pending;
    this.pending = [];
    this.uploading = this.uploading.then(async () => {
      for (const batch of batches(items)) {
        try {
          await this.deps.call("history.backup.put", { data: sealHistory(key, this.deps.user, batch) });
        } catch (error) {
          this.pending.unshift(...batch);
          throw error;
        }
      }
    });
    return this.uploading;
  }

  /** At a device's first login: everything backed up, into its store (what it already holds stays). Returns how many. */
  async restore(): Promise<number> {
    const key = this.key();
    if (!key || this.deps.kv.get("history.restored") !== undefined) return 0;
    let after = 0;
    let count = 0;
    for (;;) {
      const { batches: page } = (await this.deps.call("history.backup.get", { after })) as { batches: { id: number; data: Uint8Array }[] };
      if (page.length === 0) break;
      for (const b of page) {
        for (const item of openHistory(key, this.deps.user, new Uint8Array(b.data))) {
          if (isStored(item)) {
            this.deps.keep(item);
            count++;
          }
        }
        after = b.id;
      }
    }
    this.deps.kv.set("history.restored", String(after));
    return count;
  }
}

function batches(items: StoredMessage[]): StoredMessage[][] {
  const out: StoredMessage[][] = [];
  let current: StoredMessage[] = [];
  let bytes = 0;
  for (const m of items) {
    const size = 200 + m.text.length * 3 + (m.file?.length ?? 0);
    if (current.length > 0 && bytes + size > MAX_BATCH_BYTES) {
      out.push(current);
      current = [];
      bytes = 0;
    }
    current.push(m);
    bytes += size;
  }
  if (current.length > 0) out.push(current);
  return out;
}

/** What came out of a batch is the account's own, but still checked for shape before it goes into the store. */
function isStored(v: unknown): v is StoredMessage {
  const m = v as StoredMessage;
  return (
    !!m &&
    typeof m.id === "number" &&
    typeof m.conv === "number" &&
    typeof m.seq === "number" &&
    typeof m.from === "string" &&
    typeof m.to === "string" &&
    (m.kind === "chat" || m.kind === "system") &&
    typeof m.at === "number" &&
    typeof m.cmid === "string" &&
    typeof m.text === "string" &&
    typeof m.verified === "boolean"
  );
}
