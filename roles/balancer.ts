/**
 * The balancer role: knows the live chat servers and answers "where?" with one
 * of them, chosen by the strategy. Servers register and heartbeat over a held
 * connection; clients ask and leave. It carries no chat traffic and keeps no
 * state that outlives it: after a restart, servers register again by themselves.
 */
import { Registry, DEFAULT_HEARTBEAT_TIMEOUT_MS } from "../balancer/registry";
import { makeStrategy } from "../balancer/strategies";
import type { LiveServer } from "../balancer/strategy";
import { parseAddress } from "../net/link";
import { listen, type Connection, type Route } from "../net/listener";
import { ChatError } from "../protocol/errors";
import { int, string } from "../protocol/validate";
import { BalancerMetrics } from "../balancer/metrics";
import { VERSION } from "./version";

export interface BalancerOptions {
  /** 0 = any free port. */
  port: number;
  hostname?: string;
  strategy: string;
  /** A server silent for longer than this is out (default 3000 ms). */
  heartbeatTimeoutMs?: number;
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
  /** The id this connection registered, for heartbeats and removal on close. */
  serverId?: string;
}
type Conn = Connection<State>;

const MAX_LOAD = 1_000_000_000;

export async function startBalancer(opts: BalancerOptions): Promise<Balancer> {
  const log = opts.log ?? (() => {});
  const strategy = makeStrategy(opts.strategy);
  const timeoutMs = opts.heartbeatTimeoutMs ?? DEFAULT_HEARTBEAT_TIMEOUT_MS;
  const registry = new Registry<Conn>(timeoutMs);
  let connections = 0;
  const metrics = new BalancerMetrics({
    servers: () => registry.list().length,
    load: () => registry.list().reduce((sum, s) => sum + s.load, 0),
    connections: () => connections,
  });

  const serversOnly = (conn: Conn) =>
    conn.state.role === "server" ? undefined : new ChatError("E_BAD_REQUEST", "Only servers register and heartbeat");
  const registered = (conn: Conn) =>
    serversOnly(conn) ?? (conn.state.serverId ? undefined : new ChatError("E_BAD_REQUEST", "Register before heartbeating"));

  const routes: Record<string, Route<State>> = {
    register: {
      guard: serversOnly,
      handle(conn, req) {
        const id = string(req, "server", 128);
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
        log(`server ${id} at ${addr} registered (load ${load})${previous ? ", replacing its previous entry" : ""}`);
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
      handle: () => ({ servers: registry.list().map(({ id, addr, load }) => ({ id, addr, load })) }),
    },
  };

  const listener = listen<State>({
    port: opts.port,
    hostname: opts.hostname,
    routes,
    initialState: () => ({}),
    recorder: metrics,
    onOpen: () => void connections++,
    hello(conn, req) {
      if (req.role !== "server" && req.role !== "client") throw new ChatError("E_BAD_REQUEST", 'role: expected "server" or "client"');
      conn.state.role = req.role;
      return { role: "balancer", strategy: strategy.name, version: VERSION };
    },
    onClose(conn) {
      connections--;
      const id = conn.state.serverId;
      if (id && registry.remove(id, conn)) log(`server ${id} left (connection closed)`);
    },
    onError: (_conn, op, error) => log(`error in ${op}: ${(error as Error)?.stack ?? error}`),
  });

  // Check twice per timeout at least, so a silent server is out within ~1.5 timeouts.
  const sweep = setInterval(() => {
    for (const entry of registry.expire()) {
      log(`server ${entry.id} expired (no heartbeat for ${timeoutMs} ms)`);
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
