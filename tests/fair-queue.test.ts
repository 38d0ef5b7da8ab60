/**
 * The committer's fair queue (server/fair-queue.ts): one user's backlog never
 * sits in front of another user's message, and each user's items keep their order.
 */
import { expect, test } from "bun:test";
import { FairQueue } from "../server/fair-queue";

interface Item {
  user: number;
  n: number;
}

const queue = (perKey = Infinity) => new FairQueue<Item, number>((i) => i.user, perKey);
const push = (q: FairQueue<Item, number>, user: number, count: number, from = 0) => {
  for (let n = from; n < from + count; n++) q.push({ user, n });
};

test("a message pushed behind another user's backlog of thousands goes in the next take", () => {
  const q = queue();
  push(q, 1, 5000);
  push(q, 2, 1);
  const batch = q.take(100);
  expect(batch).toHaveLength(100);
  expect(batch.filter((i) => i.user === 2)).toEqual([{ user: 2, n: 0 }]);
  expect(q.size).toBe(4901);
});

test("each take hands out one item of every user before a second of any", () => {
  const q = queue();
  push(q, 1, 3);
  push(q, 2, 3);
  push(q, 3, 1);
  expect(q.take(10).map((i) => `${i.user}.${i.n}`)).toEqual(["1.0", "2.0", "3.0", "1.1", "2.1", "1.2", "2.2"]);
  expect(q.size).toBe(0);
});

test("a take that stops mid-round starts the next one with the users it did not reach", () => {
  const q = queue();
  for (let user = 1; user <= 5; user++) push(q, user, 2);
  expect(q.take(3).map((i) => i.user)).toEqual([1, 2, 3]);
  // Users 4 and 5 had nothing yet: they go first, then the second round.
  expect(q.take(4).map((i) => `${i.user}.${i.n}`)).toEqual(["4.0", "5.0", "1.1", "2.1"]);
  expect(q.take(10).map((i) => `${i.user}.${i.n}`)).toEqual(["3.1", "4.1", "5.1"]);
});

test("each user's items come out in the order they went in, across takes and pushes in between", () => {
  const q = queue(4);
  const out: Item[] = [];
  for (let round = 0; round < 50; round++) {
    for (let user = 1; user <= 7; user++) push(q, user, (user * round) % 5, 1000 * round);
    out.push(...q.take(1 + (round % 9)));
  }
  out.push(...q.drain());
  expect(q.size).toBe(0);
  for (let user = 1; user <= 7; user++) {
    const mine = out.filter((i) => i.user === user).map((i) => i.n);
    expect(mine).toEqual([...mine].sort((a, b) => a - b));
    let pushed = 0;
    for (let round = 0; round < 50; round++) pushed += (user * round) % 5;
    expect(mine).toHaveLength(pushed);
  }
});

test("under a backlog a take holds at most the per-user share of one user, and the rest wait for the next", () => {
  const q = queue(16);
  push(q, 1, 100);
  push(q, 2, 3);
  const first = q.take(2000);
  expect(first.filter((i) => i.user === 1)).toHaveLength(16);
  expect(first.filter((i) => i.user === 2)).toHaveLength(3);
  expect(q.size).toBe(84);
  expect(q.sizeOf(1)).toBe(84);
  expect(q.take(2000).map((i) => i.n)).toEqual(Array.from({ length: 16 }, (_, k) => 16 + k));
});

test("drain returns everything, even past the per-user share", () => {
  const q = queue(2);
  push(q, 1, 10);
  push(q, 2, 5);
  const all = q.drain();
  expect(all).toHaveLength(15);
  expect(all.filter((i) => i.user === 1).map((i) => i.n)).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
  expect(q.size).toBe(0);
  expect(q.take(5)).toEqual([]);
});
