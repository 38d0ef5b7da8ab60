/**
 * A quick measure of direct-message throughput across two servers: how many
 * messages a second are stored (acknowledged) and delivered, with the real
 * protocol over real sockets. Servers run as separate processes; the load is
 * closed-loop, a window of messages in flight per sender. Bodies are random
 * bytes of the size of a sealed 100-character message: encryption is the
 * clients' cost (bench/crypto.ts), not the servers'.
 *
 *   bun bench/dm-quick.ts [--pairs 100] [--seconds 10] [--window 32]
 */
import { rmSync } from "node:fs";
import { cpus } from "node:os";
import { parseArgs } from "node:util";
import { randomUUID } from "node:crypto";
import { Link } from "../net/link";
import { loginKeys, signupAccount } from "../client/account";
import { scratchDir, startLocalSystem } from "./local-system";

process.env.CHATTERBOX_TEST_KDF = "1";
const { values } = parseArgs({ options: { pairs: { type: "string", default: "100" }, seconds: { type: "string", default: "10" }, window: { type: "string", default: "32" } } });
const pairs = Number(values.pairs);
const seconds = Number(values.seconds);
const window = Number(values.window);

const dir = scratchDir("chatterbox-bench-");
const system = await startLocalSystem({ dir });
const [a, b] = system.servers.map((s) => s.addr) as [string, string];

async function account(name: string, addr: string, onMsg?: () => void): Promise<Link> {
  const link = await Link.connect(addr, { hello: { role: "client" }, onEvent: (ev) => ev === "msg" && onMsg?.() });
  await signupAccount(link, name, "bench password").catch(() => {});
  await link.request("login", { user: name, auth: (await loginKeys(link, name, "bench password")).authKey, device: { id: `bench-${name}`.replace(/[^A-Za-z0-9_-]/g, "_").padEnd(8, "_"), name: "bench" } });
  await link.request("sync");
  return link;
}

let delivered = 0;
let acked = 0;
const run = randomUUID().slice(0, 6);
const senders: Link[] = [];
for (let i = 0; i < pairs; i++) {
  await account(`r${run}${i}`, b, () => delivered++);
  senders.push(await account(`s${run}${i}`, a));
}
const body = crypto.getRandomValues(new Uint8Array(407));
const deadline = Date.now() + seconds * 1000;
const started = Date.now();
await Promise.all(
  senders.map(async (link, i) => {
    const to = `r${run}${i}`;
    const lane = async () => {
      while (Date.now() < deadline) {
        await link.request("send", { to, cmid: randomUUID(), body });
        acked++;
      }
    };
    await Promise.all(Array.from({ length: window }, lane));
  }),
);
const elapsed = (Date.now() - started) / 1000;
const drainUntil = Date.now() + 10_000;
while (delivered < acked && Date.now() < drainUntil) await Bun.sleep(20);

console.log(`machine: ${cpus()[0]?.model}, ${cpus().length} cores; everything on this machine`);
console.log(`${pairs} senders on one server → ${pairs} recipients on the other, window ${window}, ${elapsed.toFixed(1)} s`);
console.log(`stored (acknowledged): ${acked} = ${Math.round(acked / elapsed)} msg/s`);
console.log(`delivered: ${delivered} (${acked - delivered} not delivered after a 10 s drain)`);

await system.stop();
rmSync(dir, { recursive: true, force: true });
process.exit(0);
