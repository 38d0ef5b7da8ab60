/**
 * Used by each chat server: holds a connection to the balancer, registers, and
 * heartbeats its load every second. When the link drops or the balancer is down
 * it retries forever with backoff, so restarting the balancer disconnects no chat
 * client and servers come back into its table by themselves.
 */
import type { Link } from "../net/link";
import type { ClientTls, Plaintext } from "../net/tls";
import { backoffDelay, Sleeper } from "./backoff";
import { connectAsMember } from "./member";

export interface AnnounceOptions {
  /** HOST:PORT of the balancer. */
  balancer: string;
  id: string;
  /** HOST:PORT clients should connect to. */
  addr: string;
  /** The server's current connection count. */
  load: () => number;
  /** The cluster secret and this server's certificate: the balancer lists members only. */
  secret: Uint8Array;
  tls: ClientTls | Plaintext;
  intervalMs?: number;
  log?: (line: string) => void;
}

export function announce(opts: AnnounceOptions): { stop(): void } {
  const log = opts.log ?? (() => {});
  const intervalMs = opts.intervalMs ?? 1000;
  // A heartbeat unanswered for this long means the balancer is stuck: start over.
  const replyTimeoutMs = Math.max(2000, 2 * intervalMs);
  const sleeper = new Sleeper();
  let stopped = false;
  let link: Link | undefined;
  let generation = 0;
  // Consecutive failures; reset once a registration succeeds.
  let attempt = 0;

  async function session(): Promise<void> {
    const mine = ++generation;
    link = await connectAsMember(opts.balancer, { id: opts.id, secret: opts.secret, tls: opts.tls }, {
      timeoutMs: replyTimeoutMs,
      // Only this session's link may cut its heartbeat sleep short.
      onClose: () => mine === generation && sleeper.wake(),
      onBye: (e) => log(`balancer closed the link: ${e.code} ${e.message}`),
    });
    if (stopped) return;
    await link.request("register", { server: opts.id, addr: opts.addr, load: opts.load() });
    log(`registered ${opts.id} (${opts.addr}) with the balancer at ${opts.balancer}`);
    attempt = 0;
    while (!stopped && !link.closed) {
      await sleeper.sleep(intervalMs);
      if (stopped || link.closed) return;
      await link.request("heartbeat", { load: opts.load() });
    }
  }

  async function run(): Promise<void> {
    while (!stopped) {
      try {
        await session();
        if (!stopped) log(`lost the balancer at ${opts.balancer}; reconnecting`);
      } catch (error) {
        // Say it once per outage; the next "registered" line says it is over.
        if (!stopped && attempt === 0) log(`balancer ${opts.balancer}: ${(error as Error).message}; retrying with backoff`);
      }
      generation++;
      link?.close();
      link = undefined;
      if (stopped) return;
      await sleeper.sleep(backoffDelay(attempt++));
    }
  }

  void run();
  return {
    stop() {
      stopped = true;
      link?.close();
      sleeper.wake();
    },
  };
}
