/**
 * The server's events about people (client/user-events.ts): read markers
 * from the user's other devices, receipts and typing reach the view in shape,
 * malformed ones are dropped, and with read receipts off no read position is
 * shown even if one arrives.
 */
import { afterEach, expect, test } from "bun:test";
import { AckState } from "../client/ack-state";
import { LocalStore } from "../client/store";
import { UserEvents, type ReceiptEvent, type TypingEvent } from "../client/user-events";

const stores: LocalStore[] = [];
afterEach(() => {
  for (const s of stores.splice(0)) s.close();
});

function events(readReceipts = true) {
  const store = new LocalStore("watcher", false);
  stores.push(store);
  const seen = { read: [] as [number, number][], receipts: [] as ReceiptEvent[], typing: [] as TypingEvent[] };
  const sink = {
    onRead: (conv: number, seq: number) => seen.read.push([conv, seq]),
    onReceipt: (r: ReceiptEvent) => seen.receipts.push(r),
    onTyping: (t: TypingEvent) => seen.typing.push(t),
  };
  return { events: new UserEvents({ acks: new AckState(store), readReceipts: () => readReceipts, sink }), seen, store };
}

test("a read marker moved on another device moves this device's too, and is passed on", () => {
  const { events: ev, seen, store } = events();
  ev.handle("read", { conv: 4, seq: 9 });
  expect(seen.read).toEqual([[4, 9]]);
  expect(store.readOf(4)).toBe(9);
});

test("receipts and typing reach the view; malformed items and events are dropped", () => {
  const { events: ev, seen } = events();
  ev.handle("receipts", { r: [[1, "bob", 5, 3], ["x", "bob"], [2, 7], [3, "carol", 8]] });
  ev.handle("receipts", { r: "nope" });
  ev.handle("typing", { conv: 1, from: "bob" });
  ev.handle("typing", { conv: 2, from: "carol", group: "team" });
  ev.handle("typing", { conv: "1", from: "bob" });
  ev.handle("read", { conv: 1 });
  ev.handle("unknown", { conv: 1, seq: 2 });
  expect(seen.receipts).toEqual([
    { conv: 1, user: "bob", delivered: 5, read: 3 },
    { conv: 3, user: "carol", delivered: 8, read: undefined },
  ]);
  expect(seen.typing).toEqual([
    { conv: 1, from: "bob" },
    { conv: 2, from: "carol", group: "team" },
  ]);
  expect(seen.read).toEqual([]);
});

test("with read receipts off, a read position that still arrives is not shown; delivery is", () => {
  const { events: ev, seen } = events(false);
  ev.handle("receipts", { r: [[1, "bob", 5, 3]] });
  expect(seen.receipts).toEqual([{ conv: 1, user: "bob", delivered: 5, read: undefined }]);
});
