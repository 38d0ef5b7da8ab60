/**
 * The load-balancing strategy interface, and the live-server view every strategy
 * chooses from. Adding a strategy is adding a file beside this one.
 */

export interface LiveServer {
  id: string;
  /** HOST:PORT that clients connect to. */
  addr: string;
  /** Connection count from the server's last heartbeat. */
  load: number;
  /** Clients sent there since its last heartbeat, so leastconn does not pile a burst onto one server between heartbeats. */
  assigned: number;
  /** Milliseconds since the epoch of the last register or heartbeat. */
  lastSeen: number;
}

export interface Strategy {
  readonly name: string;
  pick(servers: readonly LiveServer[]): LiveServer | undefined;
}

/** A source of numbers in [0, 1), injectable so tests are deterministic. */
export type Rng = () => number;

/** The load a strategy compares: reported connections plus clients sent since. */
export function weight(server: LiveServer): number {
  return server.load + server.assigned;
}

/** An index in [0, n), safe against an rng that returns exactly 1. */
export function randomIndex(rng: Rng, n: number): number {
  return Math.min(n - 1, Math.floor(rng() * n));
}
