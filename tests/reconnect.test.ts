/**
 * Staying connected (client/reconnect.ts), with a connection whose attempts
 * each test scripts: the first connection waits out a moment without servers
 * and no longer; a lost link is tried again until it is up, and a refusal
 * that retrying cannot fix ends the session. Real servers going away:
 * tests/faults-*.test.ts and tests/sessions.test.ts.
 */
import { expect, test } from "bun:test";
import { Reconnector, type ReconnectParts } from "../client/reconnect";
import { ChatError } from "../protocol/errors";

function reconnector(attempt: (n: number) => void, over: Partial<ReconnectParts> = {}) {
  let connected = false;
  let attempts = 0;
  let gaveUp = false;
  const statuses: string[] = [];
  const ended: ChatError[] = [];
  const r = new Reconnector({
    async connect() {
      attempt(++attempts);
      connected = true;
    },
    connected: () => connected,
    leaving: () => gaveUp || ended.length > 0,
    giveUp: () => (gaveUp = true),
    end: (e) => ended.push(e),
    options: { waitMs: 1_500, onStatus: (line) => statuses.push(line) },
    ...over,
  });
  return { r, statuses, ended, attempts: () => attempts, drop: () => (connected = false), connected: () => connected };
}

test("the first connection tries again while the servers are away for a moment, and says so once", async () => {
  const { r, statuses, attempts } = reconnector((n) => {
    if (n < 3) throw new ChatError("E_NO_SERVER", "No chat server is available");
  });
  await r.start();
  expect(attempts()).toBe(3);
  expect(statuses).toHaveLength(1);
  expect(statuses[0]).toStartWith("No chat server is available; trying again for up to");
});

test("the first connection gives up with the error once waitMs has passed without a server, and at once on a refusal", async () => {
  const away = reconnector(() => {
    throw new ChatError("E_NO_SERVER");
  });
  expect((await away.r.start().catch((e) => e)).code).toBe("E_NO_SERVER");
  expect(away.attempts()).toBeGreaterThan(1);
  const refused = reconnector(() => {
    throw new ChatError("E_AUTH");
  });
  expect((await refused.r.start().catch((e) => e)).code).toBe("E_AUTH");
  expect(refused.attempts()).toBe(1);
});

test("a lost link is tried again until it is up; a refusal that retrying cannot fix ends the session instead", async () => {
  const back = reconnector((n) => {
    if (n === 2) throw new ChatError("E_UNAVAILABLE");
  });
  await back.r.start();
  back.drop();
  back.r.lost();
  // Asked again while a loop runs: still one loop.
  back.r.lost();
  while (!back.connected()) await Bun.sleep(20);
  expect(back.attempts()).toBe(3);
  expect(back.statuses).toEqual(["connection lost; reconnecting", "reconnected"]);

  const revoked = reconnector((n) => {
    if (n > 1) throw new ChatError("E_DEVICE_REVOKED");
  });
  await revoked.r.start();
  revoked.drop();
  revoked.r.lost();
  while (revoked.ended.length === 0) await Bun.sleep(20);
  expect(revoked.ended.map((e) => e.code)).toEqual(["E_DEVICE_REVOKED"]);
  expect(revoked.connected()).toBe(false);
});
