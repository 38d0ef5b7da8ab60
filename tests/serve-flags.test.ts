/**
 * The limits an operator sets on the command line reach the server that runs.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { connectUser, signup, spawnServer, startCluster, waitFor, type Cluster, type ServerProcess } from "./support/cluster";
import { refusal } from "./support/errors";

let cluster: Cluster;
let server: ServerProcess;

beforeAll(async () => {
  // No in-process servers: the only one is `chatterbox serve` with flags.
  cluster = await startCluster({ servers: 0 });
  server = await spawnServer(cluster.url, cluster.balancerAddr, ["--max-group-members", "2", "--max-file-mb", "1"]);
  await waitFor(() => cluster.balancer.servers().length === 1, "the server to register");
  for (const name of ["flagann", "flagben", "flagcat"]) await signup(cluster.balancerAddr, name);
});

afterAll(async () => {
  await server?.kill9();
  await cluster?.stop();
});

test("serve --max-group-members caps a group's size", async () => {
  const ann = await connectUser(cluster.balancerAddr, "flagann");
  expect((await refusal(ann.session.createGroup("flagtrio", ["flagben", "flagcat"]))).code).toBe("E_GROUP_FULL");
  await ann.session.createGroup("flagduo", ["flagben"]);
  expect((await ann.session.groupMembers("flagduo")).members.map((m) => m.name)).toEqual(["flagann", "flagben"]);
  await ann.session.close();
});

test("serve --max-file-mb refuses a larger file before any upload", async () => {
  const ann = await connectUser(cluster.balancerAddr, "flagann");
  const error = await refusal(ann.session.call("file.begin", { to: "flagben", size: 2 * 1024 * 1024, chunkSize: 256 * 1024, chunks: 8 }));
  expect(error.code).toBe("E_FILE_TOO_LARGE");
  await ann.session.close();
});
