/** The strategies by name, as the command line and the balancer choose them. */
import { leastconn } from "./leastconn";
import { p2c } from "./p2c";
import { random } from "./random";
import { roundrobin } from "./roundrobin";
import type { Rng, Strategy } from "./strategy";

export type StrategyName = "roundrobin" | "leastconn" | "random" | "p2c";

/** Factories; the random ones take an optional rng (Math.random by default). */
export const strategies: Record<StrategyName, (rng?: Rng) => Strategy> = {
  roundrobin,
  leastconn,
  random,
  p2c,
};

export function isStrategyName(name: string): name is StrategyName {
  return Object.hasOwn(strategies, name);
}

export function makeStrategy(name: string, rng?: Rng): Strategy {
  if (!isStrategyName(name)) {
    throw new Error(`Unknown strategy "${name}"; choose one of: ${Object.keys(strategies).join(", ")}`);
  }
  return strategies[name](rng);
}
