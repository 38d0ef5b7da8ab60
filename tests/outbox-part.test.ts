/**
 * The outbox on its own (client/outbox.ts), over a device store in memory:
 * what it keeps on the device, the order it hands sealed messages on in, and
 * what a refusal does to a message. The connection under it is a function
 * here that answers as the server would; tests/outbox.test.ts runs the same
 * promises against real servers and processes.
 */
import { afterEach, expect, test } from "bun:test";
import type { ContentCodec } from "../client/codec";
import { decodeContent, encodeContent, type Content } from "../client/content";
import type { Membership } from "../client/groups";
import type { PendingSend, SendResult } from "../client/lanes";
import { Outbox, type OutboxParts } from "../client/outbox";
import type { Received } from "../client/received";
import { LocalStore } from "../client/store";
import { ChatError } from "../protocol/errors";

const stores: LocalStore[] = [];
afterEach(() => {
  for (const s of stores.splice(0)) s.close();
});

type Args = PendingSend["args"];

/** An outbox whose sends are answered by `answer` (stored at the next seq, unless it throws); what it was handed is in `sent`. */
function outbox(over: Partial<OutboxParts> & { answer?: (args: Args, n: number) => void } = {}) {
  const store = new LocalStore("outboxer", false);
  stores.push(store);
  const sent: Args[] = [];
  const kept: Received[] = [];
  const statuses: string[] = [];
  const sealedFor: string[][] = [];
  let seq = 0;
  const codec: Pick<ContentCodec, "seal"> = {
    async seal(_target, recipients, _cmid, content) {
      sealedFor.push(recipients);
      return encodeContent(content);
    },
  };
  const box = new Outbox({
    user: "me",
    store,
    codec,
    async send(args) {
      sent.push(args);
      over.answer?.(args, sent.length);
      seq++;
      return { msg: 100 + seq, conv: 1, seq, at: Date.now(), duplicate: false } satisfies SendResult;
    },
    groups: { current: async () => ({ epoch: 1, members: [{ name: "me", role: "admin", since: 0 }] }), forget() {} },
    keep: (m) => kept.push(m),
    connected: () => true,
    leaving: () => false,
    onStatus: (line) => statuses.push(line),
    ...over,
  });
  return { box, store, sent, kept, statuses, sealedFor };
}

const text = (t: string): Content => ({ kind: "text", text: t });
const said = (args: Args) => (decodeContent(args.body) as { text: string }).text;

test("a message is in the outbox on the device before it is sent, and leaves it once the server stored it", async () => {
  let pendingWhenSent = -1;
  const { box, store, kept } = outbox({ answer: () => (pendingWhenSent = store.pendingCount()) });
  const result = await box.send({ to: "bob" }, text("hello"), "c1");
  expect(pendingWhenSent).toBe(1);
  expect(store.pendingCount()).toBe(0);
  // And it is in the device's history as the user's own.
  expect(kept.map((m) => [m.from, m.to, m.text, m.seq, m.cmid])).toEqual([["me", "bob", "hello", result.seq, "c1"]]);
});

test("sends go out in the order asked for, even when the first takes longer to seal", async () => {
  const slow = new Set(["first"]);
  const { box, sent } = outbox({
    codec: {
      async seal(_t, _r, _cmid, content) {
        if (slow.has((content as { text: string }).text)) await Bun.sleep(50);
        return encodeContent(content);
      },
    },
  });
  await Promise.all([box.send({ to: "bob" }, text("first"), "c1"), box.send({ to: "carol" }, text("second"), "c2"), box.send({ to: "bob" }, text("third"), "c3")]);
  expect(sent.map(said)).toEqual(["first", "second", "third"]);
});

test("the same message asked for again while on its way, or once stored, is sent once and gets the same answer", async () => {
  const { box, sent } = outbox();
  const [a, b] = await Promise.all([box.send({ to: "bob" }, text("once"), "c1"), box.send({ to: "bob" }, text("once"), "c1")]);
  const c = await box.send({ to: "bob" }, text("once"), "c1");
  expect(sent).toHaveLength(1);
  expect(b).toEqual(a);
  expect(c).toEqual(a);
});

test("a refusal that retrying cannot fix ends the message, with its code, and takes it out of the outbox", async () => {
  const { box, store, kept } = outbox({
    answer: () => {
      throw new ChatError("E_NO_SUCH_USER");
    },
  });
  const error = await box.send({ to: "nobody" }, text("lost?"), "c1").catch((e) => e);
  expect(error).toBeInstanceOf(ChatError);
  expect(error.code).toBe("E_NO_SUCH_USER");
  expect(store.pendingCount()).toBe(0);
  expect(kept).toEqual([]);
});

test("a temporary failure while the session is leaving keeps the message in the outbox for the next start", async () => {
  const { box, store } = outbox({
    leaving: () => true,
    answer: () => {
      throw new ChatError("E_UNAVAILABLE");
    },
  });
  const error = await box.send({ to: "bob" }, text("later"), "c1").catch((e) => e);
  expect(error.code).toBe("E_UNAVAILABLE");
  expect(store.pendingCount()).toBe(1);
});

test("a temporary failure is sent again, with the same id, until the server stores it", async () => {
  const { box, store, sent } = outbox({
    answer: (_args, n) => {
      if (n < 3) throw new ChatError("E_UNAVAILABLE");
    },
  });
  await box.send({ to: "bob" }, text("persistent"), "c1");
  expect(sent.map((a) => a.cmid)).toEqual(["c1", "c1", "c1"]);
  expect(store.pendingCount()).toBe(0);
});

test("a group message is sealed again for the current members when the server says the membership changed", async () => {
  const memberships: Membership[] = [
    { epoch: 1, members: [{ name: "me", role: "admin", since: 0 }, { name: "gone", role: "member", since: 0 }] },
    { epoch: 2, members: [{ name: "me", role: "admin", since: 0 }, { name: "new", role: "member", since: 0 }] },
  ];
  let known: Membership | undefined;
  const forgotten: string[] = [];
  const { box, sent, sealedFor } = outbox({
    groups: { current: async () => (known ??= memberships.shift()!), forget: (g) => (forgotten.push(g), (known = undefined)) },
    answer: (args) => {
      if (args.epoch === 1) throw new ChatError("E_STALE_MEMBERS");
    },
  });
  await box.send({ group: "team" }, text("hi all"), "c1");
  expect(sealedFor).toEqual([
    ["me", "gone"],
    ["me", "new"],
  ]);
  expect(forgotten).toEqual(["team"]);
  expect(sent.map((a) => [a.group, a.epoch])).toEqual([
    ["team", 1],
    ["team", 2],
  ]);
});

test("what an earlier process left in the outbox is sent at the start, in order, with its original ids", async () => {
  const { box, store, sent, statuses } = outbox();
  store.enqueue({ cmid: "old-1", target: "dm:bob", content: encodeContent(text("left one")), createdAt: 1 });
  store.enqueue({ cmid: "old-2", target: "group:team", content: encodeContent(text("left two")), createdAt: 2 });
  // As if the process that wrote them had gone: their entries are anyone's to send.
  store.release();
  box.resendOrphans();
  while (store.pendingCount() > 0 || statuses.length < 2) await Bun.sleep(5);
  expect(sent.map((a) => [a.cmid, a.to ?? `#${a.group}`, said(a)])).toEqual([
    ["old-1", "bob", "left one"],
    ["old-2", "#team", "left two"],
  ]);
  expect(statuses).toEqual(["sent a message left in the outbox to bob (message 101)", "sent a message left in the outbox to #team (message 102)"]);
});
