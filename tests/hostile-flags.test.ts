/**
 * The bounds an operator sets on `chatterbox serve` (issue 14) reach the server
 * that runs: uploads open at once, the storage quota, the send allowance (whose
 * retry-after the client honours), and a group limit that raises the body limit.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { Link } from "../net/link";
import { loginKeys } from "../client/account";
import { connectUser, PASSWORD, signup, spawnServer, startCluster, waitFor, type Cluster, type ServerProcess } from "./support/cluster";
import { refusal } from "./support/errors";

let cluster: Cluster;
let server: ServerProcess;

beforeAll(async () => {
  cluster = await startCluster({ servers: 0 });
  server = await spawnServer(cluster.url, cluster.balancerAddr, ["--max-uploads", "1", "--storage-quota-mb", "1", "--send-burst", "3", "--send-rate", "2", "--max-group-members", "3000"]);
  await waitFor(() => cluster.balancer.servers().length === 1, "the server to register");
  for (const name of ["boundann", "boundben"]) await signup(cluster.balancerAddr, name);
}, 60_000);

afterAll(async () => {
  await server?.kill9();
  await cluster?.stop();
});

test("serve --max-uploads and --storage-quota-mb refuse at file.begin", async () => {
  const ann = await connectUser(cluster.balancerAddr, "boundann");
  await ann.session.call("file.begin", { to: "boundben", size: 16 * 1024, chunkSize: 16 * 1024, chunks: 1 });
  expect((await refusal(ann.session.call("file.begin", { to: "boundben", size: 16 * 1024, chunkSize: 16 * 1024, chunks: 1 }))).code).toBe("E_RATE_LIMITED");
  await ann.session.close();
  const ben = await connectUser(cluster.balancerAddr, "boundben");
  expect((await refusal(ben.session.call("file.begin", { to: "boundann", size: 2 * 1024 * 1024, chunkSize: 512 * 1024, chunks: 4 }))).code).toBe("E_QUOTA");
  await ben.session.close();
});

test("serve --send-burst and --send-rate: the raw refusal names a retry-after, and the client waits it out and delivers every message", async () => {
  const link = await Link.connect(server.addr, { hello: { role: "client" } });
  const { authKey } = await loginKeys(link, "boundben", PASSWORD);
  await link.request("login", { user: "boundben", auth: authKey, device: { id: "bound-raw-device", name: "raw" } });
  const replies = await Promise.allSettled(Array.from({ length: 6 }, () => link.request("send", { to: "boundann", cmid: crypto.randomUUID(), body: new Uint8Array(8) })));
  const limited = replies.filter((r) => r.status === "rejected").map((r) => (r as PromiseRejectedResult).reason);
  expect(limited.length).toBeGreaterThan(0);
  expect(limited.every((e) => e.code === "E_RATE_LIMITED" && e.retryAfterMs > 0)).toBe(true);
  link.close();

  const ann = await connectUser(cluster.balancerAddr, "boundann");
  const ben = await connectUser(cluster.balancerAddr, "boundben");
  await Bun.sleep(1600); // the raw link spent the allowance: let the bucket fill again
  const texts = Array.from({ length: 6 }, (_, i) => `paced ${i}`);
  // Past the burst of 3, each send is refused once with a retry-after, then sent again by the client.
  const sent = await Promise.all(texts.map((t) => ann.session.sendText("boundben", t)));
  expect(sent.every((r) => r.seq > 0)).toBe(true);
  await waitFor(() => texts.every((t) => ben.texts().includes(t)), "ben to receive every paced message", 20_000);
  expect(ben.texts().filter((t) => t.startsWith("paced"))).toEqual(texts);
  await ann.session.close();
  await ben.session.close();
}, 60_000);

test("serve --max-group-members 3000 raises the body limit with it (the server started: the limits were consistent)", async () => {
  const ann = await connectUser(cluster.balancerAddr, "boundann");
  // A body of 200 KiB, over the 160 KiB default, is within bodyFor(3000).
  const big = await ann.session.call("send", { to: "boundben", cmid: crypto.randomUUID(), body: new Uint8Array(200 * 1024) }).then(
    () => "ok",
    (e) => e.code,
  );
  // Either stored, or paced by the send allowance: never E_MESSAGE_TOO_LARGE.
  expect(["ok", "E_RATE_LIMITED"]).toContain(big);
  await ann.session.close();
});
