// A tiny MLS round trip, compiled by tests/mls-binary.test.ts with `bun build --compile` and run far from
// node_modules: proof that ts-mls, its dynamic imports of @hpke and @noble included, lives inside a binary.
import { generateIdentity } from "../../crypto/keys.ts";
import { DeviceGroup, DeviceListBook, makeKeyPackage, newMlsDevice, signDeviceList } from "../../crypto/mls/index.ts";

const book = new DeviceListBook();
const devices = ["alice", "bob"].map((user) => {
  const identity = generateIdentity();
  const device = newMlsDevice({ user, deviceId: `${user}-d1` });
  const list = { user, version: 1, issuedAt: Date.now(), devices: [{ deviceId: device.deviceId, mlsKey: device.publicKey }] };
  book.accept(user, signDeviceList(list, identity.signPrivate), identity.signPublic);
  return device;
});
const alice = await DeviceGroup.create(new TextEncoder().encode("selfcheck"), devices[0]!, book);
const bobPackage = await makeKeyPackage(devices[1]!);
const added = await alice.add([bobPackage.encoded]);
await alice.receive(added.commit);
const bob = await DeviceGroup.join(added.welcome!, bobPackage, book);
const update = await bob.update();
await bob.receive(update.commit);
await alice.receive(update.commit);
const message = await alice.encrypt(new TextEncoder().encode("hello from inside the binary"));
const got = await bob.receive(message);
const replay = await bob.receive(message).then(
  () => "accepted",
  (err: { reason?: string }) => err.reason,
);
console.log(JSON.stringify({ epoch: Number(bob.epoch), text: got.kind === "application" ? new TextDecoder().decode(got.plaintext) : null, replay }));
