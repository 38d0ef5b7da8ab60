/**
 * The hostile bench (issue 14): neighbours chat in pairs on one chat server,
 * first alone, then alongside attackers of every kind, and we report the
 * neighbours' message latency (send to delivery, p50/p99) in both runs and the
 * server's peak RSS. The attackers run in their own process, so that their
 * work does not slow the neighbours' side of the measurement.
 *
 *   bun bench/hostile.ts [--attackers 1000] [--neighbours 20] [--duration 10] [--only KIND] [--data DIR] [--json] [--nice-attackers] [--server-args="--admission-lag-ms 0"]
 *
 * The attackers' process shares the machine's cores with the server; with
 * --nice-attackers it runs at nice 19, as if it were another machine (the
 * cores it would take are the server's first). The report says which.
 *
 * Attackers, by share of --attackers:
 *  - strangers (60%): connect, say hello, send a header and part of a frame, and wait;
 *  - non-readers (20%): log in, stop reading, and pipeline history requests;
 *  - signup flooders (10%): pipeline signups (argon2id) before login;
 *  - send flooders (10%): log in and send as fast as the link takes it.
 * Every loop is bounded in time; everything runs on 127.0.0.1 and stops by itself.
 *
 * Each run also says where the neighbours' time went: their sends' reply time
 * (the commit) and a ping's (the server's event loop), the CPU of the server,
 * its loop thread, PostgreSQL, the attackers and the machine, how long the
 * loop waited for a core, and the group commits and outboxes from the
 * server's metrics (read before and after a run, never during: see Scraper).
 */
import { readFileSync } from "node:fs";
import { parseArgs } from "node:util";
import { Link } from "../net/link";
import { encode } from "../protocol/codec";
import { newHistogram, percentiles, type Histogram } from "./hist";
import { CpuMeter, rssBytes, tree } from "./procstat";
import { provision } from "./provision";
import { openBenchDatabase, startSystem } from "./system";

const PASSWORD = "bench hostile password";

/** One run of the neighbours: their latencies, and what the server did meanwhile. */
interface Phase {
  p50Ms: number;
  p99Ms: number;
  messages: number;
  /** The neighbours' sends refused, by code. */
  refused: Record<string, number>;
  /** Send to its reply: the commit, with the queue ahead of it. */
  ackP99Ms: number;
  /** A ping's round trip: the server's event loop lag. */
  pingP99Ms: number;
  /** Percent of one core: the chat server, its main thread (the event loop), and PostgreSQL (every backend). */
  serverCpu: number;
  loopCpu: number;
  /** Percent of the time the event loop's thread was ready to run but waited for a core (the machine's other work). */
  loopWaitingForCpu: number;
  postgresCpu: number;
  /** Percent of one core used by the attackers' own process (it shares the machine), and by the whole machine (every core). */
  attackersCpu: number;
  machineCpu: number;
  commits: Awaited<ReturnType<Scraper["stop"]>>;
}

interface Report {
  attackers: number;
  neighbours: number;
  durationS: number;
  baseline: Phase;
  underAttack: Phase;
  p99Ratio: number;
  serverPeakRssMiB: number;
  attackerOutcomes: Record<string, number>;
  /** Whether the attackers ran at nice 19 (--nice-attackers). */
  attackersNiced: boolean;
}

async function resumed(addr: string, user: string, token: string, onEvent?: (ev: string, frame: Record<string, unknown>) => void): Promise<Link> {
  const link = await Link.connect(addr, { hello: { role: "client" }, onEvent });
  await link.request("resume", { user, token }, 60_000);
  await link.request("sync", {}, 60_000);
  return link;
}

/** Where a neighbour's time goes: send to delivery, send to its reply (the commit), and a ping's round trip (the server's loop). */
interface Timings {
  delivery: Histogram;
  ack: Histogram;
  ping: Histogram;
  /** Neighbours' sends refused, by code: a refused message is not in the latencies, so it is counted here. */
  refused: Record<string, number>;
}

/** Pairs of neighbours message each other every `everyMs`; returns the send-to-delivery latencies. */
async function neighbours(addr: string, names: string[], tokens: Record<string, string>, durationS: number, everyMs = 100): Promise<Timings> {
  const hist = newHistogram();
  const ack = newHistogram();
  const ping = newHistogram();
  const refused: Record<string, number> = {};
  // By client message id: only what this run sent counts (a backlog from an earlier run replays at login).
  const sentAt = new Map<string, number>();
  const links = await Promise.all(
    names.map((name) =>
      resumed(addr, name, tokens[name]!, (ev, frame) => {
        if (ev !== "msg") return;
        const cmid = (frame.m as { cmid?: string } | undefined)?.cmid;
        const t0 = cmid === undefined ? undefined : sentAt.get(cmid);
        if (t0 === undefined) return;
        sentAt.delete(cmid!);
        hist.recordValue(Math.max(1, Math.round((performance.now() - t0) * 1000)));
      }),
    ),
  );
  const until = performance.now() + durationS * 1000;
  const us = (t0: number) => Math.max(1, Math.round((performance.now() - t0) * 1000));
  // A ping needs nothing but the server's event loop: its round trip is the loop's lag plus the network.
  const pinger = (async () => {
    while (performance.now() < until) {
      const t0 = performance.now();
      await links[0]!.request("ping", {}).then(() => ping.recordValue(us(t0)), () => {});
      await Bun.sleep(20);
    }
  })();
  await Promise.all(
    links.map(async (link, i) => {
      const partner = names[i ^ 1]!;
      while (performance.now() < until) {
        const cmid = crypto.randomUUID();
        const t0 = performance.now();
        sentAt.set(cmid, t0);
        await link.request("send", { to: partner, cmid, body: new Uint8Array(400) }).then(
          () => ack.recordValue(us(t0)),
          (e) => (refused[e?.code ?? "error"] = (refused[e?.code ?? "error"] ?? 0) + 1),
        );
        await Bun.sleep(everyMs);
      }
    }),
  );
  await pinger;
  await Bun.sleep(500);
  for (const l of links) l.close();
  return { delivery: hist, ack, ping, refused };
}

/**
 * The server's group commits during a run, from its metrics read before and
 * after. Not sampled during the run: a scrape costs the server's loop ~200 ms
 * (prom-client's heap-space figures walk the heap), which would be the largest
 * delay measured.
 */
class Scraper {
  private first: Record<string, number> = {};

  constructor(private readonly url: string) {}

  private async scrape(): Promise<Record<string, number>> {
    const text = await fetch(this.url).then((r) => r.text(), () => "");
    const values: Record<string, number> = {};
    for (const line of text.split("\n")) {
      const m = /^(chatterbox_commit_batch_messages_(?:sum|count)|chatterbox_commit_duration_seconds_sum|chatterbox_outbox_bytes) (\S+)$/.exec(line);
      if (m) values[m[1]!] = Number(m[2]);
      // The histograms' buckets too: how many batches were large, and how many commits slow.
      const b = /^(chatterbox_commit_batch_messages|chatterbox_commit_duration_seconds)_bucket\{.*le="([^"]+)".*\} (\S+)$/.exec(line);
      if (b) values[`${b[1]}<=${b[2]}`] = Number(b[3]);
    }
    return values;
  }

  async start(): Promise<void> {
    this.first = await this.scrape();
    await Bun.sleep(500);
  }

  async stop(): Promise<{ batches: number; batchMean: number; commitMeanMs: number; batchesOver500: number; commitsOver100Ms: number; outboxMiB: number }> {
    const last = await this.scrape();
    const d = (k: string) => (last[k] ?? 0) - (this.first[k] ?? 0);
    const batches = d("chatterbox_commit_batch_messages_count");
    return {
      batches,
      batchMean: Math.round(d("chatterbox_commit_batch_messages_sum") / Math.max(1, batches)),
      commitMeanMs: Math.round((d("chatterbox_commit_duration_seconds_sum") / Math.max(1, batches)) * 10000) / 10,
      // A large batch is a long commit and then as many replies and deliveries in one turn of the loop.
      batchesOver500: batches - d("chatterbox_commit_batch_messages<=500"),
      commitsOver100Ms: batches - d("chatterbox_commit_duration_seconds<=0.1"),
      // Unsent bytes queued for slow sockets, summed over the server's connections, at the end of the run.
      outboxMiB: Math.round((last.chatterbox_outbox_bytes ?? 0) / 1024 / 102.4) / 10,
    };
  }
}

/** The attacker process: `bun bench/hostile.ts --attack ADDR N DURATION` with the tokens on stdin. */
async function attack(addr: string, n: number, durationS: number, tokens: Record<string, string>): Promise<Record<string, number>> {
  const outcomes: Record<string, number> = {};
  const count = (what: string) => (outcomes[what] = (outcomes[what] ?? 0) + 1);
  const until = Date.now() + durationS * 1000;
  const names = Object.keys(tokens);
  const kinds = [
    ...Array.from({ length: Math.floor(n * 0.6) }, () => "stranger"),
    ...Array.from({ length: Math.floor(n * 0.2) }, () => "nonreader"),
    ...Array.from({ length: Math.floor(n * 0.1) }, () => "signups"),
  ];
  while (kinds.length < n) kinds.push("sender");
  // --only KIND: every attacker of that kind, to see what each costs the neighbours.
  const only = process.env.HOSTILE_ONLY;
  if (only) kinds.fill(only);
  let account = 0;
  const one = async (kind: string) => {
    const link = await Link.connect(addr, { hello: { role: "client" }, onBye: (e) => count(`${kind}: bye ${e.code}`), timeoutMs: 30_000 });
    const raw = link as unknown as { socket: { pause(): void; write(b: Uint8Array): number } };
    switch (kind) {
      case "stranger": {
        // A header for 1 MiB, then a few bytes of its body: held (or refused) until the server decides.
        raw.socket.write(new Uint8Array([0, 0x10, 0, 0, 1, 2, 3]));
        break;
      }
      case "nonreader": {
        const name = names[account++ % names.length]!;
        await link.request("resume", { user: name, token: tokens[name] }, 60_000);
        raw.socket.pause();
        for (let i = 0; i < 2000 && Date.now() < until; i++) link.sendRaw(encode({ t: "req", id: 1_000_000 + i, op: "history", with: names[0], limit: 1000 }));
        break;
      }
      case "signups": {
        const auth = new Uint8Array(32);
        for (let i = 0; Date.now() < until && i < 200; i++) {
          await link
            .request("signup", { user: `hx${process.pid}${i}${Math.floor(Math.random() * 1e6)}`, auth, salt: new Uint8Array(16), kdf: { alg: "scrypt", N: 1024, r: 8, p: 1 }, dh: new Uint8Array(32), sign: new Uint8Array(32), backup: new Uint8Array(64) }, 30_000)
            .then(() => count("signups: accepted"), (e) => count(`signups: ${e.code}`));
        }
        break;
      }
      case "sender": {
        const name = names[account++ % names.length]!;
        await link.request("resume", { user: name, token: tokens[name] }, 60_000);
        while (Date.now() < until) {
          await Promise.all(
            Array.from({ length: 32 }, () =>
              link.request("send", { to: names[0], cmid: crypto.randomUUID(), body: new Uint8Array(400) }).then(() => count("sends: accepted"), (e) => count(`sends: ${e.code}`)),
            ),
          );
        }
        break;
      }
    }
    while (Date.now() < until) await Bun.sleep(200);
    link.close();
  };
  await Promise.all(kinds.map((k) => one(k).catch((e) => count(`${k}: ${e?.code ?? "error"}`))));
  return outcomes;
}

const p99 = (h: Histogram) => percentiles(h)?.p99 ?? 0;

/** Seconds the main thread waited, runnable, for a core (schedstat's second field, in ns). */
function loopWaitSeconds(pid: number): number {
  try {
    return Number(readFileSync(`/proc/${pid}/task/${pid}/schedstat`, "utf8").split(" ")[1]) / 1e9;
  } catch {
    return 0;
  }
}

/** CPU seconds of a process's main thread: where its event loop runs (argon2id runs on others). */
function loopSeconds(pid: number): number {
  try {
    const stat = readFileSync(`/proc/${pid}/task/${pid}/stat`, "utf8");
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return (Number(fields[11]) + Number(fields[12])) / 100;
  } catch {
    return 0;
  }
}

/** Busy and total jiffies of the whole machine, every core (/proc/stat's first line). */
function machineJiffies(): { busy: number; total: number } {
  const f = readFileSync("/proc/stat", "utf8").split("\n")[0]!.trim().split(/\s+/).slice(1).map(Number);
  const total = f.reduce((a, b) => a + b, 0);
  return { busy: total - f[3]! - (f[4] ?? 0), total };
}

/** Runs the neighbours once while measuring the server's CPU, PostgreSQL's and the group commits. */
async function phase(run: () => Promise<Timings>, scraper: Scraper, serverPid: number, postgresPid: number | undefined, attackersPid?: number): Promise<Phase> {
  await scraper.start();
  const server = new CpuMeter(() => [serverPid]);
  const postgres = new CpuMeter(() => (postgresPid ? tree(postgresPid) : []));
  const attackers = new CpuMeter(() => (attackersPid ? [attackersPid] : []));
  attackers.begin();
  const machine0 = machineJiffies();
  const loop0 = loopSeconds(serverPid);
  const wait0 = loopWaitSeconds(serverPid);
  const t0 = performance.now();
  server.begin();
  postgres.begin();
  const t = await run();
  const p = percentiles(t.delivery);
  return {
    p50Ms: p?.p50 ?? 0,
    p99Ms: p?.p99 ?? 0,
    messages: t.delivery.totalCount,
    refused: t.refused,
    ackP99Ms: p99(t.ack),
    pingP99Ms: p99(t.ping),
    serverCpu: server.end(),
    loopCpu: Math.round(((loopSeconds(serverPid) - loop0) / ((performance.now() - t0) / 1000)) * 1000) / 10,
    loopWaitingForCpu: Math.round(((loopWaitSeconds(serverPid) - wait0) / ((performance.now() - t0) / 1000)) * 1000) / 10,
    postgresCpu: postgres.end(),
    attackersCpu: attackers.end(),
    machineCpu: (() => {
      const m = machineJiffies();
      return Math.round(((m.busy - machine0.busy) / Math.max(1, m.total - machine0.total)) * navigator.hardwareConcurrency * 1000) / 10;
    })(),
    commits: await scraper.stop(),
  };
}

const describe = (p: Phase) =>
  `p50 ${p.p50Ms.toFixed(2)} ms, p99 ${p.p99Ms.toFixed(2)} ms (${p.messages} messages, refused ${JSON.stringify(p.refused)}); reply p99 ${p.ackP99Ms.toFixed(1)} ms, ping p99 ${p.pingP99Ms.toFixed(1)} ms; ` +
  `CPU server ${p.serverCpu}% (loop ${p.loopCpu}%, loop waiting for a core ${p.loopWaitingForCpu}%), PostgreSQL ${p.postgresCpu}%, attackers ${p.attackersCpu}%, machine ${p.machineCpu}% of ${navigator.hardwareConcurrency * 100}%; ${p.commits.batches} commits of ${p.commits.batchMean} in ${p.commits.commitMeanMs} ms (${p.commits.batchesOver500} of over 500, ${p.commits.commitsOver100Ms} over 100 ms); outboxes ${p.commits.outboxMiB} MiB at the end`;

/** A port nothing listens on now, for the server's metrics. */
async function freePort(): Promise<number> {
  const probe = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } });
  const port = probe.port;
  probe.stop(true);
  return port;
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      attackers: { type: "string", default: "1000" },
      neighbours: { type: "string", default: "20" },
      duration: { type: "string", default: "10" },
      json: { type: "boolean", default: false },
      data: { type: "string" },
      attack: { type: "string" },
      only: { type: "string" },
      // The attackers' process at nice 19: as if it ran on another machine, so that it takes no core the server wants (see PERFORMANCE.md).
      "nice-attackers": { type: "boolean", default: false },
      // More flags for the chat server, space-separated (e.g. --server-args="--admission-lag-ms 0"), to compare settings.
      "server-args": { type: "string", default: "" },
    },
    allowPositionals: true,
  });
  const duration = Math.min(120, Number(values.duration));
  if (values.only) process.env.HOSTILE_ONLY = values.only;
  if (values.attack) {
    const tokens = JSON.parse(await new Response(Bun.stdin.stream()).text());
    const outcomes = await attack(values.attack, Number(values.attackers), duration, tokens);
    console.log(JSON.stringify(outcomes));
    process.exit(0);
  }
  const attackers = Number(values.attackers);
  const neighbourCount = Math.max(2, Number(values.neighbours) & ~1);
  const log = (line: string) => values.json || console.error(line);
  const db = await openBenchDatabase({ log, dataDir: values.data });
  const metricsPort = await freePort();
  const system = await startSystem({ url: db.url, servers: 1, strategy: "roundrobin", log, serverArgs: ["--metrics", `127.0.0.1:${metricsPort}`, ...values["server-args"]!.split(" ").filter(Boolean)] });
  const scraper = new Scraper(`http://127.0.0.1:${metricsPort}/metrics`);
  try {
    const [server] = await system.servers();
    const names = Array.from({ length: neighbourCount }, (_, i) => `hostile-n${i}`);
    const tokens = await provision(db.url, "hostile-n", neighbourCount, PASSWORD, {}, log);
    const attackerTokens = await provision(db.url, "hostile-a", Math.max(1, Math.ceil(attackers * 0.3)), PASSWORD, {}, log);
    let peak = 0;
    const sampler = setInterval(() => (peak = Math.max(peak, rssBytes(server!.pid!) ?? 0)), 100);
    log(`baseline: ${neighbourCount} neighbours for ${duration} s`);
    const baseline = await phase(() => neighbours(server!.addr, names, tokens, duration), scraper, server!.pid!, db.pid);
    log(`under attack: ${attackers} attackers alongside`);
    const niced = values["nice-attackers"] ? ["nice", "-n", "19"] : [];
    const child = Bun.spawn([...niced, process.execPath, import.meta.path, "--attack", server!.addr, "--attackers", String(attackers), "--duration", String(duration + 10)], {
      stdin: new Blob([JSON.stringify(attackerTokens)]),
      env: { ...process.env },
      stdout: "pipe",
      stderr: "inherit",
    });
    await Bun.sleep(3000); // the attackers connect first
    const underAttack = await phase(() => neighbours(server!.addr, names, tokens, duration), scraper, server!.pid!, db.pid, child.pid);
    const outcomes = JSON.parse((await new Response(child.stdout).text()).trim().split("\n").pop() || "{}");
    await child.exited;
    clearInterval(sampler);
    const report: Report = {
      attackers,
      neighbours: neighbourCount,
      durationS: duration,
      baseline,
      underAttack,
      p99Ratio: baseline.p99Ms > 0 ? underAttack.p99Ms / baseline.p99Ms : 0,
      serverPeakRssMiB: Math.round(peak / 1024 / 1024),
      attackerOutcomes: outcomes,
      attackersNiced: values["nice-attackers"]!,
    };
    if (values.json) console.log(JSON.stringify(report));
    else {
      console.log(`neighbours alone:     ${describe(baseline)}`);
      console.log(`with ${attackers} attackers: ${describe(underAttack)}`);
      console.log(`p99 ratio ${report.p99Ratio.toFixed(2)}${report.attackersNiced ? " (attackers at nice 19)" : " (attackers at the server's priority, on the same cores)"}`);
      console.log(`server peak RSS: ${report.serverPeakRssMiB} MiB`);
      console.log(`attackers: ${JSON.stringify(outcomes)}`);
    }
  } finally {
    await system.stop();
    await db.stop();
  }
  process.exit(0);
}

await main();
