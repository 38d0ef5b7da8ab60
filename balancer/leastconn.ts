/**
 * Least connections: the server with the lowest load + assigned. Ties rotate, so
 * equally loaded servers share a burst even before the role counts assignments.
 */
import { weight, type LiveServer, type Strategy } from "./strategy";

export function leastconn(): Strategy {
  let turn = 0;
  return {
    name: "leastconn",
    pick(servers: readonly LiveServer[]) {
      let best = Infinity;
      let ties: LiveServer[] = [];
      for (const server of servers) {
        const w = weight(server);
        if (w < best) {
          best = w;
          ties = [server];
        } else if (w === best) {
          ties.push(server);
        }
      }
      if (ties.length === 0) return undefined;
      return ties[turn++ % ties.length];
    },
  };
}
