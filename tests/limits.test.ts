/**
 * The send allowances (server/limits.ts): per user, per source address, and
 * how a refusal by the server-wide admission (server/admission.ts) leaves the
 * allowance untouched; and how the server knows its loop is late (server/loop-lag.ts).
 */
import { expect, test } from "bun:test";
import { ChatError } from "../protocol/errors";
import { DEFAULT_CONFIG } from "../server/context";
import { Buckets, Limits } from "../server/limits";
import { LoopLag } from "../server/loop-lag";

const config = { ...DEFAULT_CONFIG, sendBurst: 10, sendsPerSecond: 0.001 };
const refusal = (f: () => void) => {
  try {
    f();
    return undefined;
  } catch (error) {
    return error as ChatError;
  }
};

test("while the server keeps up, a user spends the whole burst, and then waits for the rate", () => {
  const limits = new Limits(config, { lagMs: () => 0 });
  for (let i = 0; i < 10; i++) expect(refusal(() => limits.send(1))).toBeUndefined();
  expect(refusal(() => limits.send(1))).toMatchObject({ code: "E_RATE_LIMITED" });
});

test("a message refused by the server-wide admission takes nothing from the user's allowance", () => {
  let wait = 0;
  const limits = new Limits(config, { admission: { admit: () => wait, admitRead: () => 0, committed() {} } });
  for (let i = 0; i < 6; i++) limits.send(1);
  wait = 700;
  expect(refusal(() => limits.send(1))).toMatchObject({ code: "E_RATE_LIMITED", retryAfterMs: 700 });
  wait = 0;
  for (let i = 0; i < 4; i++) expect(refusal(() => limits.send(1))).toBeUndefined();
  expect(refusal(() => limits.send(1))).toMatchObject({ code: "E_RATE_LIMITED" });
});

test("with no send limit configured, nobody is held back, even by the admission", () => {
  const limits = new Limits({ ...config, sendsPerSecond: 0 }, { admission: { admit: () => 1000, admitRead: () => 1000, committed() {} } });
  for (let i = 0; i < 100; i++) expect(refusal(() => limits.send(1))).toBeUndefined();
});

test("many users from one address share the address's allowance, and loopback is exempt unless asked for", () => {
  const perAddress = { ...config, sendBurst: 100, sendBurstPerAddress: 5, sendsPerSecondPerAddress: 0.001, admissionLagMs: 0, admissionQueue: 0 };
  const limits = new Limits(perAddress, { lagMs: () => 0 });
  for (let user = 1; user <= 5; user++) expect(refusal(() => limits.send(user, "203.0.113.7"))).toBeUndefined();
  expect(refusal(() => limits.send(6, "203.0.113.7"))).toMatchObject({ code: "E_RATE_LIMITED" });
  // Another address has its own; loopback is not counted.
  expect(refusal(() => limits.send(6, "198.51.100.1"))).toBeUndefined();
  for (let user = 1; user <= 10; user++) expect(refusal(() => limits.send(user, "127.0.0.1"))).toBeUndefined();
  const strict = new Limits({ ...perAddress, sendLimitLoopback: true }, { lagMs: () => 0 });
  for (let user = 1; user <= 5; user++) strict.send(user, "::1");
  expect(refusal(() => strict.send(6, "::1"))).toMatchObject({ code: "E_RATE_LIMITED" });
});

test("a loop blocked for longer than the limit reads as that late", async () => {
  const lag = new LoopLag(10);
  try {
    await Bun.sleep(30);
    const until = performance.now() + 120;
    while (performance.now() < until) {} // the loop is blocked
    await Bun.sleep(15);
    expect(lag.lagMs).toBeGreaterThan(30);
  } finally {
    lag.stop();
  }
});

test("a refused send holds its connection at once, for the retry-after it names", () => {
  const limits = new Limits({ ...config, sendBurst: 1 }, { lagMs: () => 0 });
  const holds: number[] = [];
  const conn = { hold: (ms: number) => holds.push(ms) };
  limits.send(1, "127.0.0.1", conn);
  expect(holds).toEqual([]);
  const refused = refusal(() => limits.send(1, "127.0.0.1", conn));
  expect(refused).toMatchObject({ code: "E_RATE_LIMITED" });
  expect(holds).toEqual([refused!.retryAfterMs!]);
});

test("a user new to the server has the first burst at once and earns the rest of the burst at the rate", () => {
  let now = 0;
  const buckets = new Buckets<number>(500, 10, 100, () => now, 50);
  let sent = 0;
  while (buckets.take(1) === 0) sent++;
  expect(sent).toBe(50);
  // 45 s later the whole burst is there, and no more.
  now += 60_000;
  sent = 0;
  while (buckets.take(1) === 0) sent++;
  expect(sent).toBe(500);
  // A session started earns from its start, before its first send.
  buckets.start(2);
  now += 10_000;
  expect(buckets.level(2)).toBe(150);
});
