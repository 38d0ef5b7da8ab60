// Micro-benchmark of MLS (crypto/mls) against today's envelopes: the cost of one message and one commit
// for 2 and 100 members, and the bytes on the wire.
//   ./node_modules/.bin/bun bench/crypto-mls.ts
import os from "node:os";
import { generateIdentity, seal, type EnvelopeHeader } from "../crypto/index.ts";
import { DeviceGroup, DeviceListBook, makeKeyPackage, newMlsDevice, signDeviceList, type MlsDevice } from "../crypto/mls/index.ts";

/** Runs `round` (which times its own part and returns ms) until ~minMs are spent, and reports µs per op. */
async function bench(label: string, round: () => Promise<number>, minMs = 1500): Promise<void> {
  for (let i = 0; i < 3; i++) await round();
  let n = 0;
  let spent = 0;
  const start = performance.now();
  while (performance.now() - start < minMs) {
    spent += await round();
    n++;
  }
  console.log(`${label.padEnd(52)} ${((spent * 1000) / n).toFixed(1).padStart(10)} µs/op   (${n} iterations)`);
}

async function timed(fn: () => Promise<unknown>): Promise<number> {
  const t = performance.now();
  await fn();
  return performance.now() - t;
}

/** A group of `size` devices made by the first; only the first and the last keep state (the others never join). */
async function groupOf(size: number): Promise<{ sender: DeviceGroup; receiver: DeviceGroup; commitBytes: number; welcomeBytes: number }> {
  const book = new DeviceListBook();
  const devices: MlsDevice[] = [];
  for (let i = 0; i < size; i++) {
    const user = `user${i}`;
    const identity = generateIdentity();
    const device = newMlsDevice({ user, deviceId: `${user}-d1` });
    book.accept(user, signDeviceList({ user, version: 1, issuedAt: Date.now(), devices: [{ deviceId: device.deviceId, mlsKey: device.publicKey }] }, identity.signPrivate), identity.signPublic);
    devices.push(device);
  }
  // with the roles extension (the admin list every member checks commits against), as a group chat has it
  const sender = await DeviceGroup.create(new TextEncoder().encode(`bench-${size}`), devices[0]!, book, { kind: "admins", admins: ["user0"] });
  const packages = await Promise.all(devices.slice(1).map((d) => makeKeyPackage(d)));
  const { commit, welcome } = await sender.add(packages.map((p) => p.encoded));
  await sender.receive(commit);
  const receiver = await DeviceGroup.join(welcome!, packages.at(-1)!, book);
  return { sender, receiver, commitBytes: commit.length, welcomeBytes: welcome!.length };
}

const cpus = os.cpus();
console.log(`machine: ${cpus[0]?.model ?? "unknown CPU"}, ${cpus.length} cores, ${os.platform()} ${os.arch()}, Bun ${Bun.version}`);
const text = new TextEncoder().encode("x".repeat(100));

// today's envelope to 100 recipients, for the size comparison
const alice = generateIdentity();
const recipients = Array.from({ length: 100 }, (_, i) => ({ name: `user${i}`, dh: generateIdentity().dhPublic }));
const header: EnvelopeHeader = { v: 1, from: "alice", conv: "group:friends", cmid: "01J9ZK3Q7C8M2W5X4Y6V0B1N3P", sentAt: Date.now(), kind: "text" };
const envelope100 = seal({ header, plaintext: text, sender: alice, recipients });

for (const size of [2, 100]) {
  const t = performance.now();
  const { sender, receiver, commitBytes, welcomeBytes } = await groupOf(size);
  const setupMs = performance.now() - t;
  const one = await sender.encrypt(text);
  await receiver.receive(one);
  console.log(`\n${size} members (made in ${setupMs.toFixed(0)} ms): add-all commit ${commitBytes} B, welcome ${welcomeBytes} B, MLS ciphertext of a 100-char text ${one.length} B`);
  if (size === 100) console.log(`today's envelope of the same text to 100 recipients: ${envelope100.length} B`);

  await bench(`encrypt, 100 chars, ${size} members`, () => timed(() => sender.encrypt(text)));
  // a fresh epoch: the receiver refuses a sender more than 1,000 messages ahead of what it has read
  const { commit: fresh } = await sender.update();
  await sender.receive(fresh);
  await receiver.receive(fresh);
  // messages are made outside the timed part, then opened in order as the server would deliver them
  await bench(`decrypt, 100 chars, ${size} members`, async () => {
    const m = await sender.encrypt(text);
    return timed(() => receiver.receive(m));
  });
  let updateBytes = 0;
  await bench(`update commit: make, ${size} members`, async () => {
    let c!: Uint8Array;
    const ms = await timed(async () => (c = (await sender.update()).commit));
    updateBytes = c.length;
    await sender.receive(c);
    await receiver.receive(c);
    return ms;
  }, 2000);
  await bench(`update commit: process (another member), ${size} members`, async () => {
    const { commit } = await sender.update();
    await sender.receive(commit);
    return timed(() => receiver.receive(commit));
  }, 2000);
  console.log(`update commit size, ${size} members: ${updateBytes} B`);
}
