/**
 * The chat server role: accepts clients and peers on one port, authenticates,
 * stores every message before it acknowledges it, and delivers. This file only
 * wires the parts together: the listener and its request table, the store, the
 * committer, the sessions, delivery, the peer links and the balancer announcer.
 */
import { randomUUID } from "node:crypto";
import { announce } from "../balancer/announcer";
import { migrate, openDatabase, type Database } from "../db/connect";
import { listen } from "../net/listener";
import { assertLimits } from "../protocol/limits";
import { Limits } from "../server/limits";
import { PLAINTEXT, publicServerTls, withPublicRoots } from "../net/tls";
import { clusterIdentity } from "../server/cluster-identity";
import { isNonce, nonce } from "../server/peer-proof";
import { ChatError } from "../protocol/errors";
import { Acks } from "../server/acks";
import { Committer } from "../server/committer";
import { COMMITTER_SETTINGS } from "../server/append";
import { DEFAULT_CONFIG, type ClientState, type Conn, type ServerConfig } from "../server/context";
import { Delivery } from "../server/delivery";
import type { DeviceSession } from "../server/device-store";
import { Directory } from "../server/directory";
import { peerAuth, peerEvent, type PeerEventDeps } from "../server/peer-events";
import { Peers } from "../server/peers";
import { routes } from "../server/requests";
import { KeyPackageStore } from "../server/keypackage-store";
import { MlsStore } from "../server/mls-store";
import { Sessions } from "../server/sessions";
import { Store } from "../server/store";
import { GroupStore } from "../server/group-store";
import { FileStore } from "../server/file-store";
import { DeviceStore } from "../server/device-store";
import { CursorStore } from "../server/cursor-store";
import { Receipts } from "../server/receipts";
import { MeteredStore } from "../server/metered-store";
import { atTurnEnd } from "../net/outbox";
import { ServerMetrics } from "../server/metrics";
import { serverInfo } from "../server/info";
import { Reads } from "../server/reads";
import type { Log } from "./logger";
import { VERSION } from "./version";

export interface ServerOptions {
  port: number;
  hostname?: string;
  databaseUrl: string;
  /** HOST:PORT of the balancer to register with; none for a server reached directly. */
  balancer?: string;
  config?: Partial<ServerConfig>;
  /** A streaming replica of the database, for history, fetch and file downloads (server/reads.ts). */
  readDatabaseUrl?: string;
  /** Given by the caller when its log lines must carry the id from the start. */
  id?: string;
  /** More names for its certificate than `hostname` (--tls-names): those clients and peers dial. */
  tlsNames?: string[];
  /** An operator's certificate from a public CA (--tls-cert, --tls-key), presented instead of the cluster's own. */
  publicTls?: { certFile: string; keyFile: string };
  /** Every hop in plaintext (--insecure-plaintext): only for measuring what TLS costs. */
  insecurePlaintext?: boolean;
  log?: Log;
}

export interface ChatServer {
  id: string;
  port: number;
  addr: string;
  connections(): number;
  /** Frames forwarded to peers so far, and the peer frames they went in (a turn's forwards share one: server/peer-batch.ts). */
  peerForwards(): { frames: number; items: number };
  /** How often the MLS epoch gate read a conversation's epoch from the database (a cold or uncertain cache). */
  mlsEpochReads(): number;
  /** Its Prometheus metrics, for an admin endpoint to serve. */
  metrics: ServerMetrics;
  stop(): Promise<void>;
}

export async function startServer(options: ServerOptions): Promise<ChatServer> {
  const log: Log = options.log ?? ((line: string) => console.error(line));
  const config = { ...DEFAULT_CONFIG, ...options.config };
  // Sizes that contradict each other (a group too big to send in) refuse to start, naming them.
  assertLimits(config);
  // Live delivery may have missed connected users while the database was away (server/flow.ts):
  // set below, once delivery and the sessions exist; a recovery before that has no one to catch up.
  let afterOutage = (): void => {};
  const database: Database = openDatabase(options.databaseUrl, {
    max: 16,
    onReplace: (why) => log(`database connections replaced: ${why}`),
    onRecovered: () => afterOutage(),
  });
  await migrate(database);
  const store = new Store(database.sql);
  const replica = options.readDatabaseUrl ? openDatabase(options.readDatabaseUrl, { max: 8 }) : undefined;
  // The group commit has connections of its own: one per batch in flight.
  const commits = openDatabase(options.databaseUrl, { max: config.commitBatches, settings: COMMITTER_SETTINGS, onReplace: (why) => log(`committer connection replaced: ${why}`) });
  const saltSecret = await store.clusterSecret("salt_secret");
  const id = options.id ?? randomUUID();
  const hostname = options.hostname ?? "127.0.0.1";
  // A certificate of its own under the cluster CA, for the name clients and peers reach it by.
  const identity = await clusterIdentity(database.sql, [hostname, ...(options.tlsNames ?? [])]);
  const plaintext = options.insecurePlaintext === true;
  const listenTls = options.publicTls ? publicServerTls(options.publicTls.certFile, options.publicTls.keyFile, identity.tls) : identity.tls;
  // Its own cluster certificate when it calls others; with public certificates in the cluster, their roots are trusted too.
  const memberCa = options.publicTls ? withPublicRoots(identity.tls.caPem) : identity.tls.caPem;
  const memberTls = plaintext ? PLAINTEXT : { caPem: memberCa, certPem: identity.tls.certPem, keyPem: identity.tls.keyPem };

  const directory = new Directory(store, config.cacheEntries);
  const open = new Set<Conn>();
  // Levels are read when scraped, which is after startServer has returned: every part below exists by then.
  const metrics = new ServerMetrics({
    connections: () => open.size,
    sessions: () => sessions.count,
    outboxBytes: () => [...open].reduce((sum, conn) => sum + conn.outbox.queued, 0),
    peerLinks: () => peers.linkCount,
    commitQueue: () => committer.depth,
  });
  const devices = new DeviceStore(database.sql, config.maxDevices);
  const cursors = new CursorStore(database.sql);
  const delivery = new Delivery({ serverId: id, devices, store, config, log }, metrics, config.cacheEntries);
  const peers = new Peers(
    {
      serverId: id,
      store,
      liveWithinMs: config.liveWithinMs,
      log,
      gone: (server) => delivery.forgetServer(server),
      // Taken for gone by the others for a while: what they did not deliver live is read back from the database.
      late: (gapMs) => {
        log(`heartbeat ${gapMs} ms after the last: catching every connection up from the database`, { level: "warn", gapMs });
        afterOutage();
      },
    },
    identity.secret,
    memberTls,
  );
  const sessions = new Sessions({
    serverId: id,
    devices,
    log,
    located(userId, here) {
      delivery.located(userId, id, here);
      peers.broadcast("located", { user: userId, server: id, here });
    },
  });
  // The one cycle, closed here: delivery sends through the sessions and the peer links, and both tell it where users are.
  delivery.connect({ sessions, peers });
  afterOutage = () => delivery.flow.afterOutage(() => sessions.all());
  const receipts = new Receipts({ cursors, send: (users, frame) => delivery.send(users, frame), sendEncoded: (users, bytes) => delivery.sendEncoded(users, bytes), log, maxEntries: config.cacheEntries });
  const acks = new Acks(cursors, (delivered, read) => receipts.moved(delivered, read), { log });
  const files = new FileStore(database.sql, { quotaBytes: config.storageQuotaBytes, maxUploads: config.maxConcurrentUploads });
  const committer = new Committer(new MeteredStore(commits.sql, metrics), {
    inFlight: config.commitBatches,
    gapMs: config.commitGapMs,
    onError: (e) => log(`commit failed: ${e}`, { level: "error", code: (e as ChatError).code ?? "E_UNAVAILABLE" }),
    // A failed batch may have left its connection stuck (db/pool.ts): the next one gets a fresh one.
    recover: () => commits.pool.replace("a batch failed"),
    stages: metrics,
    atTurnEnd,
  });
  /** Makes a connection whose login ChatDB recorded live here (or undoes the record if it closed meanwhile). */
  async function live(conn: Conn, session: DeviceSession): Promise<void> {
    // The connection closed while its login was recorded: the record goes too.
    if (conn.closed) {
      await devices.end({ serverId: id, connId: conn.id }, session.deviceId);
      throw new ChatError("E_CLOSED", "The connection closed during the login");
    }
    sessions.add(conn, session);
  }
  // The peers linked to this server (their events arrive on these): while one is missing or one came or went,
  // an MLS commit stored there may not have been announced here, and the epoch gate reads the database.
  const peerConns = new Set<Conn>();
  const mls = new MlsStore(database.sql, {
    announce: (conv, seq, { epoch, groupId }) => peers.broadcast("mls.epoch", { conv, seq, epoch, ...(groupId ? { groupId } : {}) }),
    // Against every live server it knows of, not its open links: two servers that fail to link each other both have none.
    linked: () => peerConns.size >= (peers.knownCount ?? Infinity),
  });
  const requests = routes(
    {
      id,
      saltSecret,
      config,
      store,
      devices,
      cursors,
      groups: new GroupStore(database.sql, config.maxGroupMembers),
      files,
      keyPackages: new KeyPackageStore(database.sql),
      mls,
      reads: new Reads({ store, files: new FileStore(database.sql), sql: database.sql }, replica?.sql, metrics),
      limits: new Limits(config, { queued: () => committer.depth }),
      committer,
      sessions,
      delivery,
      peers,
      receipts,
      live,
      log,
    },
    directory,
    acks,
  );

  const fromPeers: PeerEventDeps = { delivery, sessions, receipts, epochs: mls.epochs, log };

  const listener = listen<ClientState>({
    port: options.port,
    hostname,
    outboxLimit: config.outboxLimit,
    outboxTotalLimit: config.outboxTotalLimit,
    maxFrame: config.maxFrame,
    strangerMaxFrame: config.strangerMaxFrame,
    maxInFlight: config.maxInFlight,
    maxConnections: config.maxConnections,
    maxPerAddress: config.maxConnectionsPerAddress,
    recorder: {
      refused(code, op, req) {
        metrics.refused(code);
        log(`${op} refused`, { level: "debug", code, op, req });
      },
    },
    tls: plaintext ? PLAINTEXT : listenTls,
    initialState: () => ({ role: "unknown", authenticating: false }),
    routes: {
      ...requests,
      "server.info": serverInfo({ id, version: VERSION, connections: () => open.size, sessions: () => sessions.count, peerLinks: () => peers.linkCount }),
      "peer.auth": peerAuth(peers, (conn) => {
        peerConns.add(conn);
        mls.epochs.forget();
      }),
    },
    onOpen(conn) {
      open.add(conn);
      const deadline = () => {
        if (conn.state.user || conn.state.role === "peer") return;
        // A login waiting its turn for a hash (server/limits.ts) is not idle: look again once it is answered.
        if (conn.state.authenticating || conn.state.hashing) {
          conn.state.loginTimer = setTimeout(deadline, 250);
          return;
        }
        conn.bye("E_LOGIN_TIMEOUT", `No login within ${config.loginTimeoutMs / 1000} s`);
      };
      conn.state.loginTimer = setTimeout(deadline, config.loginTimeoutMs);
    },
    hello(conn, req) {
      if (req.role !== "peer") return { server: id, role: "server", version: VERSION };
      // A peer shows a certificate under the cluster CA (mutual TLS), then proves it knows the cluster
      // secret with peer.auth; this server proves itself now. Both proofs cover both ids and both nonces.
      if (!plaintext && !conn.clusterCertificate) throw new ChatError("E_AUTH", "A peer must show a certificate under the cluster CA");
      if (typeof req.server !== "string" || req.server.length > 128 || !isNonce(req.nonce)) {
        throw new ChatError("E_BAD_REQUEST", "A peer's hello names its server id and a 32-byte nonce");
      }
      const mine = nonce();
      const { proof, expect } = peers.accept({ caller: req.server, callee: id, callerNonce: req.nonce, calleeNonce: mine });
      conn.state.peerId = req.server;
      // What peer.auth must bring back: the connect proof over this very handshake.
      conn.state.peerChallenge = expect;
      // deliveries: 1, this server takes a turn's forwards batched in one `deliveries` event (PROTOCOL.md).
      return { server: id, role: "server", nonce: mine, proof, deliveries: 1 };
    },
    onEvent(conn, ev, frame) {
      if (conn.state.role !== "peer") return;
      peerEvent(fromPeers, conn, ev, frame);
    },
    onClose(conn) {
      open.delete(conn);
      if (peerConns.delete(conn)) mls.epochs.forget();
      clearTimeout(conn.state.loginTimer);
      // What the device received and this server still holds is written now: its next login, anywhere, replays past it.
      if (conn.state.device) acks.release(conn.state.device.id);
      void sessions.end(conn);
    },
    onError(_conn, op, error, req) {
      const detail = (error as { detail?: string }).detail;
      log(`${op} failed: ${(error as Error).stack ?? error}${detail ? `\n  detail: ${detail}` : ""}`, { level: "error", code: "E_INTERNAL", op, req });
    },
  });

  const addr = `${hostname}:${listener.port}`;
  await store.registerServer(id, addr);
  await store.pruneServers(24 * 3600_000);
  peers.start();
  // A crashed server leaves its connection rows behind; any server forgets them once it has been silent a while.
  const pruner = setInterval(() => void devices.pruneConnections(60_000).catch((e) => log(`prune connections: ${e}`)), 30_000);
  sessions.startAudit();
  // Every server sweeps; the deletes are idempotent, so it does not matter which gets there first.
  const janitor = setInterval(() => {
    files.clean(config.uploadTtlMs, config.fileRetentionMs).catch((e) => log(`file cleanup: ${e}`));
  }, Math.min(60_000, config.uploadTtlMs / 2));
  const announcer = options.balancer
    ? announce({ balancer: options.balancer, id, addr, load: () => sessions.count, secret: identity.secret, tls: memberTls, log })
    : undefined;
  log(`server ${id} listening on ${addr}`);

  let stopping: Promise<void> | undefined;
  return {
    id,
    port: listener.port,
    addr,
    connections: () => sessions.count,
    peerForwards: () => peers.forwarded,
    mlsEpochReads: () => mls.epochs.reads,
    metrics,
    stop() {
      stopping ??= (async () => {
        announcer?.stop();
        clearInterval(janitor);
        clearInterval(pruner);
        sessions.stop();
        listener.stop(false);
        // Bounded: a database that does not answer fails what is queued instead of holding shutdown.
        await committer.stop();
        await acks.close().catch((e) => log(`acks at shutdown: ${e}`));
        await receipts.flush();
        // After the last commits: their deliveries to users on other servers still go over the links.
        peers.stop();
        const { frames, items } = peers.forwarded;
        // The bench reads this line for the peer frames a forwarded message (PERFORMANCE.md, issue 15 round 4).
        log(`forwarded ${items} frames to peers in ${frames} peer frames`, { forwarded: items, peerFrames: frames });
        for (const conn of sessions.all()) conn.bye("E_SHUTDOWN", "The server is shutting down; reconnect to another");
        await store.removeServer(id).catch(() => {});
        listener.stop(true);
        await commits.close();
        await replica?.close();
        await database.close();
      })();
      return stopping;
    },
  };
}
