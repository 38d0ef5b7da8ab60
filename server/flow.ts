/**
 * Flow control towards one client connection, without cutting it off. Every
 * message is stored before it is delivered, so a live message that cannot go
 * out now (the connection is replaying its backlog, or its outbox is filling
 * up on a slow link) is dropped and read back from the database once there is
 * room. Per connection we remember the highest sequence number sent in each
 * conversation, and where each conversation fell behind; the catch-up sends
 * what is missing, in order, as fast as the client reads.
 */
import { encodeMessageEvent } from "../protocol/message-frame";
import type { WireMessage } from "../protocol/messages";
import type { Conn } from "./context";

/** What the catch-up reads: the messages of one conversation after a sequence number. */
export interface BacklogReader {
  after(userId: number, convId: number, afterSeq: number, limit: number): Promise<WireMessage[]>;
  /** A device's backlog past its cursors, page by page (bounded in bytes). */
  pending(userId: number, deviceId: number, from: { conv: number; seq: number }): Promise<WireMessage[]>;
}

/** After a database outage, every connection is caught up from the database this long after it is back (and again later). */
const RESYNC_AFTER_MS = [5_000, 15_000];
/** Connections caught up at once after an outage. */
const RESYNC_CONCURRENCY = 8;

interface Behind {
  /** Read the conversation again after this sequence number. */
  after: number;
  /** Counts drops, so that one that came while the catch-up was reading is not forgotten. */
  drops: number;
}

/** Kept on the connection's own state (ClientState.flow): read for every live message, so no map is looked up. */
export interface ConnFlow {
  sent: Map<number, number>;
  behind: Map<number, Behind>;
  /** From login until the replay is done: live messages are left to the replay's catch-up. */
  replaying: boolean;
  catching?: Promise<void>;
}

const CATCH_UP_PAGE = 500;

export class Flow {
  /** Catch-ups from the database scheduled and not yet run (afterOutage). */
  private resyncsDue = 0;

  constructor(
    private readonly reader: () => BacklogReader,
    private readonly outboxLimit: () => number,
    private readonly log: (line: string) => void = () => {},
  ) {}

  private of(conn: Conn): ConnFlow {
    return (conn.state.flow ??= { sent: new Map(), behind: new Map(), replaying: false });
  }

  /** A login is under way: live messages wait (in the database) for the replay. */
  startReplay(conn: Conn): void {
    this.of(conn).replaying = true;
  }

  /** A live message: sent now if the connection keeps up, else left in the database for the catch-up. */
  live(conn: Conn, message: Pick<WireMessage, "conv" | "seq">, bytes: Uint8Array): void {
    const flow = this.of(conn);
    // Logged in but not yet synced counts as replaying: the replay will read it anyway.
    const replaying = flow.replaying || conn.state.held !== undefined;
    const room = conn.outbox.queued + bytes.length <= this.outboxLimit() / 2;
    if (!replaying && !flow.behind.has(message.conv) && room) {
      if (message.seq > (flow.sent.get(message.conv) ?? 0)) flow.sent.set(message.conv, message.seq);
      conn.sendEncoded(bytes);
      return;
    }
    const behind = flow.behind.get(message.conv);
    const after = Math.min(message.seq - 1, flow.sent.get(message.conv) ?? message.seq - 1);
    if (behind) {
      behind.after = Math.min(behind.after, after);
      behind.drops++;
    } else {
      flow.behind.set(message.conv, { after, drops: 1 });
    }
    if (!replaying) void this.catchUp(conn);
  }

  /**
   * Sends one replayed message, after waiting for room in the outbox: a page
   * of any size then goes out at the pace of the link. False if the
   * connection closed, or it was sent already.
   */
  async send(conn: Conn, m: WireMessage): Promise<boolean> {
    await this.room(conn);
    if (conn.closed) return false;
    const flow = this.of(conn);
    if (m.seq <= (flow.sent.get(m.conv) ?? 0)) return false;
    flow.sent.set(m.conv, m.seq);
    conn.sendEncoded(encodeMessageEvent(m));
    return true;
  }

  /**
   * Sends every message past the device's cursors, page by page, each only
   * once the outbox has room, skipping what this connection was sent already.
   * Live messages that come meanwhile are left to the catch-up that follows.
   */
  async replay(conn: Conn): Promise<number> {
    const userId = conn.state.user!.id;
    const deviceId = conn.state.device!.id;
    this.startReplay(conn);
    let count = 0;
    let from = { conv: 0, seq: 0 };
    try {
      for (;;) {
        const page = await this.reader().pending(userId, deviceId, from);
        for (const m of page) {
          if (await this.send(conn, m)) count++;
          if (conn.closed) return count;
        }
        if (page.length === 0) break;
        const last = page[page.length - 1]!;
        from = { conv: last.conv, seq: last.seq };
      }
    } finally {
      conn.state.held = undefined;
      conn.state.heldBytes = 0;
      await this.endReplay(conn, userId);
    }
    return count;
  }

  /**
   * The database is back after an outage. Live delivery may have missed
   * connected users meanwhile, for reasons no one sees: every server's
   * heartbeat looks stale just after the database returns, so a sender's
   * server takes recipients for offline, or a peer link is dropped and made
   * again. Nothing later in the conversation may come to reveal the gap, so
   * each connection here is caught up from the database (what it was sent
   * already is skipped), a few seconds after, when heartbeats are fresh again.
   * The same after a stall of this server long enough for the others to take it
   * for gone (server/peers.ts `late`).
   */
  afterOutage(connections: () => Iterable<Conn>): void {
    // One set at a time: a server past its cores may miss heartbeats again and again, and the catch-ups
    // already due cover what was missed until they run (each reads from the database what was not sent).
    if (this.resyncsDue > 0) return;
    for (const delay of RESYNC_AFTER_MS) {
      this.resyncsDue++;
      setTimeout(() => {
        this.resyncsDue--;
        void this.resync([...connections()]).catch((error) => this.log(`resync after an outage: ${error}`));
      }, delay).unref();
    }
  }

  private async resync(conns: Conn[]): Promise<void> {
    const ready = conns.filter((conn) => conn.state.user && conn.state.device && !conn.closed && conn.state.held === undefined && !this.of(conn).replaying);
    let sent = 0;
    let next = 0;
    const worker = async () => {
      while (next < ready.length) {
        const conn = ready[next++]!;
        if (!conn.closed && !this.of(conn).replaying) sent += await this.replay(conn);
      }
    };
    await Promise.all(Array.from({ length: RESYNC_CONCURRENCY }, worker));
    if (sent > 0) this.log(`after a database outage: ${sent} messages that live delivery missed sent to ${ready.length} connections`);
  }

  /** The replay is done: live messages flow again, after what they missed meanwhile. */
  async endReplay(conn: Conn, userId: number): Promise<void> {
    this.of(conn).replaying = false;
    await this.catchUp(conn, userId);
  }

  /** Sends, from the database, what was dropped for this connection; one catch-up at a time. */
  catchUp(conn: Conn, userId = conn.state.user?.id): Promise<void> {
    const flow = this.of(conn);
    if (flow.catching || userId === undefined) return flow.catching ?? Promise.resolve();
    flow.catching = (async () => {
      while (flow.behind.size > 0 && !conn.closed) {
        const [conv, behind] = flow.behind.entries().next().value!;
        const drops = behind.drops;
        const page = await this.reader().after(userId, conv, behind.after, CATCH_UP_PAGE);
        for (const m of page) if (!(await this.send(conn, m)) && conn.closed) return;
        if (page.length > 0) behind.after = page[page.length - 1]!.seq;
        else if (behind.drops === drops) flow.behind.delete(conv);
      }
    })()
      .catch((error) => {
        // The database is away: try again in a moment (and at the next drop).
        this.log(`catch-up: ${error}`);
        setTimeout(() => void this.catchUp(conn, userId), 1_000);
      })
      .finally(() => (flow.catching = undefined));
    return flow.catching;
  }

  /** Waits until the outbox is below a quarter of its limit. */
  private async room(conn: Conn): Promise<void> {
    const low = this.outboxLimit() / 4;
    while (!conn.closed && conn.outbox.queued > low) await Bun.sleep(2);
  }
}
