/**
 * Receipts follow a group's membership at once on every server, not only on
 * the one where the change was made: a member removed through one server is
 * sent no more receipts by another, whose cache of the group's members would
 * otherwise have kept them for its lifetime (10 s).
 */
import { afterAll, beforeAll, expect, setDefaultTimeout, test } from "bun:test";
import { ChatSession, type ReceiptEvent } from "../client/session";
import { apartFrom, PASSWORD, Sessions, signup, startCluster, waitFor, type Cluster } from "./support/cluster";

setDefaultTimeout(60_000);

let cluster: Cluster;
const sessions = new Sessions(() => cluster.balancerAddr);
const quiet: ChatSession[] = [];

beforeAll(async () => {
  cluster = await startCluster({ servers: 2 });
  for (const name of ["ann", "ben", "cat"]) await signup(cluster.balancerAddr, name);
}, 60_000);

afterAll(async () => {
  for (const s of quiet) await s.close().catch(() => {});
  await sessions.closeAll();
  await cluster?.stop();
});

/** A device of `user` that shows nothing itself and records the receipts it is sent. */
async function watcher(user: string, receipts: ReceiptEvent[]): Promise<ChatSession> {
  const session = await ChatSession.open({
    balancer: cluster.balancerAddr,
    user,
    password: () => PASSWORD,
    persist: false,
    deviceKey: `watcher-${user}`,
    onReceipt: (r) => receipts.push(r),
  });
  quiet.push(session);
  return session;
}

test("a member removed through one server gets no receipt made on another afterwards; the members who stay do", async () => {
  const ann = await sessions.connect("ann");
  // cat reads on the other server: her receipts are made there, from its cache of the members.
  const cat = await apartFrom(cluster.balancerAddr, ann, await sessions.connect("cat"));
  const benSees: ReceiptEvent[] = [];
  const annSees: ReceiptEvent[] = [];
  await watcher("ben", benSees);
  await watcher("ann", annSees);

  await ann.session.createGroup("circle", ["ben", "cat"]);
  const conv = await ann.session.conversationOf({ group: "circle" });
  const first = await ann.session.sendGroupText("circle", "before");
  await waitFor(() => cat.texts().includes("before"), "cat to see the first message");
  // ben is a member: cat's server knows it, and he is told she read it.
  await waitFor(() => benSees.some((r) => r.conv === conv && r.user === "cat" && (r.read ?? 0) >= first.seq), "ben to get cat's read receipt");

  await ann.session.changeGroup("remove", "circle", ["ben"]);
  await waitFor(() => cat.received.some((m) => m.conv === conv && m.kind === "system" && m.seq > first.seq), "cat to see ben removed");
  const second = await ann.session.sendGroupText("circle", "after");
  await waitFor(() => cat.texts().includes("after"), "cat to see the second message");
  await waitFor(() => annSees.some((r) => r.conv === conv && r.user === "cat" && (r.read ?? 0) >= second.seq), "ann to get cat's read receipt for it");
  // What cat's server sent ann in that flush, it would have sent ben in the same one: give it the time a link takes.
  await Bun.sleep(500);
  expect(benSees.filter((r) => r.conv === conv && (r.read ?? 0) >= second.seq)).toEqual([]);
  expect(benSees.filter((r) => r.conv === conv && (r.delivered ?? 0) >= second.seq)).toEqual([]);
  await cat.session.close();
});
