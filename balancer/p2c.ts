/**
 * Power of two choices: two distinct servers at random, keep the less loaded.
 * Nearly as even as leastconn, but a burst between heartbeats does not all land
 * on the one server that looked emptiest.
 */
import { randomIndex, weight, type LiveServer, type Rng, type Strategy } from "./strategy";

export function p2c(rng: Rng = Math.random): Strategy {
  return {
    name: "p2c",
    pick(servers: readonly LiveServer[]) {
      const n = servers.length;
      if (n <= 1) return servers[0];
      const i = randomIndex(rng, n);
      // Draw from the n - 1 others and skip over i: distinct without retrying.
      let j = randomIndex(rng, n - 1);
      if (j >= i) j++;
      const a = servers[i]!;
      const b = servers[j]!;
      return weight(b) < weight(a) ? b : a;
    },
  };
}
