/**
 * The balancer role: knows the live chat servers and answers "where?" with one
 * of them, chosen by the strategy. Servers register and heartbeat over a held
 * connection; clients ask and leave. It carries no chat traffic and keeps no
 * state that outlives it: after a restart, servers register again by themselves.
 *
 * Only members may register, heartbeat or list: a member shows a certificate
 * under the cluster CA and proves it knows the cluster secret (balancer/member.ts).
 * Anyone else may only ask `where`, briefly, and a few connections at a time.
 */
import { timingSafeEqual } from "node:crypto";
import { Registry, DEFAULT_HEARTBEAT_TIMEOUT_MS } from "../balancer/registry";
import { makeStrategy } from "../balancer/strategies";
import type { LiveServer } from "../balancer/strategy";
import { parseAddress } from "../net/link";
import { listen, type Connection, type Route } from "../net/listener";
import { PLAINTEXT, type Plaintext, type ServerTls } from "../net/tls";
import { ChatError } from "../protocol/errors";
import { int, string } from "../protocol/validate";
import { BalancerMetrics } from "../balancer/metrics";
import { VERSION } from "./version";
import { BALANCER_ID, isNonce, nonce, proof } from "../server/peer-proof";

export interface BalancerOptions {
  /** 0 = any free port. */
  port: number;
  hostname?: string;
  strategy: string;
  /** A server silent for longer than this is out (default 3000 ms). */
  heartbeatTimeoutMs?: number;
  /** Its certificate (or plaintext, by name) and the cluster secret that members prove they know. */
  identity: { tls: ServerTls | Plaintext; secret: Uint8Array };
  /** Closes a connection that says no hello within this time (default 5 s), a client's after clientLifetimeMs (10 s). */
  helloTimeoutMs?: number;
  clientLifetimeMs?: number;
  /** Connections at once: overall (default 20000) and from one address (default 4096). */
  maxConnections?: number;
  maxPerAddress?: number;
  log?: (line: string) => void;
}

export interface Balancer {
  port: number;
  stop(): void;
  servers(): LiveServer[];
  metrics: BalancerMetrics;
}

type Role = "server" | "client";
interface State {
  role?: Role;
  /** The id a member said hello with, and the proof its auth must bring; member once it has. */
  claimed?: string;
  expect?: Uint8Array;
  member?: boolean;
  /** The id this connection registered, for heartbeats and removal on close. */
  serverId?: string;
}
type Conn = Connection<State>;

const MAX_LOAD = 1_000_000_000;

export async function startBalancer(opts: BalancerOptions): Promise<Balancer> {
  const log = opts.log ?? (() => {});
  const strategy = makeStrategy(opts.strategy);
  const timeoutMs = opts.heartbeatTimeoutMs ?? DEFAULT_HEARTBEAT_TIMEOUT_MS;
  const clientLifetimeMs = opts.clientLifetimeMs ?? 10_000;
  const registry = new Registry<Conn>(timeoutMs);
  let connections = 0;
  const metrics = new BalancerMetrics({
    servers: () => registry.list().length,
    load: () => registry.list().reduce((sum, s) => sum + s.load, 0),
    connections: () => connections,
  });

  const plaintext = opts.identity.tls === PLAINTEXT;
  const secret = opts.identity.secret;
  const serversOnly = (conn: Conn) =>
    conn.state.member ? undefined : new ChatError("E_AUTH", "Only cluster members register, heartbeat or list servers");
  const registered = (conn: Conn) =>
    serversOnly(conn) ?? (conn.state.serverId ? undefined : new ChatError("E_BAD_REQUEST", "Register before heartbeating"));

  const routes: Record<string, Route<State>> = {
    auth: {
      guard: (conn) => (conn.state.expect ? undefined : new ChatError("E_BAD_REQUEST", "auth follows a member's hello")),
      handle(conn, req) {
        const expected = conn.state.expect!;
        conn.state.expect = undefined;
        const given = req.proof;
        if (!(given instanceof Uint8Array) || given.length !== expected.length || !timingSafeEqual(given, expected)) {
          log(`refused a member from ${clean(conn.remote)}: wrong proof for ${clean(conn.state.claimed)}`);
          setTimeout(() => conn.bye("E_AUTH", "Not a member of this cluster"), 0);
          throw new ChatError("E_AUTH", "Not a member of this cluster");
        }
        conn.state.member = true;
        return {};
      },
    },
    register: {
      guard: serversOnly,
      handle(conn, req) {
        const id = string(req, "server", 128);
        // A member speaks for the id it proved, not for any other server's.
        if (id !== conn.state.claimed) throw new ChatError("E_AUTH", "Register under the id you said hello with");
        const addr = string(req, "addr", 300);
        parseAddress(addr);
        const load = int(req, "load", 0, MAX_LOAD);
        // One connection speaks for one server: drop what it registered before.
        if (conn.state.serverId && conn.state.serverId !== id) registry.remove(conn.state.serverId, conn);
        const previous = registry.register(id, addr, load, conn);
        conn.state.serverId = id;
        if (previous && previous.owner !== conn) {
          // Keep one connection per id, so the old one's close cannot remove the new entry's server.
          previous.owner.state.serverId = undefined;
          previous.owner.bye("E_SESSION_REPLACED", `Server ${id} registered again from another connection`);
        }
        log(`server ${clean(id)} at ${clean(addr)} registered (load ${load})${previous ? ", replacing its previous entry" : ""}`);
        return {};
      },
    },
    heartbeat: {
      guard: registered,
      handle(conn, req) {
        const load = int(req, "load", 0, MAX_LOAD);
        if (!registry.heartbeat(conn.state.serverId!, load, conn)) throw new ChatError("E_BAD_REQUEST", "Not registered; register again");
        return {};
      },
    },
    where: {
      handle() {
        const server = strategy.pick(registry.list());
        if (!server) throw new ChatError("E_NO_SERVER");
        registry.assign(server.id);
        metrics.assigned();
        return { server: server.addr };
      },
    },
    servers: {
      guard: serversOnly,
      handle: () => ({ servers: registry.list().map(({ id, addr, load }) => ({ id, addr, load })) }),
    },
  };

  const listener = listen<State>({
    port: opts.port,
    hostname: opts.hostname,
    routes,
    tls: opts.identity.tls,
    helloTimeoutMs: opts.helloTimeoutMs ?? 5000,
    maxConnections: opts.maxConnections ?? 20_000,
    maxPerAddress: opts.maxPerAddress ?? 4096,
    initialState: () => ({}),
    recorder: metrics,
    onOpen: () => void connections++,
    hello(conn, req) {
      if (req.role !== "server" && req.role !== "client") throw new ChatError("E_BAD_REQUEST", 'role: expected "server" or "client"');
      conn.state.role = req.role;
      if (req.role === "client") {
        // One question and gone: a client has no reason to hold a connection here.
        setTimeout(() => conn.bye("E_TIMEOUT", "A client connection to the balancer lasts a few seconds"), clientLifetimeMs).unref();
        return { role: "balancer", strategy: strategy.name, version: VERSION };
      }
      if (!plaintext && !conn.clusterCertificate) {
        log(`refused a server from ${clean(conn.remote)}: no certificate under the cluster CA`);
        throw new ChatError("E_AUTH", "A server must show a certificate under the cluster CA");
      }
      if (typeof req.server !== "string" || req.server.length > 128 || !isNonce(req.nonce)) {
        throw new ChatError("E_BAD_REQUEST", "A member's hello names its id and a 32-byte nonce");
      }
      const mine = nonce();
      const h = { caller: req.server, callee: BALANCER_ID, callerNonce: req.nonce, calleeNonce: mine };
      conn.state.claimed = req.server;
      conn.state.expect = proof(secret, "connect", h);
      return { role: "balancer", strategy: strategy.name, version: VERSION, nonce: mine, proof: proof(secret, "accept", h) };
    },
    onClose(conn) {
      connections--;
      const id = conn.state.serverId;
      if (id && registry.remove(id, conn)) log(`server ${clean(id)} left (connection closed)`);
    },
    onError: (_conn, op, error) => log(`error in ${op}: ${(error as Error)?.stack ?? error}`),
  });

  // Check twice per timeout at least, so a silent server is out within ~1.5 timeouts.
  const sweep = setInterval(() => {
    for (const entry of registry.expire()) {
      log(`server ${clean(entry.id)} expired (no heartbeat for ${timeoutMs} ms)`);
      // Closing makes its announcer reconnect and register afresh, if it is still alive.
      entry.owner.state.serverId = undefined;
      entry.owner.bye("E_TIMEOUT", `No heartbeat within ${timeoutMs} ms`);
    }
  }, Math.min(500, Math.max(50, timeoutMs / 2)));

  log(`balancer listening on ${listener.hostname}:${listener.port} (strategy ${strategy.name})`);
  return {
    port: listener.port,
    stop() {
      clearInterval(sweep);
      listener.stop(true);
    },
    servers: () => registry.list().map(({ owner: _, ...server }) => server),
    metrics,
  };
}

/** What a caller said, fit for a log line: printable ASCII only, and short. */
function clean(text: string | undefined): string {
  const printable = JSON.stringify(String(text ?? "")).slice(1, -1).replace(/[^\x20-\x7e]/g, "?");
  return printable.length > 80 ? `${printable.slice(0, 80)}...` : printable;
}
