/**
 * The server's MLS key package supply (server/keypackage-store.ts through
 * mls.keypackages.put / .claim): each one-time package is handed out once, even
 * to claims racing each other; the last-resort package when the supply is out;
 * nothing for a revoked device; and uploads that are not this device's own
 * key packages are refused with a typed error while the server keeps serving.
 */
import { afterAll, beforeAll, expect, setDefaultTimeout, test } from "bun:test";
import type { Link } from "../net/link";
import { makeKeyPackage, makeKeyPackageSupply, newMlsDevice } from "../crypto/mls/index.ts";
import { rawLink, signup, startCluster, type Cluster } from "./support/cluster";

setDefaultTimeout(60_000);

let cluster: Cluster;
const links: Link[] = [];

beforeAll(async () => {
  cluster = await startCluster({ servers: 2 });
  for (const name of ["kpalice", "kpbob", "kpcarol"]) await signup(cluster.balancerAddr, name);
}, 60_000);

afterAll(async () => {
  for (const l of links) l.close();
  await cluster?.stop();
});

async function link(name: string, server = 0, deviceKey?: string): Promise<Link> {
  const l = await rawLink(cluster.servers[server]!.addr, name, {}, undefined, deviceKey);
  links.push(l);
  return l;
}

const hex = (b: Uint8Array) => Buffer.from(b).toString("hex");
const refusal = (p: Promise<unknown>) => p.then(() => "accepted", (e: { code?: string }) => e.code ?? String(e));

test("each one-time key package is handed out once, then the last-resort one, again and again", async () => {
  const alice = await link("kpalice", 0);
  const device = newMlsDevice({ user: "kpalice", deviceId: "raw-kpalice-device" });
  const supply = await makeKeyPackageSupply(device, 3);
  const oneTime = supply.filter((p) => !p.lastResort).map((p) => p.encoded);
  const lastResort = supply.find((p) => p.lastResort)!.encoded;
  expect(await alice.request("mls.keypackages.put", { oneTime, lastResort })).toMatchObject({ oneTime: 3 });

  // claims from two servers at once: between them they get each one-time package once
  const bob = await link("kpbob", 1);
  const carol = await link("kpcarol", 0);
  const claims = await Promise.all([bob, carol, bob, carol].map((l) => l.request("mls.keypackages.claim", { user: "kpalice" }))) as { packages: { device: string; keyPackage: Uint8Array; lastResort: boolean }[] }[];
  const handed = claims.map((c) => c.packages[0]!);
  expect(handed.every((p) => p.device === "raw-kpalice-device")).toBe(true);
  expect(handed.filter((p) => !p.lastResort).map((p) => hex(p.keyPackage)).sort()).toEqual(oneTime.map(hex).sort());
  expect(handed.filter((p) => p.lastResort).map((p) => hex(p.keyPackage))).toEqual([hex(lastResort)]);

  const again = (await bob.request("mls.keypackages.claim", { user: "kpalice" })) as { packages: { keyPackage: Uint8Array; lastResort: boolean }[] };
  expect(again.packages.map((p) => [hex(p.keyPackage), p.lastResort])).toEqual([[hex(lastResort), true]]);
});

test("a claim covers every live device of the user, and none of a revoked one", async () => {
  const phone = await link("kpbob", 0, "kpbob-phone");
  const laptop = await link("kpbob", 1, "kpbob-laptop");
  for (const [l, id] of [[phone, "kpbob-phone"], [laptop, "kpbob-laptop"]] as const) {
    const kp = await makeKeyPackage(newMlsDevice({ user: "kpbob", deviceId: id }));
    await l.request("mls.keypackages.put", { oneTime: [kp.encoded] });
  }
  const carol = await link("kpcarol", 1);
  const both = (await carol.request("mls.keypackages.claim", { user: "kpbob" })) as { packages: { device: string }[] };
  expect(both.packages.map((p) => p.device).sort()).toEqual(["kpbob-laptop", "kpbob-phone"]);

  for (const [l, id] of [[phone, "kpbob-phone"], [laptop, "kpbob-laptop"]] as const) {
    const kp = await makeKeyPackage(newMlsDevice({ user: "kpbob", deviceId: id }));
    await l.request("mls.keypackages.put", { oneTime: [kp.encoded] });
  }
  await laptop.request("devices.revoke", { device: "kpbob-phone" });
  const one = (await carol.request("mls.keypackages.claim", { user: "kpbob" })) as { packages: { device: string }[] };
  expect(one.packages.map((p) => p.device)).toEqual(["kpbob-laptop"]);
  expect(await refusal(carol.request("mls.keypackages.claim", { user: "nobody-here" }))).toBe("E_NO_SUCH_USER");
});

test("uploads that are not this device's own key packages are refused, and the server serves on", async () => {
  const carol = await link("kpcarol", 0);
  const mine = newMlsDevice({ user: "kpcarol", deviceId: "raw-kpcarol-device" });
  const otherDevice = await makeKeyPackage(newMlsDevice({ user: "kpcarol", deviceId: "someone-elses" }));
  const otherUser = await makeKeyPackage(newMlsDevice({ user: "kpalice", deviceId: "raw-kpcarol-device" }));
  const lastResort = await makeKeyPackage(mine, { lastResort: true });
  const plain = await makeKeyPackage(mine);
  expect(await refusal(carol.request("mls.keypackages.put", { oneTime: [otherDevice.encoded] }))).toBe("E_BAD_REQUEST");
  expect(await refusal(carol.request("mls.keypackages.put", { oneTime: [otherUser.encoded] }))).toBe("E_BAD_REQUEST");
  expect(await refusal(carol.request("mls.keypackages.put", { oneTime: [lastResort.encoded] }))).toBe("E_BAD_REQUEST");
  expect(await refusal(carol.request("mls.keypackages.put", { lastResort: plain.encoded }))).toBe("E_BAD_REQUEST");
  expect(await refusal(carol.request("mls.keypackages.put", { oneTime: [new Uint8Array([1, 2, 3])] }))).toBe("E_BAD_REQUEST");
  expect(await refusal(carol.request("mls.keypackages.put", { oneTime: "nope" }))).toBe("E_BAD_REQUEST");
  expect(await refusal(carol.request("mls.keypackages.put", {}))).toBe("E_BAD_REQUEST");
  expect(await refusal(carol.request("mls.keypackages.put", { oneTime: [new Uint8Array(17 * 1024)] }))).toBe("E_MESSAGE_TOO_LARGE");
  // nothing refused was stored
  const probe = await link("kpalice", 1);
  expect(await probe.request("mls.keypackages.claim", { user: "kpcarol" })).toMatchObject({ packages: [] });
  expect(await carol.request("mls.keypackages.put", { oneTime: [plain.encoded], lastResort: lastResort.encoded })).toMatchObject({ oneTime: 1 });
});
