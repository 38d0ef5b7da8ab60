/**
 * The receive path on its own (client/inbox.ts), with the real
 * acknowledgement state over a device store in memory and a codec whose
 * verdict each test chooses: what is shown, what is held while a contact's
 * new key waits, and what is neither shown nor acknowledged.
 */
import { afterEach, expect, test } from "bun:test";
import { pack } from "msgpackr";
import { AckState } from "../client/ack-state";
import type { ContentCodec, Opened } from "../client/codec";
import { Inbox, type InboxParts } from "../client/inbox";
import { keyChangedWarning, type Received } from "../client/received";
import { LocalStore } from "../client/store";
import { ChatError } from "../protocol/errors";
import type { WireMessage } from "../protocol/messages";

const stores: LocalStore[] = [];
afterEach(() => {
  for (const s of stores.splice(0)) s.close();
});

function message(seq: number, from = "bob", conv = 1): WireMessage {
  return { id: 1000 + seq, conv, seq, from, to: "me", kind: "chat", at: seq, cmid: `c${seq}`, body: new Uint8Array([seq]) };
}

/** An inbox whose codec answers `verdict` for each message; what it showed, kept and said is recorded. */
function inbox(verdict: (m: WireMessage) => Promise<Opened> | Opened, over: Partial<InboxParts> = {}) {
  const store = new LocalStore("reader", false);
  stores.push(store);
  const acks = new AckState(store);
  const shown: Received[] = [];
  const kept: Received[] = [];
  const statuses: string[] = [];
  const positions = new Map<number, number>();
  const codec: Pick<ContentCodec, "open"> = { open: async (m) => verdict(m) };
  const box = new Inbox({
    user: "me",
    codec,
    acks,
    keep: (m) => kept.push(m),
    ackSoon() {},
    position: (conv) => positions.get(conv) ?? 0,
    leaving: () => false,
    groupChanged() {},
    onMessage: (m) => shown.push(m),
    onStatus: (line) => statuses.push(line),
    ...over,
  });
  /** Delivers in order, as the connection does, noting the last position handed on. */
  const deliver = async (m: WireMessage) => {
    positions.set(m.conv, m.seq);
    await box.deliver(m);
  };
  return { box, acks, store, shown, kept, statuses, deliver };
}

const ok = (text: string): Opened => ({ status: "ok", content: { kind: "text", text } });

test("a verified message is kept, shown and acknowledged; one that fails to verify is shown as a failure with its code, never its text", async () => {
  const { acks, shown, kept, deliver } = inbox((m) => (m.seq === 1 ? ok("hello") : { status: "failed", reason: "the signature does not match", code: "E_BAD_SIGNATURE" }));
  await deliver(message(1));
  await deliver(message(2));
  expect(shown.map((m) => [m.seq, m.text, m.verified, m.code])).toEqual([
    [1, "hello", true, undefined],
    [2, "", false, "E_BAD_SIGNATURE"],
  ]);
  expect(kept.map((m) => m.seq)).toEqual([1, 2]);
  expect(acks.take()).toEqual({ acks: [[1, 2]], read: [] });
});

test("messages from a contact whose key changed are held, warned about once, and nothing past them is acknowledged until the key is trusted", async () => {
  let trusted = false;
  const { box, acks, shown, statuses, deliver } = inbox((m) => (m.from === "bob" && !trusted ? { status: "held" } : ok(`from ${m.from} ${m.seq}`)));
  await deliver(message(1, "carol"));
  await deliver(message(2));
  await deliver(message(3));
  await deliver(message(4, "carol"));
  expect(shown.map((m) => m.seq)).toEqual([1, 4]);
  expect(statuses).toEqual([keyChangedWarning("bob")]);
  expect(box.heldFrom("bob")).toBe(2);
  // Acknowledged up to the first held message, and no further.
  expect(acks.take()).toEqual({ acks: [[1, 1]], read: [] });
  expect(acks.read(1, 4)).toBe(true);
  expect(acks.take()).toEqual({ acks: [], read: [[1, 1]] });

  trusted = true;
  expect(await box.release("bob")).toBe(2);
  expect(box.heldFrom("bob")).toBe(0);
  expect(shown.map((m) => m.seq)).toEqual([1, 4, 2, 3]);
  // Everything handed on in the conversation is acknowledged now, the held ones too.
  expect(acks.take()).toEqual({ acks: [[1, 4]], read: [] });
});

test("a message whose keys cannot be fetched for a passing reason is read again until it can be, and shown once", async () => {
  let tries = 0;
  const { shown, statuses, deliver } = inbox(() => {
    if (++tries < 3) throw new ChatError("E_UNAVAILABLE");
    return ok("patient");
  });
  await deliver(message(1));
  expect(tries).toBe(3);
  expect(shown.map((m) => m.text)).toEqual(["patient"]);
  expect(statuses).toHaveLength(1);
  expect(statuses[0]).toStartWith("a message from bob waits for their keys");
});

test("closing while a message waits for keys: it is not shown, and neither it nor anything after it in its conversation is acknowledged", async () => {
  let leaving = false;
  const { acks, shown, deliver } = inbox(
    (m) => {
      if (m.conv === 1 && m.seq === 2) {
        leaving = true;
        throw new ChatError("E_UNAVAILABLE");
      }
      return ok(`m${m.seq}`);
    },
    { leaving: () => leaving },
  );
  await deliver(message(1));
  await deliver(message(2));
  await deliver(message(3));
  await deliver(message(1, "bob", 2));
  expect(shown.map((m) => [m.conv, m.seq])).toEqual([
    [1, 1],
    [2, 1],
  ]);
  expect(acks.take()).toEqual({ acks: [[1, 1], [2, 1]], read: [] });
});

test("MLS commits are taken in but neither kept nor shown; a membership line is shown as the server's word and makes the group's members stale", async () => {
  const changed: string[] = [];
  const { acks, shown, kept, deliver } = inbox(() => ({ status: "control" }), { groupChanged: (g) => changed.push(g) });
  await deliver(message(1));
  const line: WireMessage = { ...message(2), kind: "system", group: "team", to: "team", body: pack({ event: "added", actor: "ann", users: ["me"] }) };
  await deliver(line);
  expect(kept.map((m) => m.seq)).toEqual([2]);
  expect(shown.map((m) => [m.seq, m.verified, m.problem])).toEqual([[2, false, "recorded by the server, not signed by a member"]]);
  expect(shown[0]!.text).toContain("you");
  expect(changed).toEqual(["team"]);
  expect(acks.take()).toEqual({ acks: [[1, 2]], read: [] });
});
