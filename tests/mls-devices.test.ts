/**
 * A new device of a member who is already in a group chat is no membership
 * change: it is added by that member's other device (or an admin's), never by
 * another member's, so that the device that joins can check who added it and
 * shows no warning. Real servers, real clients, a second home for the laptop.
 */
import { expect, setDefaultTimeout, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Database } from "../db/connect";
import { mlsWorld } from "./support/mls-world";
import { connectPersistent, uniqueName, until, waitFor, type Cluster, type TestUser } from "./support/cluster";

setDefaultTimeout(90_000);

let db: Database;
let cluster: Cluster;
const world = mlsWorld("mls-devices", 2, (c, d) => ((cluster = c), (db = d)));

/** A session's next one on the same device (a restarted client asks for the device lists at once). */
async function again(u: TestUser, home = world.home): Promise<TestUser> {
  await u.session.close();
  const next = await connectPersistent(cluster.balancerAddr, home, u.name);
  world.open.push(next);
  process.env.CHATTERBOX_HOME = world.home;
  return next;
}

test("a member's new device is added by the member's own device, not by another member's, and joins without a warning", async () => {
  const [alice, bob, carol] = await world.people("da", "db", "dc");
  const group = uniqueName("d");
  await alice!.session.createGroup(group, [bob!.name, carol!.name]);
  await alice!.session.sendGroupText(group, "start");
  await waitFor(() => bob!.texts().includes("start") && carol!.texts().includes("start"), "bob and carol to read");

  // bob's laptop: another home, its own device id and MLS key, on bob's signed list
  const laptopHome = mkdtempSync(join(tmpdir(), "chatterbox-mls-devices-laptop-"));
  const laptop = await connectPersistent(cluster.balancerAddr, laptopHome, bob!.name);
  world.open.push(laptop);
  process.env.CHATTERBOX_HOME = world.home;
  await until(async () => {
    const [row] = await db.sql`select count(*)::int as n from devices d join users u on u.id = d.user_id join key_packages k on k.device_id = d.id
                               where u.name = ${bob!.name} and k.last_resort`;
    return row!.n === 2;
  }, "the laptop to publish");

  // carol (no admin) sends first, with bob's new list in hand: she does not add bob's laptop
  const carol2 = await again(carol!);
  await carol2.session.sendGroupText(group, "from carol");
  await waitFor(() => bob!.texts().includes("from carol"), "bob to read carol");
  // bob's phone does, at its next message
  const bob2 = await again(bob!);
  await bob2.session.sendGroupText(group, "from bob");
  // (bob's own messages reach his laptop as his own)
  await waitFor(() => laptop.own.some((m) => m.text === "from bob"), "the laptop to read bob's phone");
  expect(laptop.own.filter((m) => m.text === "from bob").every((m) => m.verified)).toBe(true);

  // no warning: every member is confirmed on the laptop, and the admin is the group's own word
  const members = (await laptop.session.groupMembers(group)) as { members: { name: string; unconfirmed?: true; adminUnconfirmed?: true }[] };
  expect(members.members.filter((m) => m.unconfirmed || m.adminUnconfirmed)).toEqual([]);
  const inner = (laptop.session as unknown as { mls: { conversations: { joinDoubt(label: string): string | undefined } } }).mls;
  expect(inner.conversations.joinDoubt(`group:${group}`)).toBeUndefined();

  // and everyone reads the laptop
  await laptop.session.sendGroupText(group, "from the laptop");
  await waitFor(() => [alice!, carol2].every((u) => u.texts().includes("from the laptop")), "alice and carol to read the laptop");
  await laptop.session.close();
  rmSync(laptopHome, { recursive: true, force: true });
});
