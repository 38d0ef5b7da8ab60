/**
 * The server-wide admission of sends (server/admission.ts): while the server
 * is past what it can carry, the users taking more than their share wait, and
 * those sending at a person's pace do not.
 */
import { expect, test } from "bun:test";
import { Admission, LIGHT_RATE, waterLevel } from "../server/admission";

/** An admission on a clock the test moves, with load signals it sets. */
function harness(config: Partial<{ admissionRate: number; admissionLagMs: number; admissionQueue: number; admissionCommitMs: number }>) {
  const state = { now: 0, lag: 0, queued: 0 };
  const admission = new Admission(
    { admissionRate: 0, admissionLagMs: 0, admissionQueue: 0, admissionCommitMs: 0, ...config },
    { lagMs: () => state.lag, queued: () => state.queued },
    () => state.now,
  );
  return { state, admission };
}

/** Each user sends at their rate (a second) for `seconds`, in steps of 10 ms; counts what each had admitted and refused. */
function run(admission: Admission, state: { now: number }, rates: Map<number, number>, seconds: number) {
  const admitted = new Map<number, number>();
  const refused = new Map<number, number>();
  const owed = new Map<number, number>();
  const waitUntil = new Map<number, number>();
  for (let step = 0; step < seconds * 100; step++) {
    state.now += 10;
    for (const [user, rate] of rates) {
      owed.set(user, (owed.get(user) ?? 0) + rate / 100);
      while (owed.get(user)! >= 1) {
        owed.set(user, owed.get(user)! - 1);
        // A refused client waits as told (the listener holds its connection meanwhile).
        if ((waitUntil.get(user) ?? 0) > state.now) continue;
        const wait = admission.admit(user);
        if (wait > 0) {
          refused.set(user, (refused.get(user) ?? 0) + 1);
          waitUntil.set(user, state.now + wait);
        } else admitted.set(user, (admitted.get(user) ?? 0) + 1);
      }
    }
  }
  return { admitted, refused };
}

test("while the server keeps up, nobody is refused, however much they send", () => {
  const { state, admission } = harness({ admissionLagMs: 30, admissionQueue: 100 });
  const { refused } = run(admission, state, new Map([[1, 1000], [2, 5]]), 2);
  expect(refused.size).toBe(0);
});

test("while the loop runs late, heavy senders are refused with a wait and light ones all pass", () => {
  const { state, admission } = harness({ admissionLagMs: 30 });
  state.lag = 80;
  const rates = new Map<number, number>();
  for (let heavy = 1; heavy <= 10; heavy++) rates.set(heavy, 200);
  for (let light = 100; light < 110; light++) rates.set(light, 4);
  const { admitted, refused } = run(admission, state, rates, 5);
  for (let light = 100; light < 110; light++) {
    expect(refused.get(light) ?? 0).toBe(0);
    expect(admitted.get(light)).toBeGreaterThanOrEqual(19);
  }
  for (let heavy = 1; heavy <= 10; heavy++) {
    expect(refused.get(heavy)).toBeGreaterThan(0);
    // Brought down from 200 a second to near the others' rate.
    expect(admitted.get(heavy)!).toBeLessThan(200 * 5 * 0.5);
  }
});

test("a fixed budget a second: past it, those above an equal share of it wait", () => {
  const { state, admission } = harness({ admissionRate: 100 });
  // Four users: one sends 200 a second, three send 10; the level is (100 - 30) / 1 = 70.
  const { admitted, refused } = run(admission, state, new Map([[1, 200], [2, 10], [3, 10], [4, 10]]), 5);
  for (const light of [2, 3, 4]) expect(refused.get(light) ?? 0).toBe(0);
  expect(refused.get(1)).toBeGreaterThan(0);
  // Over 5 s the heavy one got about the budget's remainder, not 200 a second.
  expect(admitted.get(1)!).toBeLessThan(5 * 100);
});

test("a deep commit queue is a signal too", () => {
  const { state, admission } = harness({ admissionQueue: 100 });
  state.queued = 5000;
  const shared = run(admission, state, new Map([[1, 500], [2, 3]]), 2);
  expect(shared.refused.get(1)).toBeGreaterThan(0);
  expect(shared.refused.get(2) ?? 0).toBe(0);
});

test("a user below the light rate is never refused, whatever the share", () => {
  const { state, admission } = harness({ admissionRate: 1 });
  const rates = new Map<number, number>();
  for (let user = 1; user <= 50; user++) rates.set(user, LIGHT_RATE / 2);
  const { refused } = run(admission, state, rates, 5);
  expect(refused.size).toBe(0);
});

test("users who stopped sending are forgotten, and past the pressure nobody is refused", () => {
  const { state, admission } = harness({ admissionRate: 100 });
  const many = new Map<number, number>();
  for (let user = 1; user <= 20; user++) many.set(user, 5);
  run(admission, state, many, 1);
  expect(admission.active).toBe(20);
  state.now += 10_000;
  expect(admission.active).toBe(0);
  expect(admission.level()).toBe(Infinity);
});

test("the water level: those below it keep their rate, those above share the rest", () => {
  expect(waterLevel([1, 2, 100, 100], 43)).toBe(20);
  expect(waterLevel([5, 5], 100)).toBe(Infinity);
  expect(waterLevel([], 10)).toBe(Infinity);
});

test("sends that lately waited long for their commit are a signal before the loop is late", () => {
  const { state, admission } = harness({ admissionCommitMs: 50 });
  // Nothing slow yet: a heavy sender passes.
  expect(run(admission, state, new Map([[1, 500]]), 1).refused.size).toBe(0);
  admission.committed(120, state.now);
  const { refused } = run(admission, state, new Map([[1, 500], [2, 5]]), 0.5);
  expect(refused.get(1)).toBeGreaterThan(0);
  expect(refused.get(2) ?? 0).toBe(0);
  // The slow commit ages out of its two windows, and the hold ends: nobody is refused again.
  state.now += 2000;
  admission.committed(3, state.now);
  expect(admission.pressed(state.now)).toBe(false);
});

test("under pressure a user reading many pages a second waits, and one reading like a person does not", () => {
  const { state, admission } = harness({ admissionLagMs: 30 });
  const heavy = { admitted: 0, refused: 0 };
  const light = { admitted: 0, refused: 0 };
  // Without pressure, any number of reads pass.
  for (let i = 0; i < 100; i++) expect(admission.admitRead(1)).toBe(0);
  state.lag = 80;
  for (let step = 0; step < 200; step++) {
    state.now += 10;
    // 100 pages a second against one every 500 ms.
    const wait = admission.admitRead(1);
    if (wait > 0) heavy.refused++;
    else heavy.admitted++;
    if (step % 50 === 0) {
      if (admission.admitRead(2) > 0) light.refused++;
      else light.admitted++;
    }
  }
  expect(heavy.refused).toBeGreaterThan(0);
  expect(light).toEqual({ admitted: 4, refused: 0 });
});

test("a backlog that forms within one turn of the loop is seen at once: a thousand pipelines read together do not all pass", () => {
  const { state, admission } = harness({ admissionQueue: 2000 });
  // One heavy sender a moment before: the level was just worked out, with nothing queued.
  for (let i = 0; i < 20; i++) admission.admit(999);
  state.now += 1;
  // Then 300 accounts each send 50 (their first bursts) in one long turn, a round of 300 sends every 5 ms; every send admitted joins the commit queue.
  let admitted = 0;
  for (let round = 0; round < 50; round++) {
    for (let user = 1; user <= 300; user++) {
      if (admission.admit(user) === 0) state.queued = ++admitted;
    }
    state.now += 5;
  }
  // Not 15,000: the light part of everyone's rate, and what came before the queue passed its depth.
  expect(admitted).toBeLessThan(5000);
  expect(admitted).toBeGreaterThanOrEqual(300 * LIGHT_RATE);
});
