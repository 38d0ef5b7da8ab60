/**
 * What the hostile test files share: one real chat server with the file's
 * limits, a pair of well-behaved neighbours on it (alice and bob), a check
 * that they still chat, and attacks run each in a process of its own
 * (tests/support/hostile-client.ts) that speak the wire protocol directly.
 */
import { afterAll, beforeAll, expect } from "bun:test";
import { join } from "node:path";
import type { ServerConfig } from "../../server/context";
import { connectUser, ROOT, signup, startCluster, waitFor, type Cluster, type TestUser } from "./cluster";
import { TEST_CA } from "./tls";

export interface HostileWorld {
  readonly cluster: Cluster;
  /** The chat server's address. */
  readonly addr: string;
  /** Alice's message reaches Bob: the attack did not take the server from them. */
  neighboursKeepChatting(): Promise<void>;
  /** Runs one attack in its own process (against `target`, by default the server) and returns its JSON line. */
  attack(mode: string, args: string[], env?: Record<string, string>, target?: string): Promise<Record<string, any>>;
}

/** Starts the server before the file's tests, signs up alice, bob and `others`, and stops it all after. */
export function hostileWorld(config: Partial<ServerConfig>, others: string[]): HostileWorld {
  let cluster: Cluster | undefined;
  let alice: TestUser | undefined;
  let bob: TestUser | undefined;
  let said = 0;
  const world: HostileWorld = {
    get cluster() {
      return cluster!;
    },
    get addr() {
      return cluster!.servers[0]!.addr;
    },
    async neighboursKeepChatting() {
      expect(alice!.ended).toBeUndefined();
      const text = `neighbour ${++said}`;
      await alice!.session.sendText("bob", text);
      await waitFor(() => bob!.texts().includes(text), "bob to receive alice's message", 10_000);
    },
    async attack(mode, args, env = {}, target = world.addr) {
      const proc = Bun.spawn([process.execPath, join(ROOT, "tests/support/hostile-client.ts"), mode, target, ...args], {
        stdout: "pipe",
        stderr: "pipe",
        env: { ...process.env, HOSTILE_CA: TEST_CA.certPem, ...env },
      });
      const [out, err, code] = [await new Response(proc.stdout).text(), await new Response(proc.stderr).text(), await proc.exited];
      if (code !== 0) throw new Error(`attacker ${mode} exited ${code}: ${err}`);
      return JSON.parse(out.trim().split("\n").pop()!);
    },
  };
  beforeAll(async () => {
    cluster = await startCluster({ servers: 1, config });
    for (const name of ["alice", "bob", ...others]) await signup(cluster.balancerAddr, name);
    alice = await connectUser(cluster.balancerAddr, "alice");
    bob = await connectUser(cluster.balancerAddr, "bob");
    await world.neighboursKeepChatting();
  }, 60_000);
  afterAll(async () => {
    await alice?.session.close();
    await bob?.session.close();
    await cluster?.stop();
  });
  return world;
}
