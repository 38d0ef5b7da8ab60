/**
 * Round robin: each pick takes the next server in the list. The counter survives
 * servers joining and leaving, so the rotation stays even over time.
 */
import type { LiveServer, Strategy } from "./strategy";

export function roundrobin(): Strategy {
  let next = 0;
  return {
    name: "roundrobin",
    pick(servers: readonly LiveServer[]) {
      if (servers.length === 0) return undefined;
      const server = servers[next % servers.length];
      next = (next + 1) % Number.MAX_SAFE_INTEGER;
      return server;
    },
  };
}
