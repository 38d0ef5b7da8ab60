/**
 * `server.info`: what `chatterbox status` shows of one server. Counts only, the
 * same kind the balancer already hands out (its load): no names, no ids of users.
 */
import type { Route } from "../net/listener";

export interface ServerFacts {
  id: string;
  version: string;
  connections(): number;
  sessions(): number;
  peerLinks(): number;
}

export function serverInfo<S>(facts: ServerFacts): Route<S> {
  const started = Date.now();
  return {
    handle: () => ({
      server: facts.id,
      version: facts.version,
      connections: facts.connections(),
      sessions: facts.sessions(),
      peers: facts.peerLinks(),
      uptimeSeconds: Math.round((Date.now() - started) / 1000),
    }),
  };
}
