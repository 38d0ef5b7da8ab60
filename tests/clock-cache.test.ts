/**
 * The servers' bounded caches (server/clock-cache.ts): never past their bound,
 * one entry out for each new one past it (never the whole cache at once), and
 * what is in use stays.
 */
import { expect, test } from "bun:test";
import { ClockCache } from "../server/clock-cache";

test("a full cache lets one entry go for each new one, and never holds more than its bound", () => {
  const cache = new ClockCache<number, string>(100);
  for (let i = 0; i < 100; i++) cache.set(i, `v${i}`);
  for (let i = 100; i < 1000; i++) {
    const before = cache.size;
    cache.set(i, `v${i}`);
    expect(cache.size).toBe(before);
    expect(cache.get(i)).toBe(`v${i}`);
  }
  expect(cache.size).toBe(100);
  // Everything left is among the most recent: the oldest went first.
  expect([...cache.entries()].map(([k]) => k).every((k) => k >= 800)).toBe(true);
});

test("entries in use survive a stream of new ones; those not used go", () => {
  const cache = new ClockCache<number, number>(50);
  for (let i = 0; i < 50; i++) cache.set(i, i);
  const hot = [3, 17, 42];
  for (let i = 1000; i < 3000; i++) {
    for (const k of hot) expect(cache.get(k)).toBe(k);
    cache.set(i, i);
  }
  for (const k of hot) expect(cache.peek(k)).toBe(k);
  expect(cache.get(5)).toBeUndefined();
  expect(cache.size).toBe(50);
});

test("peek does not count as a use", () => {
  const cache = new ClockCache<string, number>(2);
  cache.set("a", 1);
  cache.set("b", 2);
  expect(cache.peek("a")).toBe(1);
  cache.set("c", 3);
  expect(cache.peek("a")).toBeUndefined();
  expect(cache.get("b")).toBe(2);
  expect(cache.get("c")).toBe(3);
});

test("delete keeps the cache whole: the rest stay findable and the bound holds", () => {
  const cache = new ClockCache<number, number>(10);
  for (let i = 0; i < 10; i++) cache.set(i, i * 10);
  expect(cache.delete(0)).toBe(true);
  expect(cache.delete(9)).toBe(true);
  expect(cache.delete(9)).toBe(false);
  expect(cache.size).toBe(8);
  for (let i = 1; i < 9; i++) expect(cache.get(i)).toBe(i * 10);
  for (let i = 100; i < 130; i++) cache.set(i, i);
  expect(cache.size).toBe(10);
  expect(new Set([...cache.entries()].map(([k]) => k)).size).toBe(10);
  for (const [k, v] of cache.entries()) expect(cache.peek(k)).toBe(v);
});

test("a bound below one entry is refused", () => {
  expect(() => new ClockCache(0)).toThrow(RangeError);
});
