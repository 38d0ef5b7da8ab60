/**
 * Long-running roles as processes: start, print where, and stop cleanly on
 * SIGINT or SIGTERM.
 */
import type { ServerConfig } from "../server/context";
import { startServer } from "./server";
import { startBalancer } from "./balancer";

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

export async function runBalancer(options: { port: number; hostname: string; strategy: string }): Promise<void> {
  const balancer = await startBalancer({ ...options, log: (l) => console.error(l) });
  console.log(`balancer listening on ${options.hostname}:${balancer.port} (strategy ${options.strategy})`);
  onSignal(() => balancer.stop());
}

export async function runServer(options: { port: number; hostname: string; balancer: string; databaseUrl: string; config?: Partial<ServerConfig> }): Promise<void> {
  const server = await startServer({ ...options, log: (l) => console.error(l) });
  console.log(`server ${server.id} listening on ${server.addr}, registered with ${options.balancer}`);
  onSignal(() => server.stop());
}
