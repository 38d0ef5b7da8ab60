/**
 * net/outbox.ts over a real TCP socket: what is queued during one event-loop
 * turn, across promise continuations several hops apart (a commit's
 * deliveries, then the replies its continuations make), goes out in one
 * socket write, whole and in order; a short write finishes in `drain`, still
 * in order, with frames queued meanwhile behind it. The socket's `write` is
 * only watched (counted), not replaced.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import type { Socket, TCPSocketListener } from "bun";
import { atTurnEnd, Outbox } from "../net/outbox";

let server: TCPSocketListener<undefined>;
const received: Uint8Array[] = [];
let arrived = 0;

beforeAll(() => {
  server = Bun.listen({
    hostname: "127.0.0.1",
    port: 0,
    socket: {
      data(_socket, chunk) {
        received.push(new Uint8Array(chunk));
        arrived += chunk.length;
      },
    },
  });
});

afterAll(() => server.stop(true));

interface Watched {
  socket: Socket<{ outbox?: Outbox }>;
  outbox: Outbox;
  writes: number[];
}

async function connect(limit = 64 * 1024 * 1024): Promise<Watched> {
  const writes: number[] = [];
  const socket = await Bun.connect<{ outbox?: Outbox }>({
    hostname: "127.0.0.1",
    port: server.port,
    data: {},
    socket: {
      data() {},
      drain(s) {
        s.data.outbox?.flush();
      },
    },
  });
  const write = socket.write.bind(socket);
  (socket as { write: (data: Uint8Array) => number }).write = (data: Uint8Array) => {
    writes.push(data.length);
    return write(data);
  };
  const outbox = new Outbox(socket, () => {
    throw new Error("over the limit");
  }, limit);
  socket.data.outbox = outbox;
  return { socket, outbox, writes };
}

function frame(n: number, size: number): Uint8Array {
  const out = new Uint8Array(size);
  new DataView(out.buffer).setUint32(0, n);
  out.fill(n & 0xff, 4);
  return out;
}

async function waitForBytes(total: number): Promise<void> {
  for (let i = 0; i < 2000 && arrived < total; i++) await Bun.sleep(5);
  expect(arrived).toBe(total);
}

function joined(): Uint8Array {
  const out = new Uint8Array(arrived);
  let at = 0;
  for (const c of received) {
    out.set(c, at);
    at += c.length;
  }
  return out;
}

test("frames queued in one turn, however many promise hops apart, go out in one write, in order", async () => {
  received.length = 0;
  arrived = 0;
  const { socket, outbox, writes } = await connect();
  const frames = Array.from({ length: 12 }, (_, i) => frame(i, 100 + i));
  // One frame now, the next after one more continuation each: as a batch's
  // deliveries (at once) and its replies (a few awaits later) are queued.
  const hop = async (i: number): Promise<void> => {
    for (let k = 0; k < i; k++) await Promise.resolve();
    outbox.push(frames[i]!);
  };
  // Pushed in order of their hop counts, so that the byte order is known.
  await Promise.all(frames.map((_, i) => hop(i)));
  expect(writes).toEqual([]); // nothing yet: the turn is not over
  await new Promise((resolve) => setImmediate(resolve));
  expect(writes).toEqual([frames.reduce((n, f) => n + f.length, 0)]);
  await waitForBytes(writes[0]!);
  const bytes = joined();
  let at = 0;
  for (const f of frames) {
    expect(bytes.subarray(at, at + f.length)).toEqual(f);
    at += f.length;
  }
  socket.end();
});

test("two sockets written in one turn get one write each", async () => {
  const a = await connect();
  const b = await connect();
  for (let i = 0; i < 5; i++) {
    a.outbox.push(frame(i, 50));
    b.outbox.push(frame(i, 60));
    await Promise.resolve();
  }
  await new Promise((resolve) => setImmediate(resolve));
  expect(a.writes).toEqual([250]);
  expect(b.writes).toEqual([300]);
  a.socket.end();
  b.socket.end();
});

test("a frame an end-of-turn task queues (a peer batch) goes in the same write as the turn's other frames, after them", async () => {
  received.length = 0;
  arrived = 0;
  const { socket, outbox, writes } = await connect();
  const [first, gathered] = [frame(1, 80), frame(2, 120)];
  // The flush is scheduled by this push, before the task is: a setImmediate of the task's own would run after it.
  outbox.push(first);
  atTurnEnd(() => outbox.push(gathered));
  await new Promise((resolve) => setImmediate(resolve));
  expect(writes).toEqual([200]);
  await waitForBytes(200);
  expect(joined()).toEqual(new Uint8Array([...first, ...gathered]));
  socket.end();
});

test("a write the socket takes only in part finishes in drain, with later frames behind it, nothing lost or reordered", async () => {
  received.length = 0;
  arrived = 0;
  const { socket, outbox, writes } = await connect();
  // Far beyond what the kernel's buffers take at once, so that the socket
  // refuses part of it and the rest waits for drain.
  const big = frame(1, 32 * 1024 * 1024);
  outbox.push(big);
  await new Promise((resolve) => setImmediate(resolve));
  expect(writes.length).toBe(1);
  expect(outbox.queued).toBeGreaterThan(0);
  const later = [frame(2, 300), frame(3, 400)];
  for (const f of later) outbox.push(f);
  const total = big.length + 700;
  await waitForBytes(total);
  expect(outbox.queued).toBe(0);
  const bytes = joined();
  expect(new DataView(bytes.buffer, bytes.byteOffset).getUint32(0)).toBe(1);
  expect(bytes.subarray(big.length, big.length + 300)).toEqual(later[0]!);
  expect(bytes.subarray(big.length + 300)).toEqual(later[1]!);
  socket.end();
});

test("sockets written one after another in one turn (the write's array is reused) each get exactly their own bytes", async () => {
  // A listener of its own that keeps each connection's bytes apart.
  const got = new Map<number, number[]>();
  let next = 0;
  const apart = Bun.listen<{ n: number }>({
    hostname: "127.0.0.1",
    port: 0,
    socket: {
      open(s) {
        s.data = { n: next++ };
        got.set(s.data.n, []);
      },
      data(s, chunk) {
        got.get(s.data.n)!.push(...chunk);
      },
    },
  });
  const boxes: { socket: Socket<undefined>; outbox: Outbox; sent: number[] }[] = [];
  for (let i = 0; i < 4; i++) {
    const socket = await Bun.connect({ hostname: "127.0.0.1", port: apart.port, socket: { data() {} } });
    boxes.push({ socket, outbox: new Outbox(socket, () => {}), sent: [] });
  }
  for (let k = 0; k < 6; k++) {
    for (const [i, box] of boxes.entries()) {
      // Sizes that differ by socket, so that a write made from a later one's bytes shows.
      const f = frame(i * 100 + k, 40 + i * 1000 + k);
      box.outbox.push(f);
      box.sent.push(...f);
    }
  }
  await new Promise((resolve) => setImmediate(resolve));
  const total = boxes.reduce((n, b) => n + b.sent.length, 0);
  for (let i = 0; i < 2000 && [...got.values()].reduce((n, g) => n + g.length, 0) < total; i++) await Bun.sleep(5);
  // Connections were accepted in the order they were made.
  for (const [i, box] of boxes.entries()) expect(new Uint8Array(got.get(i)!)).toEqual(new Uint8Array(box.sent));
  for (const box of boxes) box.socket.end();
  apart.stop(true);
});
