/**
 * The acknowledgement and read state on its own, over a device store in
 * memory: no server, no network, no timers.
 */
import { afterEach, expect, test } from "bun:test";
import { AckState } from "../client/ack-state";
import { LocalStore } from "../client/store";

const stores: LocalStore[] = [];
afterEach(() => {
  for (const s of stores.splice(0)) s.close();
});

function fresh(): { store: LocalStore; acks: AckState } {
  const store = new LocalStore("acker", false);
  stores.push(store);
  return { store, acks: new AckState(store) };
}

test("what the device kept and what was read go out in one batch, once, and are kept on the device", () => {
  const { store, acks } = fresh();
  expect(acks.waiting).toBe(false);
  expect(acks.take()).toBeUndefined();
  expect(acks.received(7, 3)).toBe(true);
  expect(acks.received(7, 5)).toBe(true);
  expect(acks.received(7, 4)).toBe(true);
  expect(acks.read(7, 4)).toBe(true);
  expect(acks.received(9, 1)).toBe(true);
  expect(acks.waiting).toBe(true);
  expect(acks.take()).toEqual({ acks: [[7, 5], [9, 1]], read: [[7, 4]] });
  expect(acks.waiting).toBe(false);
  expect(acks.take()).toBeUndefined();
  expect(store.positions().get(7)).toEqual({ received: 5, read: 4 });
});

test("the read marker never moves back", () => {
  const { store, acks } = fresh();
  expect(acks.read(1, 10)).toBe(true);
  expect(acks.read(1, 10)).toBe(false);
  expect(acks.read(1, 6)).toBe(false);
  expect(acks.take()).toEqual({ acks: [], read: [[1, 10]] });
  expect(store.readOf(1)).toBe(10);
});

test("a frozen conversation is neither acknowledged nor read past the freeze, until thawed", () => {
  const { store, acks } = fresh();
  acks.freeze(4, 2);
  // A second freeze (a later held message) keeps the first position.
  acks.freeze(4, 8);
  expect(acks.isFrozen(4)).toBe(true);
  expect(acks.received(4, 3)).toBe(false);
  expect(acks.read(4, 9)).toBe(true);
  expect(store.readOf(4)).toBe(2);
  expect(acks.read(4, 9)).toBe(false);
  expect(acks.take()).toEqual({ acks: [], read: [[4, 2]] });
  acks.thaw(4);
  expect(acks.isFrozen(4)).toBe(false);
  expect(acks.received(4, 9)).toBe(true);
  expect(acks.read(4, 9)).toBe(true);
  expect(acks.take()).toEqual({ acks: [[4, 9]], read: [[4, 9]] });
});

test("a failed batch waits again, merged with what came since; a confirmed one is not sent again after a login", () => {
  const { acks } = fresh();
  acks.received(1, 5);
  acks.read(1, 5);
  const first = acks.take()!;
  acks.received(1, 7);
  acks.failed(first);
  expect(acks.take()).toEqual({ acks: [[1, 7]], read: [[1, 5]] });

  acks.received(2, 3);
  const second = acks.take()!;
  acks.confirmed(second);
  // Nothing the server took is queued again by the login check.
  acks.queueUnacknowledged();
  expect(acks.take()).toEqual({ acks: [[1, 7]], read: [[1, 5]] });
});

test("after a login, what the device holds past the server's positions is queued again; reads from another device are taken over", () => {
  const { store, acks } = fresh();
  acks.received(1, 5);
  acks.received(2, 4);
  acks.read(2, 4);
  acks.take();
  // The server says it has conversation 1 up to 5, 2 up to 1 and, from another device, read 3 up to 6.
  acks.serverSaid({ "1": 5, "2": 1 }, { "3": 6 });
  expect(store.readOf(3)).toBe(6);
  acks.queueUnacknowledged();
  expect(acks.take()).toEqual({ acks: [[2, 4]], read: [[2, 4]] });
  // Frozen conversations are left out of that check too.
  acks.serverSaid({}, {});
  acks.freeze(2, 0);
  acks.queueUnacknowledged();
  expect(acks.take()).toEqual({ acks: [[1, 5]], read: [[3, 6]] });
});

test("a read marker moved on another device is kept without being sent back", () => {
  const { store, acks } = fresh();
  acks.readElsewhere(5, 12);
  expect(store.readOf(5)).toBe(12);
  expect(acks.waiting).toBe(false);
  // Showing those same messages here does not move it again.
  expect(acks.read(5, 12)).toBe(false);
});
