/**
 * Lists that grow with what others do come in pages that fit a frame (issue 14):
 * anyone can add anyone to groups, so a user in more groups than one page holds
 * gets them in two replies, each under the frame limit, and the client follows
 * the pages; the same for `who`, since anyone can write to anyone. The groups
 * here are made through the protocol, as an attacker would.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { encode } from "../protocol/codec";
import { DEFAULT_MAX_FRAME } from "../protocol/frame";
import { listPage, listPageRows } from "../protocol/limits";
import type { Link } from "../net/link";
import { provision } from "../bench/provision";
import { connectUser, rawLink, signup, startCluster, uniqueName, type Cluster, type TestUser } from "./support/cluster";

let cluster: Cluster;
let addr: string;

beforeAll(async () => {
  cluster = await startCluster({ servers: 1 });
  addr = cluster.servers[0]!.addr;
}, 60_000);

afterAll(async () => {
  await cluster?.stop();
});

test("a page of a list ends where it is full, and names where the next one starts", () => {
  const names = ["a", "b", "c", "d", "e"];
  expect(listPage(names, 5, (n) => n)).toEqual({ entries: names });
  expect(listPage(names, 4, (n) => n)).toEqual({ entries: ["a", "b", "c", "d"], next: "d" });
  // The default frame holds a full page of the longest entries.
  expect(listPageRows({ maxFrame: DEFAULT_MAX_FRAME })).toBe(1000);
  expect(listPageRows({ maxFrame: 64 * 1024 })).toBeLessThan(1000);
});

test("a user added to more groups than one page holds gets them in two replies that each fit a frame, and the client follows them", async () => {
  const victim = uniqueName("paged");
  const adder = uniqueName("adder");
  await signup(cluster.balancerAddr, victim);
  await signup(cluster.balancerAddr, adder);
  const rows = listPageRows({ maxFrame: DEFAULT_MAX_FRAME });
  const count = rows + 25;
  const link: Link = await rawLink(addr, adder);
  // Long names, so that a page is as large as a page of groups can be.
  const prefix = `${victim}-`.padEnd(24, "x");
  const names = Array.from({ length: count }, (_, i) => `${prefix}${String(i).padStart(5, "0")}`);
  for (let i = 0; i < names.length; i += 32) {
    await Promise.all(names.slice(i, i + 32).map((group) => link.request("group.create", { group, members: [victim] }, 60_000)));
  }
  link.close();

  const raw = await rawLink(addr, victim);
  const first = await raw.request("groups", {});
  const firstGroups = first.groups as { name: string }[];
  expect(firstGroups).toHaveLength(rows);
  expect(first.next).toBe(firstGroups[rows - 1]!.name);
  expect(encode(first).length).toBeLessThan(DEFAULT_MAX_FRAME);
  const second = await raw.request("groups", { after: first.next });
  expect((second.groups as { name: string }[]).map((g) => g.name)).toEqual(names.slice(rows));
  expect(second.next).toBeUndefined();
  raw.close();

  // The client asks again after each page's last name until there is no next.
  const user: TestUser = await connectUser(cluster.balancerAddr, victim);
  try {
    expect((await user.session.groups()).map((g) => g.name)).toEqual(names);
    // Everyone in those groups is the adder: one contact, one page.
    expect((await user.session.who()).map((c) => c.name)).toEqual([adder]);
  } finally {
    await user.session.close();
  }
});

test("a user with more contacts than one page holds gets `who` in two replies that each fit a frame, and the client follows them", async () => {
  const owner = uniqueName("popular");
  await signup(cluster.balancerAddr, owner);
  const rows = listPageRows({ maxFrame: DEFAULT_MAX_FRAME });
  // Accounts made straight in ChatDB (as the bench makes them): a signup each would hash a password each.
  const prefix = `${owner}c`;
  const names = Object.keys(await provision(cluster.url, prefix, rows + 1, "unused password", {}, () => {}));
  const link = await rawLink(addr, owner);
  // Two groups between them hold everyone (a group holds at most 1,000 with its creator).
  await link.request("group.create", { group: `${owner}-a`, members: names.slice(0, 999) }, 60_000);
  await link.request("group.create", { group: `${owner}-b`, members: names.slice(999) }, 60_000);
  const first = await link.request("who", {});
  expect(first.contacts as unknown[]).toHaveLength(rows);
  expect(typeof first.next).toBe("string");
  expect(encode(first).length).toBeLessThan(DEFAULT_MAX_FRAME);
  const second = await link.request("who", { after: first.next });
  expect(second.next).toBeUndefined();
  const paged = [...(first.contacts as { name: string }[]), ...(second.contacts as { name: string }[])].map((c) => c.name);
  expect([...paged].sort()).toEqual([...names].sort());
  link.close();

  const user: TestUser = await connectUser(cluster.balancerAddr, owner);
  try {
    expect((await user.session.who()).map((c) => c.name).sort()).toEqual([...names].sort());
  } finally {
    await user.session.close();
  }
});
