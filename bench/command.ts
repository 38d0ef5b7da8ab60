/**
 * The `chatterbox bench` command and its hidden worker, as citty commands; the
 * work itself is loaded only when they run.
 */
import { defineCommand } from "citty";

export const bench = defineCommand({
  meta: { name: "bench", description: "Measure throughput and latency: starts its own system (or targets --balancer) and simulates clients" },
  args: {
    servers: { type: "string", description: "Chat servers to start", default: "2" },
    balancer: { type: "string", description: "Target a running system through its balancer, HOST:PORT, instead of starting one" },
    "database-url": { type: "string", description: "PostgreSQL for the servers we start (default: our own embedded PostgreSQL)" },
    data: { type: "string", description: "Folder for the bench's embedded PostgreSQL and saved logins (default: beside chatterbox's data)" },
    workers: { type: "string", description: "Load-generating processes", default: "2" },
    clients: { type: "string", description: "Simulated users, each its own connection", default: "100" },
    duration: { type: "string", description: "Seconds measured", default: "10" },
    warmup: { type: "string", description: "Seconds of load before measuring", default: "2" },
    rate: { type: "string", description: "Messages a second in all, open loop; or max (closed loop, --window in flight per client)", default: "1000" },
    window: { type: "string", description: "Messages in flight per client with --rate max", default: "8" },
    size: { type: "string", description: "Body bytes (default: a sealed 100-character message)", default: "407" },
    e2e: { type: "boolean", description: "Clients really seal, sign, verify and open every message" },
    mls: { type: "boolean", description: "With --pattern group: real MLS groups, each message one MLS ciphertext every member decrypts" },
    pattern: { type: "string", description: "dm, dm-cross, group, offline or mixed", default: "dm" },
    "group-size": { type: "string", description: "Members of each group (group, mixed)", default: "10" },
    contacts: { type: "string", description: "Direct-message partners of each client (dm, dm-cross, offline, mixed)", default: "10" },
    partners: { type: "string", description: "fixed: each client writes to its --contacts, opened before the clock starts; random: to anyone, uniformly (cold conversations) (dm, mixed)", default: "fixed" },
    strategy: { type: "string", description: "Balancing strategy of the system we start", default: "roundrobin" },
    sweep: { type: "string", description: "Run at each of these rates, e.g. 1000,5000,20000: the latency-throughput curve" },
    "compare-strategies": { type: "boolean", description: "The same load under each balancing strategy" },
    ceiling: { type: "boolean", description: "Also run the load against a bare relay (no login, database or crypto) and give the ratio" },
    "commit-batches": { type: "string", description: "Group commits each server we start runs at once (serve --commit-batches; default: serve's)" },
    "commit-gap-ms": { type: "string", description: "The least gap between back-to-back commits on each server we start (serve --commit-gap-ms; default: serve's)" },
    "pg-statements": { type: "boolean", description: "Also list PostgreSQL's statements by time taken (pg_stat_statements; our own embedded database only)" },
    idle: { type: "boolean", description: "Only log the clients in and hold them: server memory per connection" },
    prefix: { type: "string", description: "Bench account names are PREFIX0, PREFIX1, ... (made once, reused)", default: "bench-u" },
    json: { type: "boolean", description: "The report as JSON" },
    plot: { type: "string", description: "Write an SVG plot to this file" },
    "insecure-plaintext": { type: "boolean", description: "No TLS on any hop of the system we start: to measure what TLS costs" },
  },
  async run({ args }) {
    const { parseOptions } = await import("./options");
    const { runBench } = await import("./run");
    let options;
    try {
      options = parseOptions(args);
      // Read by bench/system.ts and, inherited, by the workers' clients (net/trust.ts).
      if (args["insecure-plaintext"]) process.env.CHATTERBOX_INSECURE_PLAINTEXT = "1";
    } catch (error) {
      console.error(`chatterbox bench: ${(error as Error).message}`);
      process.exit(2);
    }
    try {
      await runBench(options);
    } catch (error) {
      console.error(`chatterbox bench: ${(error as Error)?.stack ?? error}`);
      process.exit(1);
    }
    process.exit(0);
  },
});

export const benchWorker = defineCommand({
  meta: { name: "bench-worker", description: "Internal: a load-generating process of chatterbox bench", hidden: true },
  async run() {
    const { runWorker } = await import("./worker");
    await runWorker();
  },
});
