/**
 * Exactly-once, in-order display from at-least-once, possibly reordered
 * delivery: what the client's Sequencer promises for each conversation.
 */
import { afterEach, expect, test } from "bun:test";
import { Sequencer } from "../client/sequencer";
import type { WireMessage } from "../protocol/messages";

const GAP_WAIT_MS = 40;

function msg(conv: number, seq: number): WireMessage {
  return { id: conv * 1000 + seq, conv, seq, from: "alice", to: "bob", kind: "chat", at: 0, cmid: `c${conv}-${seq}`, body: new Uint8Array([seq]) };
}

/** A sequencer whose emitted messages and gap requests are recorded as "conv:seq" and [conv, after]. */
function recorder() {
  const shown: string[] = [];
  const gaps: [number, number][] = [];
  const sequencer = new Sequencer(
    {
      emit: (m) => shown.push(`${m.conv}:${m.seq}`),
      gap: (conv, after) => gaps.push([conv, after]),
    },
    GAP_WAIT_MS,
  );
  made.push(sequencer);
  return { sequencer, shown, gaps };
}

const made: Sequencer[] = [];
afterEach(() => {
  for (const s of made.splice(0)) s.stop();
});

test("messages that arrive in order are shown at once, in order", () => {
  const { sequencer, shown } = recorder();
  for (let seq = 1; seq <= 5; seq++) sequencer.receive(msg(1, seq));
  expect(shown).toEqual(["1:1", "1:2", "1:3", "1:4", "1:5"]);
  expect(sequencer.positions()).toEqual({ 1: 5 });
});

test("a message delivered twice is shown once", () => {
  const { sequencer, shown } = recorder();
  sequencer.receive(msg(1, 1));
  sequencer.receive(msg(1, 2));
  sequencer.receive(msg(1, 1));
  sequencer.receive(msg(1, 2));
  sequencer.receive(msg(1, 3));
  sequencer.receive(msg(1, 2));
  expect(shown).toEqual(["1:1", "1:2", "1:3"]);
});

test("a duplicate of a message still waiting behind a gap is shown once", () => {
  const { sequencer, shown } = recorder();
  sequencer.receive(msg(1, 3));
  sequencer.receive(msg(1, 3));
  sequencer.receive(msg(1, 1));
  sequencer.receive(msg(1, 2));
  expect(shown).toEqual(["1:1", "1:2", "1:3"]);
  expect(sequencer.waitingCount).toBe(0);
});

test("a message past a gap waits until the gap is filled, then everything shows in order", () => {
  const { sequencer, shown } = recorder();
  sequencer.receive(msg(1, 1));
  sequencer.receive(msg(1, 4));
  sequencer.receive(msg(1, 3));
  expect(shown).toEqual(["1:1"]);
  expect(sequencer.waitingCount).toBe(2);
  expect(sequencer.gaps()).toEqual([{ conv: 1, after: 1 }]);
  sequencer.receive(msg(1, 2));
  expect(shown).toEqual(["1:1", "1:2", "1:3", "1:4"]);
  expect(sequencer.waitingCount).toBe(0);
  expect(sequencer.gaps()).toEqual([]);
});

test("messages older than the known position (the server's cursor) are not shown again", () => {
  const { sequencer, shown } = recorder();
  sequencer.position(1, 10);
  sequencer.receive(msg(1, 9));
  sequencer.receive(msg(1, 10));
  sequencer.receive(msg(1, 11));
  expect(shown).toEqual(["1:11"]);
  // A position behind the current one never moves it back.
  sequencer.position(1, 3);
  sequencer.receive(msg(1, 5));
  expect(shown).toEqual(["1:11"]);
});

test("the user's own acknowledged send fills its slot, so the next message is not held", () => {
  const { sequencer, shown, gaps } = recorder();
  sequencer.receive(msg(1, 1));
  sequencer.ownSend(1, 2);
  sequencer.receive(msg(1, 3));
  expect(shown).toEqual(["1:1", "1:3"]);
  expect(sequencer.waitingCount).toBe(0);
  expect(gaps).toEqual([]);
});

test("an own send that is acknowledged after the message behind it arrived releases that message", () => {
  const { sequencer, shown } = recorder();
  sequencer.receive(msg(1, 1));
  sequencer.receive(msg(1, 3));
  expect(shown).toEqual(["1:1"]);
  sequencer.ownSend(1, 2);
  expect(shown).toEqual(["1:1", "1:3"]);
});

test("an own send ahead of a gap fills its slot once the gap before it is filled", () => {
  const { sequencer, shown } = recorder();
  sequencer.receive(msg(1, 1));
  sequencer.ownSend(1, 3);
  sequencer.receive(msg(1, 4));
  expect(shown).toEqual(["1:1"]);
  sequencer.receive(msg(1, 2));
  expect(shown).toEqual(["1:1", "1:2", "1:4"]);
  expect(sequencer.positions()).toEqual({ 1: 4 });
});

test("a gap that delivery does not fill within gapWaitMs asks for the conversation after the last shown", async () => {
  const { sequencer, gaps } = recorder();
  sequencer.receive(msg(7, 1));
  sequencer.receive(msg(7, 2));
  sequencer.receive(msg(7, 5));
  await Bun.sleep(GAP_WAIT_MS / 2);
  expect(gaps).toEqual([]);
  await Bun.sleep(GAP_WAIT_MS * 2);
  expect(gaps).toEqual([[7, 2]]);
});

test("a gap filled in time asks the server for nothing", async () => {
  const { sequencer, gaps, shown } = recorder();
  sequencer.receive(msg(1, 2));
  sequencer.receive(msg(1, 1));
  await Bun.sleep(GAP_WAIT_MS * 3);
  expect(gaps).toEqual([]);
  expect(shown).toEqual(["1:1", "1:2"]);
});

test("the server's answer to a gap shows everything in order and moves past what the server does not have", () => {
  const { sequencer, shown } = recorder();
  sequencer.receive(msg(1, 1));
  sequencer.receive(msg(1, 4));
  sequencer.receive(msg(1, 7));
  // The server has 3, 4 and 7 after 1: 2, 5 and 6 do not exist (for this reader).
  sequencer.filled(1, [msg(1, 3), msg(1, 4), msg(1, 7)]);
  expect(shown).toEqual(["1:1", "1:3", "1:4", "1:7"]);
  expect(sequencer.waitingCount).toBe(0);
  expect(sequencer.gaps()).toEqual([]);
  // And the conversation goes on from there.
  sequencer.receive(msg(1, 8));
  expect(shown).toEqual(["1:1", "1:3", "1:4", "1:7", "1:8"]);
});

test("the server's answer may arrive out of order and repeat messages already shown", () => {
  const { sequencer, shown } = recorder();
  sequencer.receive(msg(1, 1));
  sequencer.receive(msg(1, 2));
  sequencer.receive(msg(1, 5));
  sequencer.filled(1, [msg(1, 5), msg(1, 4), msg(1, 2), msg(1, 3)]);
  expect(shown).toEqual(["1:1", "1:2", "1:3", "1:4", "1:5"]);
});

test("an answer that fills the gap leaves no request for it behind", async () => {
  const { sequencer, gaps } = recorder();
  sequencer.receive(msg(1, 3));
  sequencer.filled(1, [msg(1, 1), msg(1, 2), msg(1, 3)]);
  await Bun.sleep(GAP_WAIT_MS * 3);
  expect(gaps).toEqual([]);
});

test("a gap in one conversation holds back neither another conversation nor its gap timer", async () => {
  const { sequencer, shown, gaps } = recorder();
  sequencer.receive(msg(1, 1));
  sequencer.receive(msg(1, 3));
  sequencer.receive(msg(2, 1));
  sequencer.receive(msg(2, 2));
  sequencer.receive(msg(3, 2));
  expect(shown).toEqual(["1:1", "2:1", "2:2"]);
  expect(sequencer.gaps()).toEqual([
    { conv: 1, after: 1 },
    { conv: 3, after: 0 },
  ]);
  // Filling conversation 3 does not touch conversation 1.
  sequencer.receive(msg(3, 1));
  expect(shown).toEqual(["1:1", "2:1", "2:2", "3:1", "3:2"]);
  expect(sequencer.gaps()).toEqual([{ conv: 1, after: 1 }]);
  await Bun.sleep(GAP_WAIT_MS * 3);
  expect(gaps).toEqual([[1, 1]]);
  sequencer.filled(1, [msg(1, 3)]);
  expect(shown).toEqual(["1:1", "2:1", "2:2", "3:1", "3:2", "1:3"]);
  expect(sequencer.positions()).toEqual({ 1: 3, 2: 2, 3: 2 });
});

test("an own send in one conversation fills no slot in another", () => {
  const { sequencer, shown } = recorder();
  sequencer.ownSend(1, 1);
  sequencer.receive(msg(2, 2));
  expect(shown).toEqual([]);
  sequencer.receive(msg(1, 2));
  expect(shown).toEqual(["1:2"]);
});
