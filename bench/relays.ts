/**
 * Starts the ceiling's relays (bench/ceiling.ts), one process per server the
 * real run had, linked to each other.
 */
import type { BenchOptions } from "./options";
import type { System } from "./system";
import { WorkerProcess } from "./workers";

export async function startRelays(options: BenchOptions): Promise<{ addrs: string[]; system: System; stop(): Promise<void> }> {
  const listening: Record<number, string> = {};
  const relays = Array.from({ length: options.servers }, (_, index) => {
    const relay = new WorkerProcess(index, (m) => {
      const msg = m as unknown as { type: string; addr?: string };
      if (msg.type === "listening") listening[index] = msg.addr!;
      return msg.type === "listening";
    });
    relay.send({ type: "relay", index, prefix: options.prefix, clients: options.clients, groupSize: options.groupSize });
    return relay;
  });
  while (Object.keys(listening).length < relays.length) await Bun.sleep(20);
  const addrs = relays.map((_, i) => listening[i]!);
  for (const r of relays) r.send({ type: "peers", relays: addrs });
  await Promise.all(relays.map((r) => r.next("linked" as never)));
  const system: System = {
    balancer: "",
    servers: async () => addrs.map((addr, i) => ({ id: `relay-${i}`, addr, load: Math.ceil(options.clients / addrs.length), pid: relays[i]!.pid })),
    stop: async () => {},
  };
  return {
    addrs,
    system,
    async stop() {
      for (const r of relays) r.send({ type: "finish" });
      await Promise.race([Promise.all(relays.map((r) => r.proc.exited)), Bun.sleep(3000)]);
      for (const r of relays) r.kill();
    },
  };
}
