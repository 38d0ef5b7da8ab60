import { afterAll, beforeAll, expect, test } from "bun:test";
import { connectUser, signup, startCluster, waitFor, type Cluster } from "./support/cluster";

let cluster: Cluster;
beforeAll(async () => {
  cluster = await startCluster({ servers: 2 });
  for (const name of ["alice", "bob", "carol"]) await signup(cluster.balancerAddr, name);
}, 60_000);
afterAll(() => cluster.stop());

test("a direct message from a user on server 1 reaches a user on server 2 at once", async () => {
  const alice = await connectUser(cluster.balancerAddr, "alice");
  const bob = await connectUser(cluster.balancerAddr, "bob");
  // Round robin over two servers puts consecutive logins on different servers.
  expect(alice.session.serverId).not.toBe(bob.session.serverId);
  const sent = await alice.session.sendText("bob", "hello across servers");
  expect(sent.seq).toBe(1);
  await waitFor(() => bob.received.length === 1, "bob to receive");
  expect(bob.texts()).toEqual(["hello across servers"]);
  expect(bob.received[0]!.from).toBe("alice");
  expect(bob.received[0]!.id).toBe(sent.msg);
  await alice.session.close();
  await bob.session.close();
});

test("messages to an offline user wait in order and arrive at the next login", async () => {
  const alice = await connectUser(cluster.balancerAddr, "alice");
  for (let i = 1; i <= 20; i++) await alice.session.sendText("carol", `offline ${i}`);
  await alice.session.close();
  const carol = await connectUser(cluster.balancerAddr, "carol");
  expect(carol.texts()).toEqual(Array.from({ length: 20 }, (_, i) => `offline ${i + 1}`));
  await carol.session.close();
  // Acknowledged: a second login has nothing waiting.
  const again = await connectUser(cluster.balancerAddr, "carol");
  expect(again.received).toEqual([]);
  await again.session.close();
});
