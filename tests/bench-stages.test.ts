/**
 * The commit path's stage histograms (server/metrics.ts, server/committer.ts)
 * of a real `serve` process, read back over its metrics endpoint by the
 * bench's own reader (bench/server-stages.ts): every stored message is counted
 * once in each stage, the stages add up to the total, and the statement stage
 * holds the time the database took.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { openDatabase } from "../db/connect";
import type { Link } from "../net/link";
import { parseStages, quantile, readStages, stageSplit, STAGE_NAMES } from "../bench/server-stages";
import { rawLink, signup, startCluster, uniqueName, until, type Cluster } from "./support/cluster";
import { scrape, spawnRole, type RoleProcess } from "./support/roles";

let cluster: Cluster;
let server: RoleProcess;
let metrics: string;
let link: Link;
const [alice, bob, carol] = [uniqueName("alice"), uniqueName("bob"), uniqueName("carol")];

beforeAll(async () => {
  cluster = await startCluster({ servers: 0 });
  server = spawnRole(["serve", "0", "--balancer", cluster.balancerAddr, "--database-url", cluster.url, "--metrics", "127.0.0.1:0", "--send-rate", "0", "--log-format", "json"]);
  metrics = (await server.waitForLine(/metrics at http:\/\/(\S+)\/metrics/))[1]!;
  await server.waitForLine(/server \S+ listening on/);
  await until(async () => cluster.balancer.servers().length === 1, "the server to register");
  for (const name of [alice, bob, carol]) await signup(cluster.balancerAddr, name);
  link = await rawLink((await server.waitForLine(/listening on (\S+),/))[1]!, alice);
}, 60_000);

afterAll(async () => {
  link?.close();
  await server?.stop();
  await cluster?.stop();
});

const send = (to: string, i: number) => link.request("send", { to, cmid: `${to}-${i}-${crypto.randomUUID()}`, body: new Uint8Array([i]) });

test("every stored message is counted once in each stage of the commit path, and the stages add up to its total", async () => {
  const before = await readStages([metrics]);
  const batchesBefore = (await scrape(metrics)).get("chatterbox_commit_batch_messages_count") ?? 0;
  // Pipelined, to two conversations: several batches, some of more than one message.
  await Promise.all(Array.from({ length: 40 }, (_, i) => send(i % 2 ? bob : carol, i)));
  // The reply stage ends at the end of the turn that answered the batch, after the replies were sent.
  await until(async () => (await readStages([metrics])).stages.get("total")!.count - before.stages.get("total")!.count >= 40, "the last batch's reply stage");
  const after = await readStages([metrics]);
  for (const name of STAGE_NAMES) expect(after.stages.get(name)!.count - before.stages.get(name)!.count).toBe(40);
  const sum = (name: (typeof STAGE_NAMES)[number]) => after.stages.get(name)!.sum - before.stages.get(name)!.sum;
  expect(sum("queued") + sum("statement") + sum("replied")).toBeCloseTo(sum("total"), 6);
  // One in-flight observation a batch, and the batches are the store's own count of its commits.
  const batches = ((await scrape(metrics)).get("chatterbox_commit_batch_messages_count") ?? 0) - batchesBefore;
  expect(batches).toBeGreaterThan(0);
  expect(after.inFlight.count - before.inFlight.count).toBe(batches);
  expect(after.batch.sum - before.batch.sum).toBe(40);
  const split = stageSplit(before, after);
  expect(split.stages.total!.count).toBe(40);
  expect(split.meanBatch).toBe(Math.round((40 / batches) * 10) / 10);
});

test("a statement held behind a row lock is counted in the statement stage, for each message of its batch", async () => {
  const first = await send(bob, 1000);
  const conv = first.conv as number;
  const db = openDatabase(cluster.url, { max: 1 });
  try {
    const before = await readStages([metrics]);
    const holdMs = 400;
    let held = 0;
    let sent: Promise<unknown> | undefined;
    // The batch's update of the conversation's counter waits for this transaction.
    await db.sql.begin(async (tx) => {
      await tx`select id from conversations where id = ${conv} for update`;
      const t0 = performance.now();
      sent = send(bob, 1001);
      await Bun.sleep(holdMs);
      held = performance.now() - t0;
    });
    await sent;
    await until(async () => (await readStages([metrics])).stages.get("total")!.count > before.stages.get("total")!.count, "the reply stage");
    const after = await readStages([metrics]);
    const statement = { count: after.stages.get("statement")!.count - before.stages.get("statement")!.count, sum: after.stages.get("statement")!.sum - before.stages.get("statement")!.sum };
    expect(statement.count).toBe(1);
    // Not a timing bound on the server: the row was locked that long, and the statement could not finish before.
    expect(statement.sum * 1000).toBeGreaterThanOrEqual(holdMs - 50);
    expect(held).toBeGreaterThanOrEqual(holdMs);
  } finally {
    await db.close();
  }
});

test("the bench reads percentiles off cumulative buckets, summed over servers", () => {
  const text = (n: number) =>
    [
      `chatterbox_commit_stage_seconds_bucket{le="0.001",stage="queued"} ${n}`,
      `chatterbox_commit_stage_seconds_bucket{le="0.002",stage="queued"} ${2 * n}`,
      `chatterbox_commit_stage_seconds_bucket{le="+Inf",stage="queued"} ${2 * n}`,
      `chatterbox_commit_stage_seconds_sum{stage="queued"} ${0.003 * n}`,
      `chatterbox_commit_stage_seconds_count{stage="queued"} ${2 * n}`,
    ].join("\n");
  const snap = parseStages([text(5), text(5)]);
  const queued = snap.stages.get("queued")!;
  expect(queued.count).toBe(20);
  expect(queued.buckets.get(0.001)).toBe(10);
  // Half at or below 1 ms, the rest between 1 and 2 ms: the median is 1 ms, p75 halfway to 2.
  expect(quantile(queued, 0.5)).toBeCloseTo(0.001, 9);
  expect(quantile(queued, 0.75)).toBeCloseTo(0.0015, 9);
});
