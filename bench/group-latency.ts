/**
 * Time from send to delivery at every member of a 100-member group spread over
 * two chat servers. Embedded PostgreSQL, a balancer in this process and two
 * servers as separate processes; members are raw protocol links (half on each
 * server). Every body is a real envelope sealed to all members with their
 * identity keys, so the servers move what they would move in production.
 *
 * Two runs:
 *  - paced: one message at a time, the next once every member has the last;
 *    per-member latency (send → that member's socket) and the time until the
 *    last member has it.
 *  - max rate: a window of messages in flight from the same sender; deliveries
 *    a second across all members, and latency under that load.
 *
 *   bun bench/group-latency.ts [--members 100] [--messages 200] [--burst 1000] [--window 32]
 */
import { rmSync } from "node:fs";
import { cpus, totalmem, type as osType, release } from "node:os";
import { parseArgs } from "node:util";
import { randomUUID } from "node:crypto";
import { loginKeys, signupAccount } from "../client/account";
import { groupLabel } from "../client/e2e";
import { encodeContent } from "../client/content";
import { seal } from "../crypto/envelope";
import type { IdentityKeys } from "../crypto/keys";
import { Link } from "../net/link";
import { scratchDir, startLocalSystem } from "./local-system";

process.env.CHATTERBOX_TEST_KDF = "1";
const { values } = parseArgs({
  options: {
    members: { type: "string", default: "100" },
    messages: { type: "string", default: "200" },
    burst: { type: "string", default: "1000" },
    window: { type: "string", default: "32" },
  },
});
const memberCount = Number(values.members);
const paced = Number(values.messages);
const burst = Number(values.burst);
const window = Number(values.window);
const PASSWORD = "bench password";

const dir = scratchDir("chatterbox-group-bench-");
const system = await startLocalSystem({ dir, log: (line) => console.error(line) });
const addrs = system.servers.map((s) => s.addr) as [string, string];

/** When each member received each message (by client message id), in ms from the send. */
const sentAt = new Map<string, number>();
const receivedBy = new Map<string, number[]>();
let deliveries = 0;

interface Member {
  name: string;
  link: Link;
  keys: IdentityKeys;
}

async function member(name: string, addr: string): Promise<Member> {
  const link = await Link.connect(addr, {
    hello: { role: "client", agent: "group-latency" },
    onEvent: (ev, frame) => {
      if (ev !== "msg") return;
      const at = performance.now();
      const m = frame.m as { cmid: string; kind: string };
      if (m.kind !== "chat") return;
      const sent = sentAt.get(m.cmid);
      if (sent === undefined) return;
      deliveries++;
      receivedBy.get(m.cmid)!.push(at - sent);
    },
  });
  const keys = await signupAccount(link, name, PASSWORD);
  await link.request("login", { user: name, auth: (await loginKeys(link, name, PASSWORD)).authKey, device: { id: `bench-${name}`.replace(/[^A-Za-z0-9_-]/g, "_").padEnd(8, "_"), name: "bench" } });
  await link.request("sync");
  return { name, link, keys };
}

const run = randomUUID().slice(0, 6);
const names = Array.from({ length: memberCount }, (_, i) => `g${run}m${i}`);
const members: Member[] = [];
const setupStart = performance.now();
// Ten at a time: the servers hash login keys with argon2id, off their event loops.
for (let i = 0; i < names.length; i += 10) {
  members.push(...(await Promise.all(names.slice(i, i + 10).map((n, j) => member(n, addrs[(i + j) % 2]!)))));
}
const sender = members[0]!;
const group = `bench${run}`;
await sender.link.request("group.create", { group, members: names.slice(1) });
const { epoch } = (await sender.link.request("group.members", { group })) as { epoch: number };
const recipients = members.slice(1).map((m) => ({ name: m.name, dh: m.keys.dhPublic }));
console.error(`setup: ${members.length} members signed up and logged in (${members.filter((_, i) => i % 2 === 0).length} on each server) in ${((performance.now() - setupStart) / 1000).toFixed(1)} s`);

function envelope(cmid: string, text: string): Uint8Array {
  return seal({
    header: { v: 1, from: sender.name, conv: groupLabel(group), cmid, sentAt: Date.now(), kind: "text" },
    plaintext: encodeContent({ kind: "text", text }),
    sender: sender.keys,
    recipients,
  });
}

const others = memberCount - 1;
const text = "x".repeat(100);

// --- paced: one at a time -----------------------------------------------------
const sealMs: number[] = [];
const ackMs: number[] = [];
for (let i = 0; i < paced; i++) {
  const cmid = randomUUID();
  const t0 = performance.now();
  const body = envelope(cmid, text);
  sealMs.push(performance.now() - t0);
  receivedBy.set(cmid, []);
  const start = performance.now();
  sentAt.set(cmid, start);
  await sender.link.request("send", { group, epoch, cmid, body });
  ackMs.push(performance.now() - start);
  const deadline = performance.now() + 5_000;
  while (receivedBy.get(cmid)!.length < others && performance.now() < deadline) await Bun.sleep(0);
}
const pacedIds = [...receivedBy.keys()];
const pacedAll = pacedIds.flatMap((c) => receivedBy.get(c)!);
const pacedLast = pacedIds.map((c) => Math.max(...receivedBy.get(c)!));
const missingPaced = pacedIds.reduce((n, c) => n + (others - receivedBy.get(c)!.length), 0);
const envelopeBytes = envelope(randomUUID(), text).length;

// --- max rate: a window in flight ----------------------------------------------
receivedBy.clear();
// Sealing is the sender's cost, measured above; here a few real envelopes are reused under new ids (the servers never open them).
const pool = Array.from({ length: 8 }, () => envelope(randomUUID(), text));
const bodies = Array.from({ length: burst }, (_, i) => ({ cmid: randomUUID(), body: pool[i % pool.length]! }));
deliveries = 0;
let next = 0;
const burstStart = performance.now();
await Promise.all(
  Array.from({ length: window }, async () => {
    while (next < bodies.length) {
      const { cmid, body } = bodies[next++]!;
      receivedBy.set(cmid, []);
      sentAt.set(cmid, performance.now());
      await sender.link.request("send", { group, epoch, cmid, body });
    }
  }),
);
const storedBy = performance.now();
const drainUntil = performance.now() + 30_000;
while (deliveries < burst * others && performance.now() < drainUntil) await Bun.sleep(5);
const burstEnd = performance.now();
const burstAll = [...receivedBy.values()].flat();
const burstLast = [...receivedBy.values()].map((l) => Math.max(...l));

// --- report ----------------------------------------------------------------------
function pct(values: number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!;
}
const ms = (v: number) => `${v.toFixed(1)} ms`;
const line = (label: string, v: number[]) => `${label}: p50 ${ms(pct(v, 50))}, p99 ${ms(pct(v, 99))}, max ${ms(Math.max(...v))}`;

console.log(`machine: ${cpus()[0]?.model}, ${cpus().length} cores, ${(totalmem() / 2 ** 30).toFixed(1)} GiB, ${osType()} ${release()}; PostgreSQL, balancer, both servers and all clients on this machine`);
console.log(`group of ${memberCount} members: ${Math.ceil(memberCount / 2)} on server A (the sender among them), ${Math.floor(memberCount / 2)} on server B; envelope sealed to all: ${envelopeBytes} bytes`);
console.log(`client cost, sealing one message to ${memberCount} members: ${line("seal", sealMs)}`);
console.log(`paced, ${paced} messages one at a time (${paced * others} deliveries, ${missingPaced} missing after 5 s each):`);
console.log(`  ${line("send → stored (ack)", ackMs)}`);
console.log(`  ${line("send → delivered, per member", pacedAll)}`);
console.log(`  ${line("send → last member has it", pacedLast)}`);
console.log(`max rate, ${burst} messages with ${window} in flight from one sender:`);
console.log(`  stored: ${Math.round(burst / ((storedBy - burstStart) / 1000))} msg/s; delivered: ${burstAll.length} of ${burst * others} in ${((burstEnd - burstStart) / 1000).toFixed(2)} s = ${Math.round(burstAll.length / ((burstEnd - burstStart) / 1000))} deliveries/s`);
console.log(`  ${line("send → delivered, per member", burstAll)}`);
console.log(`  ${line("send → last member has it", burstLast)}`);

for (const m of members) m.link.close();
await system.stop();
rmSync(dir, { recursive: true, force: true });
process.exit(0);
