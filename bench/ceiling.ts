/**
 * The ceiling: a bare Bun relay with the same framing, codec, outbox and
 * listener as a chat server, but no login, no database and no encryption. A
 * client says who it is in its hello; a send is answered at once and pushed to
 * the recipient, here or over a link to the relay that holds them (user i is on
 * relay i mod n, as the bench connects them). What ChatterBox reaches, divided
 * by what this reaches under the same load, is the fraction of the raw socket
 * rate that storing, routing and securing messages leave.
 */
import { encode } from "../protocol/codec";
import { ChatError } from "../protocol/errors";
import type { WireMessage } from "../protocol/messages";
import { Link } from "../net/link";
import { listen, type Connection } from "../net/listener";
import { PLAINTEXT } from "../net/tls";
import { groupMembers } from "./patterns";

export interface RelaySetup {
  type: "relay";
  index: number;
  prefix: string;
  clients: number;
  groupSize: number;
}

/**
 * The relay answers a send before it delivers, and the load does not wait for
 * deliveries: where they fall behind, it queues them rather than cutting a
 * link or a client off (which lost a quarter of a run's messages once the
 * load generator got faster), so that its delivery rate is what it delivers.
 */
const RELAY_OUTBOX_LIMIT = 1024 * 1024 * 1024;

interface State {
  user?: number;
}

export async function runRelay(setup: RelaySetup, lines: AsyncGenerator<unknown>): Promise<void> {
  const local = new Map<number, Connection<State>>();
  const peers: (Link | undefined)[] = [];
  let relays: string[] = [];
  let nextId = 1;
  const pop = { clients: setup.clients, groupSize: setup.groupSize, contacts: 0 };
  const userOf = (name: unknown) => Number(String(name).slice(setup.prefix.length));

  const deliver = (m: WireMessage, to: number[], forward: boolean) => {
    const bytes = encode({ t: "ev", ev: "msg", m });
    const away = new Map<number, number[]>();
    for (const u of to) {
      const home = u % relays.length;
      if (home === setup.index || !forward) local.get(u)?.sendEncoded(bytes);
      else away.set(home, [...(away.get(home) ?? []), u]);
    }
    for (const [home, users] of away) peers[home]?.notify("deliver", { m, to: users });
  };

  const listener = listen<State>({
    // A bare relay, to find the ceiling of the socket path itself: no TLS, as no login or database.
    tls: PLAINTEXT,
    port: 0,
    outboxLimit: RELAY_OUTBOX_LIMIT,
    initialState: () => ({}),
    hello(conn, req) {
      if (req.role === "client") {
        const user = userOf(req.user);
        if (!Number.isInteger(user)) throw new ChatError("E_BAD_REQUEST", "user: expected PREFIXn");
        conn.state.user = user;
        local.set(user, conn);
      }
      return { role: "relay" };
    },
    onEvent(_conn, ev, frame) {
      if (ev === "deliver") {
        const m = frame.m as WireMessage;
        deliver(m, frame.to as number[], false);
      }
    },
    onClose(conn) {
      if (conn.state.user !== undefined && local.get(conn.state.user) === conn) local.delete(conn.state.user);
    },
    routes: {
      send: {
        handle(conn, req) {
          const from = conn.state.user!;
          const group = req.group as string | undefined;
          const to = group !== undefined ? groupMembers(Number(group.slice(group.lastIndexOf("-") + 1)), pop).filter((u) => u !== from) : [userOf(req.to)];
          const id = nextId++;
          const at = Date.now();
          const m = { id, conv: 0, seq: id, from: `${setup.prefix}${from}`, to: group ?? String(req.to), kind: "chat", at, cmid: req.cmid, body: req.body } as WireMessage;
          if (group !== undefined) m.group = group;
          deliver(m, to, true);
          return { msg: id, conv: 0, seq: id, at, duplicate: false };
        },
      },
      ack: { handle: () => ({}) },
      sync: { handle: () => ({ count: 0 }) },
    },
  });
  const say = (message: unknown) => process.stdout.write(JSON.stringify(message) + "\n");
  say({ type: "listening", addr: `127.0.0.1:${listener.port}` });
  for (;;) {
    const { value, done } = await lines.next();
    if (done || (value as { type: string }).type === "finish") break;
    const order = value as { type: "peers"; relays: string[] };
    if (order.type === "peers") {
      relays = order.relays;
      for (const [i, addr] of relays.entries()) {
        if (i !== setup.index) peers[i] = await Link.connect(addr, { tls: PLAINTEXT, hello: { role: "peer" }, outboxLimit: RELAY_OUTBOX_LIMIT });
      }
      say({ type: "linked" });
    }
  }
  listener.stop(true);
  process.exit(0);
}
