/**
 * The sequencer does not fetch a gap that the user's own unanswered send
 * explains (issue 15): that number is the send's, and its answer fills it.
 */
import { afterEach, expect, test } from "bun:test";
import { Sequencer } from "../client/sequencer";
import type { WireMessage } from "../protocol/messages";

const GAP_WAIT_MS = 30;
/** Long enough for a gap's timer to have fired. */
const PAST_THE_WAIT = GAP_WAIT_MS * 4;

function msg(conv: number, seq: number): WireMessage {
  return { id: conv * 1000 + seq, conv, seq, from: "bob", to: "alice", kind: "chat", at: 0, cmid: `c${conv}-${seq}`, body: new Uint8Array([seq]) };
}

const made: Sequencer[] = [];
afterEach(() => {
  for (const s of made.splice(0)) s.stop();
});

function recorder() {
  const shown: string[] = [];
  const gaps: [number, number][] = [];
  const sequencer = new Sequencer({ emit: (m) => shown.push(`${m.conv}:${m.seq}`), gap: (conv, after) => gaps.push([conv, after]) }, GAP_WAIT_MS);
  made.push(sequencer);
  return { sequencer, shown, gaps };
}

test("a gap that an own unanswered send explains is not fetched; the answer fills it", async () => {
  const { sequencer, shown, gaps } = recorder();
  const token = sequencer.sending({ to: "bob" });
  // Bob's message is numbered after ours, and arrives before our answer.
  sequencer.receive(msg(1, 2));
  await Bun.sleep(PAST_THE_WAIT);
  expect(gaps).toEqual([]);
  expect(shown).toEqual([]);
  sequencer.ownSend(1, 1);
  sequencer.answered(token, { to: "bob" }, 1);
  expect(shown).toEqual(["1:2"]);
  await Bun.sleep(PAST_THE_WAIT);
  expect(gaps).toEqual([]);
});

test("a gap wider than the own unanswered sends is fetched as before", async () => {
  const { sequencer, gaps } = recorder();
  sequencer.sending({ to: "bob" });
  sequencer.receive(msg(1, 3));
  await Bun.sleep(PAST_THE_WAIT);
  expect(gaps).toEqual([[1, 0]]);
});

test("an own send that fails leaves the gap real: it is fetched when the failure is known", async () => {
  const { sequencer, gaps } = recorder();
  const token = sequencer.sending({ to: "bob" });
  sequencer.receive(msg(1, 2));
  await Bun.sleep(PAST_THE_WAIT);
  expect(gaps).toEqual([]);
  sequencer.answered(token, { to: "bob" });
  expect(gaps).toEqual([[1, 0]]);
});

test("an unanswered send to another conversation explains nothing here", async () => {
  const { sequencer, gaps } = recorder();
  // An earlier answer told the sequencer that carol's conversation is 2.
  sequencer.answered(sequencer.sending({ to: "carol" }), { to: "carol" }, 2);
  sequencer.ownSend(2, 1);
  sequencer.sending({ to: "carol" });
  sequencer.receive(msg(1, 2));
  await Bun.sleep(PAST_THE_WAIT);
  expect(gaps).toEqual([[1, 0]]);
});
