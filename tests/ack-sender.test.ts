/**
 * Acknowledgements on their way out (client/ack-sender.ts), with the real
 * acknowledgement state over a device store in memory and a link that answers
 * as the server would (or refuses): one request per frame of at most MAX_ACKS
 * pairs, nothing lost when a request fails, and flush waits for all of it.
 */
import { afterEach, expect, test } from "bun:test";
import { AckState } from "../client/ack-state";
import { ACK_DELAY_MS, AckSender, type AckLink } from "../client/ack-sender";
import { LocalStore } from "../client/store";
import { ChatError } from "../protocol/errors";
import { MAX_ACKS } from "../protocol/messages";

const stores: LocalStore[] = [];
const senders: AckSender[] = [];
afterEach(() => {
  for (const s of senders.splice(0)) s.stop();
  for (const s of stores.splice(0)) s.close();
});

type AckArgs = { acks?: [number, number][]; read?: [number, number][] };

function sender(refuse: (n: number) => boolean = () => false) {
  const store = new LocalStore("acker", false);
  stores.push(store);
  const acks = new AckState(store);
  const requests: AckArgs[] = [];
  let connected = true;
  const link: AckLink = {
    async request(op, args) {
      expect(op).toBe("ack");
      requests.push(args as AckArgs);
      await Bun.sleep(1);
      if (refuse(requests.length)) throw new ChatError("E_UNAVAILABLE");
      return {};
    },
  };
  const out = new AckSender({ acks, link: () => (connected ? link : undefined), closing: () => false, idle: async () => {} });
  senders.push(out);
  return { out, acks, requests, disconnect: () => (connected = false) };
}

test("more conversations than a frame holds go out in several requests of at most MAX_ACKS pairs, each pair once", async () => {
  const { out, acks, requests } = sender();
  const total = MAX_ACKS * 2 + 3;
  for (let conv = 1; conv <= total; conv++) acks.received(conv, conv);
  acks.read(1, 1);
  await out.flush();
  expect(requests.length).toBe(3);
  for (const r of requests) expect((r.acks ?? []).length).toBeLessThanOrEqual(MAX_ACKS);
  expect(requests.flatMap((r) => r.acks ?? []).map(([conv]) => conv)).toEqual(Array.from({ length: total }, (_, i) => i + 1));
  expect(requests.flatMap((r) => r.read ?? [])).toEqual([[1, 1]]);
  expect(acks.waiting).toBe(false);
});

test("a batch the server did not take waits again, and goes out with what came meanwhile", async () => {
  const { out, acks, requests } = sender((n) => n === 1);
  acks.received(1, 5);
  out.now();
  await out.settled();
  expect(acks.waiting).toBe(true);
  acks.received(2, 7);
  await out.flush();
  expect(requests.map((r) => r.acks)).toEqual([[[1, 5]], [[1, 5], [2, 7]]]);
  expect(acks.waiting).toBe(false);
});

test("not connected, nothing is sent and nothing is dropped: it waits for the next link", async () => {
  const { out, acks, requests, disconnect } = sender();
  disconnect();
  acks.received(3, 9);
  out.now();
  await out.flush();
  expect(requests).toEqual([]);
  expect(acks.take()).toEqual({ acks: [[3, 9]], read: [] });
});

test("soon() gathers what arrives meanwhile into one request; after stop() no timer is set", async () => {
  const { out, acks, requests } = sender();
  acks.received(1, 1);
  out.soon();
  acks.received(2, 1);
  out.soon();
  while (requests.length === 0) await Bun.sleep(10);
  await out.settled();
  expect(requests).toEqual([{ acks: [[1, 1], [2, 1]] }]);
  out.stop();
  acks.received(3, 1);
  out.soon();
  await Bun.sleep(300);
  expect(requests).toHaveLength(1);
});

test("what was only received waits longer than a read marker, and a read takes it along in the same request", async () => {
  const { out, acks, requests } = sender();
  acks.received(1, 4);
  out.soon();
  // A read marker's wait passes twice over: a received-only ack is still held, to cover more of what arrives.
  await Bun.sleep(ACK_DELAY_MS * 2);
  expect(requests.length).toBe(0);
  acks.received(2, 7);
  out.soon();
  acks.read(1, 4);
  out.soon();
  while (requests.length === 0) await Bun.sleep(5);
  await out.settled();
  expect(requests).toEqual([
    {
      acks: [
        [1, 4],
        [2, 7],
      ],
      read: [[1, 4]],
    },
  ]);
  expect(acks.waiting).toBe(false);
});

test("a received-only acknowledgement goes out by itself after its wait", async () => {
  const { out, acks, requests } = sender();
  acks.received(3, 2);
  out.soon();
  while (requests.length === 0) await Bun.sleep(10);
  await out.settled();
  expect(requests).toEqual([{ acks: [[3, 2]] }]);
});
