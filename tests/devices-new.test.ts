/**
 * A device the person had not seen signs in as them: each of their other
 * devices says so, live (on another server too) or at its next login, once
 * per device; the new device itself, looking for the first time, names none;
 * a revoked device that signs in again with the password is named again.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { rmSync } from "node:fs";
import type { OwnDevice } from "../client/own-devices";
import { ChatSession } from "../client/session";
import { freshHome, PASSWORD, signup, startCluster, uniqueName, waitFor, type Cluster } from "./support/cluster";

let cluster: Cluster;
const homes: string[] = [];
const open: ChatSession[] = [];

beforeAll(async () => {
  cluster = await startCluster({ servers: 2 });
  // Servers find each other through the servers table once a second: let both peer links come up.
  await Bun.sleep(1_500);
}, 60_000);

afterAll(async () => {
  for (const s of open) await s.close().catch(() => {});
  await cluster.stop();
  for (const h of homes) rmSync(h, { recursive: true, force: true });
});

/** A device of `user`: the first one keeps its state on disk (its home), the others in memory under their own ids. */
async function device(user: string, id: string | undefined, seen: OwnDevice[]): Promise<ChatSession> {
  const session = await ChatSession.open({
    balancer: cluster.balancerAddr,
    user,
    password: () => PASSWORD,
    ...(id ? { deviceKey: id, persist: false } : {}),
    onNewDevice: (d) => seen.push(d),
  });
  open.push(session);
  return session;
}

async function close(session: ChatSession): Promise<void> {
  await session.close();
  open.splice(open.indexOf(session), 1);
}

test("a new device is named by the others, live and at their next login, once; a revoked one that signs in again is named again", async () => {
  const user = uniqueName("dana");
  await signup(cluster.balancerAddr, user);
  // Read at construction and at each save: one home for the whole test, the first device's.
  process.env.CHATTERBOX_HOME = freshHome(homes);
  const first: OwnDevice[] = [];
  let laptop = await device(user, undefined, first);
  await waitFor(() => laptop.store.get("devices.seen") !== undefined, "the laptop's first look");
  const second: OwnDevice[] = [];
  const phone = await device(user, `phone-${user}`, second);
  // Round robin: the second device is on the other server, so the event crossed the peer link.
  expect(phone.serverId).not.toBe(laptop.serverId);
  await waitFor(() => first.length === 1, "the laptop to name the phone");
  expect(first[0]).toMatchObject({ id: `phone-${user}`, current: false });
  // The phone looked for the first time: the laptop was there before it, so it names nothing.
  await waitFor(() => phone.store.get("devices.seen") !== undefined, "the phone's first look");
  expect(second).toEqual([]);

  // A device that signs in while the laptop is away is named at the laptop's next login, and the phone not again.
  await close(laptop);
  const tablet = await device(user, `tablet-${user}`, []);
  await close(tablet);
  const later: OwnDevice[] = [];
  laptop = await device(user, undefined, later);
  await waitFor(() => later.length === 1, "the laptop to name the tablet at its login");
  expect(later.map((d) => d.id)).toEqual([`tablet-${user}`]);
  await waitFor(() => second.length === 1, "the phone to name the tablet");
  expect(second.map((d) => d.id)).toEqual([`tablet-${user}`]);

  // Revoked, the tablet drops out of the list; back with the password, it is named again.
  await laptop.revokeDevice(`tablet-${user}`);
  // Each device looks at the list again on the revoke's event.
  const sees = (s: ChatSession, id: string) => (JSON.parse(s.store.get("devices.seen") ?? "[]") as string[]).includes(id);
  await waitFor(() => !sees(laptop, `tablet-${user}`) && !sees(phone, `tablet-${user}`), "the devices to see the tablet gone");
  const back = await device(user, `tablet-${user}`, []);
  await waitFor(() => later.length === 2, "the laptop to name the tablet back");
  expect(later[1]!.id).toBe(`tablet-${user}`);
  await close(back);
}, 60_000);
