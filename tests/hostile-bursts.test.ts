/**
 * What a fresh account, or a heavy reader under pressure, can take at once
 * (issue 14, round 4). Each attack runs in its own process
 * (tests/support/hostile-client.ts) against a real server; each test asserts
 * the refusal code and that a neighbour pair on the same server keeps chatting.
 */
import { expect, test } from "bun:test";
import { connectUser, PASSWORD } from "./support/cluster";
import { hostileWorld } from "./support/hostile-world";
import { DEFAULT_CONFIG } from "../server/context";

/**
 * The default send allowance (500 at once once earned, 50 for a new session,
 * then 10 a second); one read slot server-wide, so that a pipelining reader
 * fills the server's read slots by itself and that is the pressure. Reads go
 * through the admission here (`--admission-reads yes`; off by default).
 */
const CONFIG = { maxConcurrentReads: 1, admissionReads: true };

const world = hostileWorld(CONFIG, ["mallory", "reader", "carol"]);
const { neighboursKeepChatting, attack } = world;

test("a session new to the server sends its first burst, not the whole 500: the rest is earned at the rate, and the neighbours keep chatting", async () => {
  const pipelined = 120;
  const result = await attack("sends", ["mallory", PASSWORD, String(pipelined)], { HOSTILE_TO: "alice" });
  expect(result.codes.E_RATE_LIMITED).toBeGreaterThan(0);
  expect(result.retryAfterMs).toBeGreaterThan(0);
  // With the whole burst at once (the old rule) all 120 passed; now the first burst and what 10 a second earned meanwhile.
  expect(result.codes.ok).toBeLessThan(pipelined);
  expect(result.codes.ok).toBeGreaterThanOrEqual(DEFAULT_CONFIG.sendFirstBurst);
  await neighboursKeepChatting();
}, 60_000);

test("while the server's read slots are all taken, a user pipelining history pages is refused with a retry-after, and a light reader's page passes", async () => {
  const result = await attack("pipeline", ["reader", PASSWORD, "200"], { HOSTILE_OP: "history", HOSTILE_ARGS: JSON.stringify({ with: "alice", limit: 1000 }) });
  expect(result.codes.ok).toBeGreaterThan(0);
  expect(result.codes.E_RATE_LIMITED).toBeGreaterThan(0);
  expect(result.retryAfterMs).toBeGreaterThan(0);
  // A person's screen of history: one page, never refused.
  const light = await attack("pipeline", ["bob", PASSWORD, "1"], { HOSTILE_OP: "history", HOSTILE_ARGS: JSON.stringify({ with: "alice", limit: 50 }) });
  expect(light.codes).toEqual({ ok: 1 });
  await neighboursKeepChatting();
}, 60_000);

test("the real client waits out a read refusal's retry-after: every one of 60 history pages it asks for at once arrives", async () => {
  const carol = await connectUser(world.cluster.balancerAddr, "carol");
  try {
    // 60 at once from one user fill the one read slot and pass the light rate: the admission refuses some with a
    // retry-after (the test above shows it on the wire), and the client asks again after it instead of failing.
    const pages = await Promise.allSettled(Array.from({ length: 60 }, () => carol.session.call("history", { with: "alice", limit: 1000 })));
    const failed = pages.filter((p) => p.status === "rejected").map((p) => String((p as PromiseRejectedResult).reason));
    expect(failed).toEqual([]);
    await neighboursKeepChatting();
  } finally {
    await carol.session.close();
  }
}, 90_000);
