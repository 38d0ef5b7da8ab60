/** Each strategy keeps its promise about how it spreads clients over servers. */
import { describe, expect, test } from "bun:test";
import { leastconn } from "../balancer/leastconn";
import { p2c } from "../balancer/p2c";
import { random } from "../balancer/random";
import { seeded } from "../balancer/rng";
import { roundrobin } from "../balancer/roundrobin";
import { makeStrategy, strategies } from "../balancer/strategies";
import type { LiveServer, Strategy } from "../balancer/strategy";

function servers(...loads: number[]): LiveServer[] {
  return loads.map((load, i) => ({ id: `s${i}`, addr: `127.0.0.1:${1000 + i}`, load, assigned: 0, lastSeen: 0 }));
}

/** Picks n times, counting assignments as the balancer does, and tallies picks per id. */
function tally(strategy: Strategy, list: LiveServer[], n: number): Record<string, number> {
  const counts: Record<string, number> = {};
  for (let i = 0; i < n; i++) {
    const s = strategy.pick(list)!;
    s.assigned++;
    counts[s.id] = (counts[s.id] ?? 0) + 1;
  }
  return counts;
}

test("roundrobin cycles through every server evenly", () => {
  const list = servers(50, 0, 7);
  const rr = roundrobin();
  expect([1, 2, 3, 4, 5, 6].map(() => rr.pick(list)!.id)).toEqual(["s0", "s1", "s2", "s0", "s1", "s2"]);
  expect(tally(roundrobin(), list, 300)).toEqual({ s0: 100, s1: 100, s2: 100 });
});

test("leastconn picks the lowest load + assigned", () => {
  const list = servers(5, 2, 9);
  expect(leastconn().pick(list)!.id).toBe("s1");
  list[1]!.assigned = 4; // 2 + 4 = 6 is now above s0's 5
  expect(leastconn().pick(list)!.id).toBe("s0");
});

test("leastconn spreads a burst between heartbeats instead of piling it on one server", () => {
  const list = servers(10, 0, 0);
  const counts = tally(leastconn(), list, 30);
  // The empty servers fill up to s0's 10 first, then all three share the rest: 40 over 3.
  expect(counts.s1! + counts.s2!).toBeGreaterThanOrEqual(20);
  const weights = list.map((s) => s.load + s.assigned).sort((a, b) => a - b);
  expect(weights).toEqual([13, 13, 14]);
});

test("leastconn breaks ties by rotation even without counting assignments", () => {
  const list = servers(3, 3, 3);
  const lc = leastconn();
  expect([1, 2, 3].map(() => lc.pick(list)!.id).sort()).toEqual(["s0", "s1", "s2"]);
});

test("random with a seeded rng is deterministic and reaches every server", () => {
  const list = servers(0, 0, 0, 0);
  const first = random(seeded(42));
  const second = random(seeded(42));
  const picksA = [...Array(50)].map(() => first.pick(list)!.id);
  const picksB = [...Array(50)].map(() => second.pick(list)!.id);
  expect(picksA).toEqual(picksB);
  expect(new Set(picksA).size).toBe(4);
  // An rng that returns its upper bound still picks a server.
  expect(random(() => 1).pick(list)!.id).toBe("s3");
});

test("p2c with a seeded rng is deterministic and compares two distinct servers", () => {
  const list = servers(4, 1, 8, 2);
  const picks = (seed: number) => {
    const s = p2c(seeded(seed));
    return [...Array(50)].map(() => s.pick(list)!.id);
  };
  expect(picks(3)).toEqual(picks(3));
  // The most loaded server is always the worse of any two, so it is never chosen.
  expect(picks(3)).not.toContain("s2");
  // rng draws 0 then 0: the second index skips over the first, so they differ.
  expect(p2c(() => 0).pick(servers(5, 1))!.id).toBe("s1");
});

test("p2c never picks the more loaded of two servers", () => {
  for (let seed = 0; seed < 200; seed++) {
    const low = seed % 7;
    const high = low + 1 + (seed % 3);
    const list = seed % 2 ? servers(low, high) : servers(high, low);
    const loser = seed % 2 ? "s1" : "s0";
    expect(p2c(seeded(seed)).pick(list)!.id).not.toBe(loser);
  }
  expect(p2c(seeded(1)).pick(servers(3))!.id).toBe("s0");
});

describe("every strategy", () => {
  for (const name of Object.keys(strategies)) {
    test(`${name} returns undefined on an empty list`, () => {
      expect(makeStrategy(name, seeded(1)).pick([])).toBeUndefined();
    });
  }
});

test("makeStrategy names the choices when given an unknown strategy", () => {
  expect(() => makeStrategy("fastest")).toThrow(/Unknown strategy "fastest".*roundrobin, leastconn, random, p2c/);
  expect(makeStrategy("p2c").name).toBe("p2c");
});
