/**
 * A load-generating worker process (`chatterbox bench-worker`, hidden): it
 * reads its orders from stdin and reports on stdout, one JSON object a line
 * (bench/messages.ts). Several of them spread the simulated clients over
 * processes, so that the load generator is not the bottleneck. The same command
 * runs a ceiling relay when its first order says so.
 */
import { ChatError } from "../protocol/errors";
import { chunks } from "../protocol/messages";
import { SimClient } from "./client";
import { runRelay, type RelaySetup } from "./ceiling";
import { Load } from "./load";
import { BenchMls } from "./mls";
import type { FromWorker, ToWorker, WorkerSetup } from "./messages";
import { groupMembers, groupName, partners } from "./patterns";

/** Connections made at once per worker. */
const CONNECT_PARALLEL = 32;
/** Password logins and signups at once per worker: each costs the server an argon2id hash. */
const PASSWORD_PARALLEL = 4;

export async function runWorker(): Promise<void> {
  const lines = stdinLines();
  const first = (await lines.next()).value as ToWorker | RelaySetup | undefined;
  if (!first) return;
  if (first.type === "relay") return runRelay(first, lines);
  if (first.type !== "setup") throw new Error(`bench-worker: expected setup, got ${first.type}`);
  const setup = first;
  const say = (message: FromWorker) => process.stdout.write(JSON.stringify(message) + "\n");
  const load = new Load(setup);
  const started = performance.now();
  const failed = await connectAll(setup, load, (line) => say({ type: "log", worker: setup.worker, line }));
  if (setup.mls) await parallel([...load.clients.values()], CONNECT_PARALLEL, async (c) => {
    c.mls = new BenchMls(c);
    await c.mls.publish();
  });
  if (!setup.relays && !setup.idle && setup.pattern !== "dm" && setup.pattern !== "dm-cross" && setup.pattern !== "offline") await prepareGroups(setup, load);
  if (!setup.relays && !setup.idle) await openConversations(setup, load);
  if (setup.e2e) await fetchKeys(setup, load);
  const offline = [...load.clients.values()].filter((c) => setup.pattern === "offline" && c.index >= Math.floor(setup.clients / 2));
  // Offline recipients have replayed and acknowledged any old backlog; now they leave.
  for (const c of offline) {
    await c.flushAcks(true);
    c.close();
  }
  say({
    type: "ready",
    worker: setup.worker,
    tokens: Object.fromEntries([...load.clients.values()].filter((c) => c.token).map((c) => [c.name, c.token!])),
    placement: Object.fromEntries([...load.clients.values()].map((c) => [c.index, c.server])),
    failed,
    setupMs: Math.round(performance.now() - started),
  });

  for (;;) {
    const { value: order, done } = await lines.next();
    if (done) break;
    const o = order as ToWorker;
    if (o.type === "start") {
      void load.run(o, say).then((expected) => say({ type: "sent", worker: setup.worker, expected }));
    } else if (o.type === "offline-login") {
      const t0 = performance.now();
      let replayed = 0;
      await parallel(offline, CONNECT_PARALLEL, async (c) => {
        await c.connect();
        replayed++;
      });
      say({ type: "offline-done", worker: setup.worker, replayed, ms: Math.round(performance.now() - t0) });
    } else if (o.type === "finish") {
      await Promise.all([...load.clients.values()].map((c) => c.flushAcks(true).catch(() => {})));
      say(load.result());
      for (const c of load.clients.values()) c.close();
      break;
    }
  }
  await Bun.sleep(50);
  process.exit(0);
}

async function connectAll(setup: WorkerSetup, load: Load, log: (line: string) => void): Promise<number> {
  let failed = 0;
  const gate = semaphore(PASSWORD_PARALLEL);
  await parallel(setup.users, CONNECT_PARALLEL, async (index) => {
    const name = load.name(index);
    const client = new SimClient({
      index,
      name,
      password: setup.password,
      balancer: setup.balancer,
      relay: setup.relays?.[index % setup.relays.length],
      token: setup.tokens[name],
      needKeys: setup.e2e,
      peek: !setup.e2e && !setup.mls,
      gate,
      onMessage: (c, m) => load.receive(c, m),
    });
    for (let attempt = 1; ; attempt++) {
      try {
        await client.connect();
        load.clients.set(index, client);
        return;
      } catch (error) {
        client.close();
        if (attempt === 3) {
          failed++;
          log(`${name}: ${(error as Error).message}`);
          return;
        }
        await Bun.sleep(200 * attempt);
      }
    }
  });
  return failed;
}

/**
 * Each group is made once, by the worker that holds its first member, and kept
 * for later runs; every worker then reads the epochs its senders seal for.
 */
async function prepareGroups(setup: WorkerSetup, load: Load): Promise<void> {
  const pop = { clients: setup.clients, groupSize: setup.groupSize, contacts: setup.contacts, partners: setup.partners };
  const deadline = Date.now() + 180_000;
  await parallel(load.groups(), 8, async (g) => {
    const members = groupMembers(g, pop);
    if (members.length < 2) return;
    const group = load.groupName(g);
    const first = load.clients.get(members[0]!);
    if (first) {
      for (;;) {
        try {
          await first.request("group.create", { group, members: members.slice(1).map((i) => load.name(i)) });
          break;
        } catch (error) {
          const code = (error as ChatError).code;
          if (code === "E_NAME_TAKEN") break;
          // Members still being signed up by other workers.
          if (code !== "E_NO_SUCH_USER" || Date.now() > deadline) throw error;
          await Bun.sleep(500);
        }
      }
    }
    // with --mls: the first member's device makes the MLS group; every member here waits to have joined it
    if (setup.mls && first) await first.mls!.create(group, members.slice(1).map((i) => load.name(i)), deadline);
    if (setup.mls)
      for (const c of members.map((i) => load.clients.get(i)))
        while (c && !c.mls!.has(group)) {
          if (Date.now() > deadline) throw new Error(`${c.name} was not welcomed into ${group}'s MLS group`);
          await Bun.sleep(50);
        }
    const asker = members.map((i) => load.clients.get(i)).find((c) => c)!;
    for (;;) {
      try {
        const reply = await asker.request("group.members", { group });
        load.epochs.set(g, reply.epoch as number);
        return;
      } catch (error) {
        if ((error as ChatError).code !== "E_NO_SUCH_GROUP" || Date.now() > deadline) throw error;
        await Bun.sleep(300);
      }
    }
  });
}

/**
 * Opens each client's direct conversations before the clock starts (made once,
 * kept by later runs) and fills its server's caches, as a client that has
 * been chatting a while would have.
 */
async function openConversations(setup: WorkerSetup, load: Load): Promise<void> {
  const pop = { clients: setup.clients, groupSize: setup.groupSize, contacts: setup.contacts, partners: setup.partners };
  const deadline = Date.now() + 180_000;
  await parallel([...load.clients.values()], CONNECT_PARALLEL, async (client) => {
    for (const other of partners(setup.pattern, client.index, pop)) {
      for (;;) {
        try {
          await client.request("history", { with: load.name(other), limit: 1 });
          break;
        } catch (error) {
          // Not signed up yet, by another worker.
          if ((error as ChatError).code !== "E_NO_SUCH_USER" || Date.now() > deadline) throw error;
          await Bun.sleep(500);
        }
      }
    }
  });
}

async function fetchKeys(setup: WorkerSetup, load: Load): Promise<void> {
  const asker = [...load.clients.values()][0]!;
  const names = Array.from({ length: setup.clients }, (_, i) => load.name(i));
  for (const users of chunks(names, 1000)) {
    const reply = await asker.request("keys", { users });
    for (const [name, k] of Object.entries(reply.keys as Record<string, { dh: Uint8Array; sign: Uint8Array }>)) {
      load.keys.set(name, { dh: new Uint8Array(k.dh), sign: new Uint8Array(k.sign) });
    }
  }
}

export async function parallel<T>(items: T[], limit: number, run: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  const lane = async () => {
    while (next < items.length) await run(items[next++]!);
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, lane));
}

function semaphore(limit: number): <T>(run: () => Promise<T>) => Promise<T> {
  let active = 0;
  const queue: (() => void)[] = [];
  return async (run) => {
    if (active >= limit) await new Promise<void>((resolve) => queue.push(resolve));
    active++;
    try {
      return await run();
    } finally {
      active--;
      queue.shift()?.();
    }
  };
}

/** Lines of stdin, parsed as JSON. */
async function* stdinLines(): AsyncGenerator<unknown> {
  for await (const line of console) {
    if (line.trim()) yield JSON.parse(line);
  }
}
