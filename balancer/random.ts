/** Random: any live server, uniformly. Stateless, so it needs no coordination. */
import { randomIndex, type LiveServer, type Rng, type Strategy } from "./strategy";

export function random(rng: Rng = Math.random): Strategy {
  return {
    name: "random",
    pick(servers: readonly LiveServer[]) {
      return servers.length === 0 ? undefined : servers[randomIndex(rng, servers.length)];
    },
  };
}
