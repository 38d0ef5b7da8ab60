/**
 * The bound on all outboxes together (net/outbox-pool.ts): past it, the
 * largest are cut first, and only as many as bring the total under the low mark.
 */
import { expect, test } from "bun:test";
import { OutboxPool, type PooledOutbox } from "../net/outbox-pool";

/** An outbox that holds what it is told, and empties when cut (as a real one does, but for its bye). */
class Held implements PooledOutbox {
  queued = 0;
  closing = false;
  constructor(
    readonly name: string,
    private readonly pool: OutboxPool,
    private readonly cuts: string[],
  ) {}
  hold(bytes: number): void {
    if (this.queued === 0) this.pool.join(this);
    this.queued += bytes;
    this.pool.changed(bytes);
  }
  cutOff(): void {
    this.cuts.push(this.name);
    this.closing = true;
    const was = this.queued;
    this.queued = 0;
    this.pool.leave(this);
    this.pool.changed(-was);
  }
}

test("past the total, the outboxes holding the most are cut until it is under three quarters", () => {
  const pool = new OutboxPool(1000);
  const cuts: string[] = [];
  const [a, b, c, d] = ["a", "b", "c", "d"].map((n) => new Held(n, pool, cuts));
  a!.hold(100);
  b!.hold(400);
  c!.hold(300);
  d!.hold(150);
  expect(cuts).toEqual([]);
  // 950 + 100 = 1,050: b (400) goes, leaving 650, under 750.
  a!.hold(100);
  expect(cuts).toEqual(["b"]);
  expect(pool.total).toBe(650);
  // 650 + 500 = 1,150: d now holds the most (650), alone enough.
  d!.hold(500);
  expect(cuts).toEqual(["b", "d"]);
  expect(pool.total).toBe(500);
  expect(pool.cut).toBe(2);
});

test("an outbox already being closed is not cut again, and an empty one is not in the pool", () => {
  const pool = new OutboxPool(100);
  const cuts: string[] = [];
  const closing = new Held("closing", pool, cuts);
  closing.hold(90);
  closing.closing = true;
  const other = new Held("other", pool, cuts);
  other.hold(20);
  expect(cuts).toEqual(["other"]);
  expect(pool.total).toBe(90);
});
