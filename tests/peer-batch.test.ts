/**
 * Batched peer deliveries (issue 15, round 4): what a server forwards to a
 * peer in one event-loop turn goes in one `deliveries` frame; each
 * conversation's messages still arrive in order, also with several
 * conversations in one frame; and a batch lost with a server that goes away
 * loses nothing, because the peer link is only a fast path (DESIGN.md 4).
 */
import { afterAll, beforeAll, expect, setDefaultTimeout, test } from "bun:test";
import type { Link } from "../net/link";
import { decode } from "../protocol/codec";
import { MAX_BATCH_BYTES, PeerBatch } from "../server/peer-batch";
import { rawLink, signup, spawnServer, startCluster, uniqueName, waitFor, type Cluster } from "./support/cluster";

setDefaultTimeout(60_000);

let cluster: Cluster;

beforeAll(async () => {
  cluster = await startCluster({ servers: 2, config: { sendsPerSecond: 10_000 } });
}, 60_000);
afterAll(async () => {
  await cluster.stop();
});

const text = (t: string) => new TextEncoder().encode(t);
const read = (b: unknown) => new TextDecoder().decode(b as Uint8Array);

/** Collects the `msg` events a raw link receives, as [seq, body text]. */
function inbox(): { got: [number, string][]; onEvent(ev: string, frame: Record<string, unknown>): void } {
  const got: [number, string][] = [];
  return {
    got,
    onEvent(ev, frame) {
      if (ev !== "msg") return;
      const m = frame.m as { seq: number; body: Uint8Array };
      got.push([m.seq, read(m.body)]);
    },
  };
}

/** Logs `name` in on the server at `addr` and asks for its backlog, after which live messages flow. */
async function receiver(addr: string, name: string, box: ReturnType<typeof inbox>, device?: string): Promise<Link> {
  const link = await rawLink(addr, name, box, undefined, device);
  await link.request("sync");
  return link;
}

test("two conversations forwarded together in a few peer frames each arrive whole and in order", async () => {
  const [ann, ben, cat] = [uniqueName("ann"), uniqueName("ben"), uniqueName("cat")];
  for (const name of [ann, ben, cat]) await signup(cluster.balancerAddr, name);
  const [a, b] = cluster.servers;
  const forBen = inbox();
  const forCat = inbox();
  const links: Link[] = [];
  try {
    links.push(await receiver(b!.addr, ben, forBen), await receiver(b!.addr, cat, forCat));
    const sender = await rawLink(a!.addr, ann);
    links.push(sender);
    // A first message each, so that both conversations exist and both places are cached.
    await sender.request("send", { to: ben, cmid: "w-ben", body: text("ben 0") });
    await sender.request("send", { to: cat, cmid: "w-cat", body: text("cat 0") });
    await waitFor(() => forBen.got.length === 1 && forCat.got.length === 1, "the first messages");
    const before = a!.peerForwards();

    // 200 sends pipelined, the two conversations interleaved: they commit in a few batches.
    const n = 100;
    const sends: Promise<unknown>[] = [];
    for (let i = 1; i <= n; i++) {
      sends.push(sender.request("send", { to: ben, cmid: `ben-${i}`, body: text(`ben ${i}`) }));
      sends.push(sender.request("send", { to: cat, cmid: `cat-${i}`, body: text(`cat ${i}`) }));
    }
    await Promise.all(sends);
    await waitFor(() => forBen.got.length === n + 1 && forCat.got.length === n + 1, "every message at ben and cat");

    const expected = (who: string) => Array.from({ length: n + 1 }, (_, i) => [i + 1, `${who} ${i}`]);
    expect(forBen.got).toEqual(expected("ben") as [number, string][]);
    expect(forCat.got).toEqual(expected("cat") as [number, string][]);
    const after = a!.peerForwards();
    expect(after.items - before.items).toBe(2 * n);
    // One frame a message was the old way; a turn's forwards now share one.
    expect(after.frames - before.frames).toBeLessThan(n);
  } finally {
    for (const link of links) link.close();
  }
});

test("a batch lost with a server killed before it delivered: its recipient gets every message, in order, at the next login", async () => {
  const [dee, eve] = [uniqueName("dee"), uniqueName("eve")];
  for (const name of [dee, eve]) await signup(cluster.balancerAddr, name);
  const doomed = await spawnServer(cluster.url, cluster.balancerAddr, ["--send-rate", "10000"]);
  const links: Link[] = [];
  try {
    const first = inbox();
    const away = await receiver(doomed.addr, eve, first, "eve-phone");
    const sender = await rawLink(cluster.servers[0]!.addr, dee);
    links.push(sender);
    await sender.request("send", { to: eve, cmid: "e-0", body: text("eve 0") });
    await waitFor(() => first.got.length === 1, "the first message on the doomed server");

    // Pipelined, and the server that holds eve is killed while they are being forwarded to it.
    const n = 60;
    const sends: Promise<unknown>[] = [];
    for (let i = 1; i <= n; i++) sends.push(sender.request("send", { to: eve, cmid: `e-${i}`, body: text(`eve ${i}`) }));
    const killed = doomed.kill9();
    await Promise.all(sends);
    await killed;
    away.close();

    // Every send was acknowledged, so each is stored: the next login replays what the batch lost.
    const again = inbox();
    links.push(await receiver(cluster.servers[1]!.addr, eve, again, "eve-phone"));
    await waitFor(() => again.got.some(([seq]) => seq === n + 1), "the replay up to the last message");
    const seen = new Map<number, string>([...first.got, ...again.got]);
    expect([...seen.keys()].sort((x, y) => x - y)).toEqual(Array.from({ length: n + 1 }, (_, i) => i + 1));
    // The replay itself is in order.
    const replayed = again.got.map(([seq]) => seq);
    expect(replayed).toEqual([...replayed].sort((x, y) => x - y));
  } finally {
    for (const link of links) link.close();
    doomed.proc.kill("SIGKILL");
  }
});

test("a batch that would pass the size bound goes in several frames, every item once and in order", () => {
  const frames: Record<string, unknown>[] = [];
  const batch = new PeerBatch({ notify: (ev, fields) => frames.push({ ev, ...fields }), notifyEncoded: (bytes) => frames.push(decode(bytes.subarray(4))) }, true);
  const big = new Uint8Array(MAX_BATCH_BYTES / 4 + 1);
  for (let i = 0; i < 10; i++) batch.add({ to: [1], frame: big, conv: 7, seq: i + 1, hops: 0 });
  batch.flush();
  expect(frames.length).toBeGreaterThan(1);
  expect(frames.every((f) => f.ev === "deliveries")).toBe(true);
  const seqs = frames.flatMap((f) => (f.d as unknown[][]).map((item) => item[3]));
  expect(seqs).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
});

test("a peer that does not take batches gets one deliver frame each, as before", () => {
  const frames: Record<string, unknown>[] = [];
  const batch = new PeerBatch({ notify: (ev, fields) => frames.push({ ev, ...fields }), notifyEncoded: () => frames.push({ ev: "batch" }) }, false);
  const bytes = new Uint8Array([1, 2, 3]);
  batch.add({ to: [1, 2], frame: bytes, conv: 3, seq: 9, hops: 0 });
  batch.add({ to: [1], frame: bytes, hops: 1 });
  expect(frames).toEqual([
    { ev: "deliver", to: [1, 2], conv: 3, seq: 9, frame: bytes, hops: 0 },
    { ev: "deliver", to: [1], frame: bytes, hops: 1 },
  ]);
});
