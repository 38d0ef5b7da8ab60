/**
 * Long-running roles as processes: start, print where, and stop cleanly on
 * SIGINT or SIGTERM.
 */
import type { ServerConfig } from "../server/context";
import { startServer } from "./server";
import { startBalancer } from "./balancer";
import { PLAINTEXT, publicServerTls } from "../net/tls";
import { clusterIdentityFrom } from "../server/cluster-identity";

export function onSignal(stop: () => Promise<unknown> | unknown): void {
  let stopping = false;
  const handler = async () => {
    if (stopping) return;
    stopping = true;
    await stop();
    process.exit(0);
  };
  process.on("SIGINT", handler);
  process.on("SIGTERM", handler);
}

export async function runBalancer(options: {
  port: number;
  hostname: string;
  strategy: string;
  databaseUrl: string;
  tlsNames?: string[];
  publicTls?: { certFile: string; keyFile: string };
  insecurePlaintext?: boolean;
}): Promise<void> {
  // Its certificate and the cluster secret come from ChatDB, as a server's do (SECURITY.md).
  const identity = await clusterIdentityFrom(options.databaseUrl, [options.hostname, ...(options.tlsNames ?? [])]);
  const presented = options.publicTls ? publicServerTls(options.publicTls.certFile, options.publicTls.keyFile, identity.tls) : identity.tls;
  const tls = options.insecurePlaintext ? PLAINTEXT : presented;
  const balancer = await startBalancer({ ...options, identity: { tls, secret: identity.secret }, log: (l) => console.error(l) });
  console.log(`balancer listening on ${options.hostname}:${balancer.port} (strategy ${options.strategy})`);
  console.log(
    tls === PLAINTEXT
      ? "WARNING: --insecure-plaintext: no TLS on any hop"
      : `cluster CA fingerprint ${identity.caFingerprint}${options.publicTls ? " (members only: clients check --tls-cert against the system roots)" : ""}`,
  );
  onSignal(() => balancer.stop());
}

export async function runServer(options: { port: number; hostname: string; balancer: string; databaseUrl: string; config?: Partial<ServerConfig>; tlsNames?: string[]; publicTls?: { certFile: string; keyFile: string }; insecurePlaintext?: boolean }): Promise<void> {
  const server = await startServer({ ...options, log: (l) => console.error(l) });
  console.log(`server ${server.id} listening on ${server.addr}, registered with ${options.balancer}`);
  onSignal(() => server.stop());
}
