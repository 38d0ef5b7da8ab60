/**
 * The send allowance under load (server/limits.ts): while the server is behind,
 * those who have spent most of their burst wait, and someone sending at a
 * person's pace does not; and how the server knows it is behind (server/loop-lag.ts).
 */
import { expect, test } from "bun:test";
import { ChatError } from "../protocol/errors";
import { DEFAULT_CONFIG } from "../server/context";
import { BUSY_RETRY_MS, Limits } from "../server/limits";
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
  const limits = new Limits(config, () => false);
  for (let i = 0; i < 10; i++) expect(refusal(() => limits.send(1))).toBeUndefined();
  expect(refusal(() => limits.send(1))).toMatchObject({ code: "E_RATE_LIMITED" });
});

test("while the server is behind, a user past half their burst waits, one sending little does not, and the refused message costs nothing", () => {
  let busy = false;
  const limits = new Limits(config, () => busy);
  for (let i = 0; i < 6; i++) limits.send(1);
  limits.send(2);
  busy = true;
  const heavy = refusal(() => limits.send(1));
  expect(heavy).toMatchObject({ code: "E_RATE_LIMITED", retryAfterMs: BUSY_RETRY_MS });
  expect(refusal(() => limits.send(2))).toBeUndefined();
  // Once the server has caught up, the heavy user has the rest of the burst: the refusal took none of it.
  busy = false;
  for (let i = 0; i < 4; i++) expect(refusal(() => limits.send(1))).toBeUndefined();
  expect(refusal(() => limits.send(1))).toMatchObject({ code: "E_RATE_LIMITED" });
});

test("with no send limit configured, nobody is held back even when the server is behind", () => {
  const limits = new Limits({ ...config, sendsPerSecond: 0 }, () => true);
  for (let i = 0; i < 100; i++) expect(refusal(() => limits.send(1))).toBeUndefined();
});

test("a loop blocked for longer than the limit reads as busy", async () => {
  const lag = new LoopLag(30, 10);
  try {
    await Bun.sleep(30);
    const until = performance.now() + 120;
    while (performance.now() < until) {} // the loop is blocked
    await Bun.sleep(15);
    expect(lag.busy).toBe(true);
  } finally {
    lag.stop();
  }
});
