/**
 * The admin address where Prometheus scrapes a role's metrics: GET /metrics on
 * a small HTTP listener apart from the chat port, on loopback unless the
 * operator names another host. Adds the process's own CPU, memory and
 * event-loop lag to the registry it serves.
 */
import { collectDefaultMetrics, type Registry } from "prom-client";
import { ChatError } from "../protocol/errors";
import { explainListenError } from "./listen-error";

export interface MetricsEndpoint {
  /** HOST:PORT it listens on, with the real port when 0 was asked for. */
  addr: string;
  stop(): void;
}

/** "HOST:PORT", or a bare "PORT" meaning loopback. Port 0 takes any free port. */
export function parseMetricsAddress(value: string): { host: string; port: number } {
  const at = value.lastIndexOf(":");
  const host = at < 0 ? "127.0.0.1" : value.slice(0, at).replace(/^\[(.*)\]$/, "$1");
  const port = Number(at < 0 ? value : value.slice(at + 1));
  if (!host || !Number.isInteger(port) || port < 0 || port > 65535) {
    throw new ChatError("E_BAD_REQUEST", `--metrics takes HOST:PORT or PORT, got "${value}"`);
  }
  return { host, port };
}

/** prom-client's per-heap-space gauges, which cost a walk of the heap on every scrape. */
export const HEAP_SPACE_METRICS = ["nodejs_heap_space_size_total_bytes", "nodejs_heap_space_size_used_bytes", "nodejs_heap_space_size_available_bytes"];

export function serveMetrics(address: string, registry: Registry): MetricsEndpoint {
  const { host, port } = parseMetricsAddress(address);
  // Process CPU and memory, and the event-loop lag (sampled every 10 ms by perf_hooks).
  collectDefaultMetrics({ register: registry, prefix: "chatterbox_", eventLoopMonitoringPrecision: 10 });
  // Under Bun, v8.getHeapSpaceStatistics() walks the whole heap: with a busy
  // server's heap one scrape held the event loop ~250 ms (every chat on the
  // server waited), against under 1 ms without it. The heap's total and used
  // sizes stay (chatterbox_nodejs_heap_size_*, from process.memoryUsage()).
  for (const name of HEAP_SPACE_METRICS) registry.removeSingleMetric(`chatterbox_${name}`);
  let server: ReturnType<typeof Bun.serve>;
  try {
    server = Bun.serve({
      hostname: host,
      port,
      async fetch(request) {
        if (new URL(request.url).pathname !== "/metrics") return new Response("Not found: metrics are at /metrics\n", { status: 404 });
        return new Response(await registry.metrics(), { headers: { "content-type": registry.contentType } });
      },
    });
  } catch (error) {
    throw explainListenError(error, host, port, "the metrics address");
  }
  const shown = host.includes(":") ? `[${host}]` : host;
  return { addr: `${shown}:${server.port}`, stop: () => server.stop(true) };
}
