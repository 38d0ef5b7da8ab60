/**
 * Long-running roles as processes: start, log where (JSON lines or pretty, on
 * stdout), serve metrics when asked, and stop cleanly on SIGINT or SIGTERM.
 */
import { randomUUID } from "node:crypto";
import type { Registry } from "prom-client";
import { openDatabase } from "../db/connect";
import { explainDatabaseError } from "../db/explain";
import { startRetention } from "../server/retention";
import { explainListenError } from "../net/listen-error";
import { serveMetrics, type MetricsEndpoint } from "../net/metrics-http";
import type { ServerConfig } from "../server/context";
import { createLogger, type Log, type LogFormat } from "./logger";
import { startServer } from "./server";
import { startBalancer } from "./balancer";
import { PLAINTEXT, publicServerTls } from "../net/tls";
import { clusterIdentityFrom } from "../server/cluster-identity";

export function onSignal(stop: (signal: NodeJS.Signals) => Promise<unknown> | unknown): void {
  let stopping = false;
  const handler = async (signal: NodeJS.Signals) => {
    if (stopping) return;
    stopping = true;
    await stop(signal);
    process.exit(0);
  };
  process.on("SIGINT", handler);
  process.on("SIGTERM", handler);
}

/** What every long-running role takes besides its own options. */
export interface Operations {
  /** HOST:PORT (or PORT, on loopback) for GET /metrics; none by default. */
  metrics?: string;
  logFormat?: LogFormat;
}

export async function runBalancer(
  options: {
    port: number;
    hostname: string;
    strategy: string;
    databaseUrl: string;
    tlsNames?: string[];
    publicTls?: { certFile: string; keyFile: string };
    insecurePlaintext?: boolean;
  } & Operations,
): Promise<void> {
  const log = createLogger({ role: "balancer", format: options.logFormat });
  // Its certificate and the cluster secret come from ChatDB, as a server's do (SECURITY.md).
  const identity = await clusterIdentityFrom(options.databaseUrl, [options.hostname, ...(options.tlsNames ?? [])]).catch((error) => {
    throw explainDatabaseError(error, options.databaseUrl);
  });
  const presented = options.publicTls ? publicServerTls(options.publicTls.certFile, options.publicTls.keyFile, identity.tls) : identity.tls;
  const tls = options.insecurePlaintext ? PLAINTEXT : presented;
  const balancer = await startBalancer({ ...options, identity: { tls, secret: identity.secret }, log }).catch((error) => {
    throw explainListenError(error, options.hostname, options.port, "the balancer");
  });
  const endpoint = await startMetrics(options.metrics, balancer.metrics.registry, log, () => balancer.stop());
  log(`balancer listening on ${options.hostname}:${balancer.port} (strategy ${options.strategy})`, { addr: `${options.hostname}:${balancer.port}` });
  log(
    tls === PLAINTEXT
      ? "WARNING: --insecure-plaintext: no TLS on any hop"
      : `cluster CA fingerprint ${identity.caFingerprint}${options.publicTls ? " (members only: clients check --tls-cert against the system roots)" : ""}`,
  );
  onSignal(() => {
    endpoint?.stop();
    balancer.stop();
  });
}

export async function runServer(
  options: {
    port: number;
    hostname: string;
    balancer: string;
    databaseUrl: string;
    readDatabaseUrl?: string;
    config?: Partial<ServerConfig>;
    retentionDays?: number;
    tlsNames?: string[];
    publicTls?: { certFile: string; keyFile: string };
    insecurePlaintext?: boolean;
  } & Operations,
): Promise<void> {
  const id = randomUUID();
  const log = createLogger({ role: "server", format: options.logFormat, bindings: { server: id } });
  const server = await startServer({ ...options, id, log }).catch((error) => {
    throw explainDatabaseError(explainListenError(error, options.hostname, options.port, "the chat server"), options.databaseUrl);
  });
  const endpoint = await startMetrics(options.metrics, server.metrics.registry, log, () => server.stop());
  // tests/support/cluster.ts and bench/system.ts read this line for the id and the address.
  log(`server ${server.id} listening on ${server.addr}, registered with ${options.balancer}`, { addr: server.addr });
  const retentionDb = options.retentionDays ? openDatabase(options.databaseUrl, { max: 1 }) : undefined;
  const retention = retentionDb ? startRetention({ sql: retentionDb.sql, days: options.retentionDays!, log }) : undefined;
  onSignal(async (signal) => {
    await retention?.stop();
    await retentionDb?.close();
    // The drain (roles/server.ts stop()): stop accepting and leave the balancer, finish the
    // commits in flight, tell the clients to reconnect elsewhere, leave the servers table.
    log(`${signal}: draining`, { signal });
    await server.stop();
    log("drained; exiting");
    endpoint?.stop();
  });
}

/** Serves the metrics, or stops the role and throws with a sentence when their address cannot be had. */
async function startMetrics(address: string | undefined, registry: Registry, log: Log, stopRole: () => unknown): Promise<MetricsEndpoint | undefined> {
  if (!address) return undefined;
  try {
    const endpoint = serveMetrics(address, registry);
    log(`metrics at http://${endpoint.addr}/metrics`, { metrics: endpoint.addr });
    return endpoint;
  } catch (error) {
    await stopRole();
    throw error;
  }
}
