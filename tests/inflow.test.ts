/**
 * Messages coming in (client/inflow.ts), before anyone reads them: handed on
 * in order and once, one at a time; a gap delivery leaves is fetched page by
 * page; a group one was just added to starts at the line that added them.
 * The server is a function here that pages a conversation as the server's
 * fetch does; tests/ordering.test.ts holds the same promises on real servers.
 */
import { expect, test } from "bun:test";
import { pack } from "msgpackr";
import { Inflow } from "../client/inflow";
import { ChatError } from "../protocol/errors";
import type { WireMessage } from "../protocol/messages";

function message(conv: number, seq: number, extra: Partial<WireMessage> = {}): WireMessage {
  return { id: conv * 1000 + seq, conv, seq, from: "bob", to: "me", kind: "chat", at: seq, cmid: `c${conv}-${seq}`, body: new Uint8Array([seq]), ...extra };
}

function inflow(stored: WireMessage[] = [], positions: [number, { received: number }][] = [], pageSize = 2) {
  const delivered: [number, number][] = [];
  const fetches: { conv: number; after: number }[] = [];
  let busy = 0;
  let overlapped = false;
  const flow = new Inflow({
    user: "me",
    async deliver(m) {
      if (busy++ > 0) overlapped = true;
      await Bun.sleep(1);
      delivered.push([m.conv, m.seq]);
      busy--;
    },
    async request(op, args) {
      expect(op).toBe("fetch");
      const { conv, after } = args as { conv: number; after: number };
      fetches.push({ conv, after });
      return { messages: stored.filter((m) => m.conv === conv && m.seq > after).slice(0, pageSize) };
    },
    positions,
  });
  return { flow, delivered, fetches, overlapped: () => overlapped };
}

test("messages are handed on in their conversation's order, once, one at a time, whatever order they came in", async () => {
  const { flow, delivered, overlapped } = inflow([], [[1, { received: 0 }], [2, { received: 4 }]]);
  for (const m of [message(1, 2), message(2, 5), message(1, 1), message(1, 2), message(2, 4), message(1, 3)]) flow.receive(m);
  await flow.idle();
  expect(delivered).toEqual([
    [2, 5],
    [1, 1],
    [1, 2],
    [1, 3],
  ]);
  expect(overlapped()).toBe(false);
  expect(flow.positions()).toEqual({ 1: 3, 2: 5 });
  flow.stop();
});

test("a gap that delivery does not fill is fetched page by page (until an empty page), and what follows it is handed on after", async () => {
  const stored = [1, 2, 3, 4, 5].map((seq) => message(7, seq));
  const { flow, delivered, fetches } = inflow(stored, [[7, { received: 0 }]]);
  flow.receive(message(7, 5));
  await flow.fillGaps();
  await flow.idle();
  expect(delivered).toEqual([1, 2, 3, 4, 5].map((seq) => [7, seq]));
  expect(fetches).toEqual([
    { conv: 7, after: 0 },
    { conv: 7, after: 2 },
    { conv: 7, after: 4 },
    { conv: 7, after: 5 },
  ]);
  flow.stop();
});

test("the server's cursors at a login: nothing at or before them is handed on again", async () => {
  const { flow, delivered } = inflow([], [[3, { received: 1 }]]);
  flow.startAt({ 3: 6 });
  for (const seq of [5, 6, 7]) flow.receive(message(3, seq));
  await flow.idle();
  expect(delivered).toEqual([[3, 7]]);
  flow.stop();
});

test("a group one was just added to starts at the line that added them; its earlier history is not fetched", async () => {
  const added = message(9, 40, { kind: "system", group: "team", to: "team", body: pack({ event: "added", actor: "ann", users: ["me"] }) });
  const { flow, delivered, fetches } = inflow();
  flow.receive(added);
  flow.receive(message(9, 41, { group: "team", to: "team" }));
  await flow.fillGaps();
  await flow.idle();
  expect(delivered).toEqual([
    [9, 40],
    [9, 41],
  ]);
  expect(fetches).toEqual([]);
  flow.stop();
});

test("a page of a gap refused with a retry-after (a busy server's read admission) is asked for again after the wait, and the gap fills", async () => {
  const stored = [1, 2, 3].map((seq) => message(7, seq));
  const delivered: number[] = [];
  const asked: number[] = [];
  let refusals = 2;
  const flow = new Inflow({
    user: "me",
    async deliver(m) {
      delivered.push(m.seq);
    },
    async request(_op, args) {
      const { after } = args as { after: number };
      asked.push(Date.now());
      if (refusals-- > 0) throw new ChatError("E_RATE_LIMITED", "The server is busy", 30);
      return { messages: stored.filter((m) => m.seq > after) };
    },
    positions: [[7, { received: 0 }]],
  });
  flow.receive(message(7, 3));
  await flow.fillGaps();
  await flow.idle();
  expect(delivered).toEqual([1, 2, 3]);
  // two refusals, the page, the empty page that ends it; each retry after the wait it was given
  expect(asked).toHaveLength(4);
  expect(asked[1]! - asked[0]!).toBeGreaterThanOrEqual(25);
  flow.stop();
});
