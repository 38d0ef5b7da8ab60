/**
 * One large file from a user on server A to a user on server B, with the real
 * clients (ChatSession: chunked encryption, upload window, resumable state on
 * disk) and two chat servers as separate processes over embedded PostgreSQL.
 * Reports upload, download and end-to-end throughput (send start → file
 * verified on disk), and each server's peak RSS during the transfer, read
 * from /proc/<pid>/status every 50 ms (and this process's, where both
 * clients run). The baseline is taken once the logins' argon2 memory has
 * been given back.
 *
 *   bun bench/file-transfer.ts [--mib 100] [--database-url URL]
 */
import { createHash, randomBytes } from "node:crypto";
import { closeSync, openSync, readFileSync, readSync, rmSync, writeSync } from "node:fs";
import { cpus } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { scratchDir, startLocalSystem } from "./local-system";

const { values } = parseArgs({ options: { mib: { type: "string", default: "100" }, "database-url": { type: "string" } } });
const MiB = 1024 * 1024;
const size = Number(values.mib) * MiB;

const dir = scratchDir("chatterbox-bench-files-");
process.env.CHATTERBOX_TEST_KDF = "1";
process.env.CHATTERBOX_HOME = join(dir, "home");
// Imported after CHATTERBOX_HOME is set: the client keeps its state there.
const { Link } = await import("../net/link");
const { askBalancer } = await import("../balancer/ask");
const { signupAccount } = await import("../client/account");
const { ChatSession } = await import("../client/session");
type Received = import("../client/session").Received;

const system = await startLocalSystem({ dir, databaseUrl: values["database-url"] });
const balancerAddr = system.balancer;
const servers = system.servers.map((s) => ({ id: s.id, pid: s.pid! }));

const PASSWORD = "bench password";
const run = randomBytes(3).toString("hex");
const [senderName, recipientName] = [`fa${run}`, `fb${run}`];
for (const name of [senderName, recipientName]) {
  const link = await Link.connect(await askBalancer(balancerAddr), { hello: { role: "client" } });
  await signupAccount(link, name, PASSWORD);
  link.close();
}

let announced: ((id: string) => void) | undefined;
const messages: Received[] = [];
const open = (user: string) =>
  ChatSession.open({
    balancer: balancerAddr,
    user,
    password: () => PASSWORD,
    persist: false,
    onMessage: (m) => {
      if (!m.file) return;
      messages.push(m);
      announced?.(m.file.id);
    },
  });
const sender = await open(senderName);
// Round robin alternates: the recipient's next try lands on the other server.
let recipient = await open(recipientName);
for (let attempt = 0; recipient.serverId === sender.serverId && attempt < 5; attempt++) {
  await recipient.close();
  recipient = await open(recipientName);
}
if (recipient.serverId === sender.serverId) throw new Error("could not place the two users on different servers");

// The file: random bytes, written and hashed a piece at a time.
const path = join(dir, "payload.bin");
const expected = createHash("sha256");
const fd = openSync(path, "w");
for (let at = 0; at < size; at += 4 * MiB) {
  const piece = randomBytes(Math.min(4 * MiB, size - at));
  expected.update(piece);
  writeSync(fd, piece);
}
closeSync(fd);
const expectedHash = expected.digest("hex");

const pids = [...servers.map((s) => s.pid), process.pid];
const rss = (pid: number) => Number(/VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"))![1]) * 1024;
// Logins hash with argon2 on the servers: wait (up to 5 s) until their RSS stops falling.
for (let i = 0, last = pids.map(rss); i < 25; i++) {
  await Bun.sleep(200);
  const now = pids.map(rss);
  if (now.every((n, j) => n > last[j]! - MiB)) break;
  last = now;
}
const baseline = pids.map(rss);
const peak = [...baseline];
const sampler = setInterval(() => pids.forEach((pid, i) => (peak[i] = Math.max(peak[i]!, rss(pid)))), 50);

const started = performance.now();
const arrived = new Promise<string>((resolve) => (announced = resolve));
const sent = await sender.sendFile({ to: recipientName }, path);
const uploaded = performance.now();
await arrived;
const message = messages.find((m) => m.file?.id === sent.file.id)!;
const downloadStarted = performance.now();
const saved = await recipient.fetchFile(message.file!, message.from);
const downloaded = performance.now();
const got = createHash("sha256");
const readFd = openSync(saved, "r");
const buf = Buffer.alloc(4 * MiB);
for (let n; (n = readSync(readFd, buf, 0, buf.length, null)) > 0; ) got.update(buf.subarray(0, n));
closeSync(readFd);
const verified = performance.now();
clearInterval(sampler);
if (got.digest("hex") !== expectedHash) throw new Error("the saved file differs from the one sent");

const rate = (ms: number) => `${(size / MiB / (ms / 1000)).toFixed(1)} MiB/s`;
const mib = (n: number) => `${(n / MiB).toFixed(1)} MiB`;
const role = (i: number) =>
  i === servers.length ? "clients (this proc)" : servers[i]!.id === sender.serverId ? "sender's server   " : servers[i]!.id === recipient.serverId ? "recipient's server" : `server ${i}`;
const cpu = cpus();
console.log(`machine: ${cpu[0]?.model}, ${cpu.length} cores; everything on this machine (${system.embedded ? "embedded PostgreSQL" : "PostgreSQL at --database-url"})`);
console.log(`one ${values.mib} MiB file, user on server A → user on server B, ${sent.file.chunks} chunks of ${sent.file.chunkSize / 1024} KiB`);
console.log(`upload (read, hash, seal, store, complete, message stored): ${((uploaded - started) / 1000).toFixed(2)} s = ${rate(uploaded - started)}`);
console.log(`download (fetch, open, write, hash check, move):           ${((downloaded - downloadStarted) / 1000).toFixed(2)} s = ${rate(downloaded - downloadStarted)}`);
console.log(`end to end (send start → file verified on disk):           ${((verified - started) / 1000).toFixed(2)} s = ${rate(verified - started)}`);
for (let i = 0; i < pids.length; i++) {
  console.log(`${role(i)} (pid ${pids[i]}): RSS ${mib(baseline[i]!)} before, peak ${mib(peak[i]!)} during (+${mib(peak[i]! - baseline[i]!)})`);
}

await sender.close();
await recipient.close();
await system.stop();
rmSync(dir, { recursive: true, force: true });
process.exit(0);
