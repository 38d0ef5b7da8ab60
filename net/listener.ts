/**
 * The accepting side of the protocol: Bun.listen, framing, the hello handshake,
 * and a request table. Each request gets exactly one reply; a frame that breaks
 * the stream (oversized, undecodable, not a request) ends the connection with a
 * bye that says why. Everything role-specific lives in the table.
 */
import type { Socket, TCPSocketListener } from "bun";
import { decode, encode } from "../protocol/codec";
import { ChatError } from "../protocol/errors";
import { DEFAULT_MAX_FRAME, FrameReader } from "../protocol/frame";
import { fail, PROTOCOL_VERSION, type Request } from "../protocol/messages";
import { encodeOk } from "../protocol/reply-frame";
import { DEFAULT_OUTBOX_LIMIT, Outbox } from "./outbox";
import { OutboxPool } from "./outbox-pool";
import { listenerTls, PLAINTEXT, type Plaintext, type ServerTls } from "./tls";

export type Handler<S> = (conn: Connection<S>, req: Request) => Promise<Record<string, unknown> | void> | Record<string, unknown> | void;

export interface Route<S> {
  handle: Handler<S>;
  /** Whether the connection must have passed `allowed` (logged in, registered). */
  guard?: (conn: Connection<S>) => ChatError | undefined;
}

export interface ListenOptions<S> {
  port: number;
  hostname?: string;
  maxFrame?: number;
  outboxLimit?: number;
  /** Bytes queued for all connections together; past it, the connections with the most queued are cut off as too slow. */
  outboxTotalLimit?: number;
  /** The certificate to present; plaintext only when the operator asked for it by name. */
  tls: ServerTls | Plaintext;
  /** Closes a connection that has not said hello within this time. */
  helloTimeoutMs?: number;
  /** Refuses connections beyond this many at once, and beyond this many from one address. */
  maxConnections?: number;
  maxPerAddress?: number;
  /**
   * Requests being answered at once on one connection. Past it the listener
   * stops reading the socket (TCP backpressure reaches the sender) and keeps the
   * frames it already read in a queue, so pipelining costs the sender, not the server.
   */
  maxInFlight?: number;
  /**
   * The largest frame a connection may send until `trust(conn)` is called (login,
   * peer proof): anyone can open a connection, so what a stranger makes the
   * server buffer for a partial frame is small.
   */
  strangerMaxFrame?: number;
  initialState(conn: Connection<S>): S;
  routes: Record<string, Route<S>>;
  /** Answers hello; may throw a ChatError to refuse it. */
  hello?(conn: Connection<S>, req: Request): Record<string, unknown> | Promise<Record<string, unknown>>;
  onEvent?(conn: Connection<S>, ev: string, frame: Record<string, unknown>): void;
  onOpen?(conn: Connection<S>): void;
  onClose?(conn: Connection<S>): void;
  onError?(conn: Connection<S>, op: string, error: unknown, requestId?: number): void;
  /** Counts error replies by code (the metrics); no id of anyone goes in. */
  recorder?: { refused(code: string, op: string, requestId: number): void };
}

let nextConnectionId = 1;

export class Connection<S> {
  readonly id = nextConnectionId++;
  state!: S;
  greeted = false;
  /** Whether the caller showed a certificate under the cluster CA (mutual TLS): only servers have one. */
  clusterCertificate = false;
  /** Frames that arrived while hello was being answered wait here, in order. */
  private early?: Uint8Array[];
  /** Requests being answered now, and the frames read past the cap that wait their turn. */
  inFlight = 0;
  readonly waiting: Uint8Array[] = [];
  waitingBytes = 0;
  /** Whether reading is stopped because of the queue. */
  paused = false;
  /**
   * After a refusal with a retry-after (E_RATE_LIMITED), no request starts
   * before this time (performance.now()): a client that does not wait as told
   * is not read, so refusing it again and again costs the server nothing.
   */
  holdUntil = 0;
  holdTimer?: Timer;

  /**
   * A refusal that said when to try again: the connection's next request waits
   * that long. Called by the listener when the refusal is answered; a handler
   * that refuses before its first await calls it itself, so that the rest of a
   * pipeline already read waits too instead of being refused one by one.
   */
  hold(retryAfterMs: number): void {
    this.holdUntil = Math.max(this.holdUntil, performance.now() + Math.min(MAX_HOLD_MS, retryAfterMs));
  }
  /** The frame limit once trusted (the reader starts at the stranger's). */
  fullMaxFrame: number;
  closed = false;
  readonly reader: FrameReader;
  readonly outbox: Outbox;

  constructor(
    readonly socket: Socket<Connection<S>>,
    maxFrame: number,
    outboxLimit: number,
    strangerMaxFrame = maxFrame,
    pool?: OutboxPool,
  ) {
    this.fullMaxFrame = maxFrame;
    this.reader = new FrameReader(Math.min(maxFrame, strangerMaxFrame));
    const onCut = () => this.drop("E_SLOW_CONSUMER", "Disconnected: the server holds too much unsent for its connections, and this one was among the furthest behind");
    this.outbox = new Outbox(socket, () => this.drop("E_SLOW_CONSUMER", "Disconnected: this connection fell too far behind its messages"), outboxLimit, pool && { pool, onCut });
  }

  private drainWaiters?: (() => void)[];

  /**
   * Resolves once what is queued for this connection has gone to its socket (at
   * once if nothing is, or it closed): a large reply is built only for a client
   * that took the last ones, so one that stops reading stops costing the server.
   */
  whenDrained(): Promise<void> {
    if (this.outbox.queued === 0 || this.closed) return Promise.resolve();
    const drained = new Promise<void>((resolve) => (this.drainWaiters ??= []).push(resolve));
    // A flush already scheduled may write it all, with no drain event to follow: look once after it.
    setImmediate(() => this.checkDrained());
    return drained;
  }

  /** Called after each flush and at close. */
  checkDrained(): void {
    if (!this.drainWaiters || (this.outbox.queued > 0 && !this.closed)) return;
    const waiters = this.drainWaiters;
    this.drainWaiters = undefined;
    for (const resolve of waiters) resolve();
  }

  /** Holds frames until hello is answered; returns whether the frame was held. */
  holdEarly(payload: Uint8Array): boolean {
    if (!this.early) return false;
    this.early.push(payload);
    return true;
  }

  get helloing(): boolean {
    return this.early !== undefined;
  }

  beginHello(): void {
    this.early = [];
  }

  endHello(): Uint8Array[] {
    const early = this.early ?? [];
    this.early = undefined;
    return early;
  }

  /** Lifts the stranger's frame limit: called once the connection has proved who it is. */
  trust(): void {
    this.reader.maxFrame = this.fullMaxFrame;
  }

  get remote(): string {
    return this.socket.remoteAddress;
  }

  send(frame: Record<string, unknown>): boolean {
    return this.outbox.push(encode(frame));
  }

  /** Sends already-encoded bytes: one encoding shared by many recipients. */
  sendEncoded(bytes: Uint8Array): boolean {
    return this.outbox.push(bytes);
  }

  event(ev: string, fields: Record<string, unknown> = {}): boolean {
    return this.send({ ...fields, t: "ev", ev });
  }

  /** Says why, then closes once what is queued has gone out. */
  bye(code: ChatError["code"], message: string): void {
    if (this.closed) return;
    this.closed = true;
    this.outbox.finish(encode({ t: "bye", code, message }));
  }

  /** Cuts off what is queued (the queue is the problem), but still says why. */
  private drop(code: ChatError["code"], message: string): void {
    if (this.closed) return;
    this.closed = true;
    this.outbox.finish(encode({ t: "bye", code, message }), true);
  }
}

export function listen<S>(options: ListenOptions<S>): TCPSocketListener<Connection<S>> {
  const maxFrame = options.maxFrame ?? DEFAULT_MAX_FRAME;
  const outboxLimit = options.outboxLimit ?? DEFAULT_OUTBOX_LIMIT;
  const tls = listenerTls(options.tls);
  // Named in hello for clients to pin, unless the certificate is a public CA's (then the system roots decide).
  const caPem = options.tls === PLAINTEXT || options.tls.publicCertificate ? undefined : options.tls.caPem;
  const perAddress = new Map<string, number>();
  const pool = options.outboxTotalLimit ? new OutboxPool(options.outboxTotalLimit) : undefined;
  let open = 0;
  const maxInFlight = options.maxInFlight ?? DEFAULT_MAX_IN_FLIGHT;
  const strangerMaxFrame = options.strangerMaxFrame ?? maxFrame;
  // A socket is paused while its queue is non-empty, so what waits is at most what one read brought, plus a frame.
  const maxWaitingBytes = 4 * maxFrame;
  // Above what a replay keeps queued (a quarter of the outbox, server/flow.ts) plus a frame: a client that reads is never held back.
  const ctl: Control<S> = { options, caPem, maxInFlight, maxWaitingBytes, outboxHigh: outboxLimit / 4 + maxFrame };
  return Bun.listen<Connection<S>>({
    hostname: options.hostname ?? "127.0.0.1",
    port: options.port,
    ...(tls ? { tls } : {}),
    socket: {
      open(socket) {
        const conn = new Connection<S>(socket, maxFrame, outboxLimit, strangerMaxFrame, pool);
        socket.data = conn;
        const from = socket.remoteAddress;
        const fromHere = (perAddress.get(from) ?? 0) + 1;
        open++;
        perAddress.set(from, fromHere);
        if ((options.maxConnections && open > options.maxConnections) || (options.maxPerAddress && fromHere > options.maxPerAddress)) {
          conn.closed = true;
          socket.end();
          return;
        }
        if (options.helloTimeoutMs) {
          const timer = setTimeout(() => conn.greeted || conn.bye("E_HELLO_FIRST", `No hello within ${options.helloTimeoutMs} ms`), options.helloTimeoutMs);
          timer.unref();
        }
        conn.state = options.initialState(conn);
        options.onOpen?.(conn);
      },
      handshake(socket, success) {
        // A caller without a certificate (a chat client) still succeeds; only a broken handshake ends here.
        if (!success) return void socket.end();
        socket.data.clusterCertificate = (socket as unknown as { authorized?: boolean }).authorized === true;
      },
      data(socket, chunk) {
        const conn = socket.data;
        if (conn.closed) return;
        let frames: Uint8Array[];
        try {
          frames = conn.reader.push(chunk);
        } catch (error) {
          const e = error as ChatError;
          conn.bye(e.code ?? "E_BAD_FRAME", e.message);
          return;
        }
        for (const payload of frames) {
          if (conn.closed) return;
          admit(conn, payload, ctl);
        }
      },
      drain(socket) {
        socket.data.outbox.flush();
        socket.data.checkDrained();
        // Replies went out: requests held back behind them may start.
        if (socket.data.waiting.length > 0) pump(socket.data, ctl);
      },
      close(socket) {
        const conn = socket.data;
        if (!conn) return;
        const from = socket.remoteAddress;
        open--;
        const left = (perAddress.get(from) ?? 1) - 1;
        if (left > 0) perAddress.set(from, left);
        else perAddress.delete(from);
        if (conn.state === undefined) return; // refused at open: nothing was set up
        conn.closed = true;
        conn.outbox.close();
        conn.checkDrained();
        options.onClose?.(conn);
      },
      error() {},
    },
  });
}

/** Requests answered at once per connection, by default: enough for a client's pipelined sends, not for a flood. */
export const DEFAULT_MAX_IN_FLIGHT = 32;

interface Control<S> {
  options: ListenOptions<S>;
  caPem: string | undefined;
  maxInFlight: number;
  maxWaitingBytes: number;
  /** Unsent reply bytes past which a connection's next request waits. */
  outboxHigh: number;
}

/** Takes a frame now, or queues it (and stops reading) when the connection has as many requests in flight as allowed. */
function admit<S>(conn: Connection<S>, payload: Uint8Array, ctl: Control<S>): void {
  // While hello is answered, what follows is held in order without pausing
  // (a pause during the TLS connection's first exchange did not always resume
  // under Bun 1.4), within the same byte bound.
  if (conn.helloing) {
    conn.waitingBytes += payload.length;
    if (conn.waitingBytes > ctl.maxWaitingBytes) conn.bye("E_RATE_LIMITED", `More than ${ctl.maxWaitingBytes} bytes sent before hello was answered`);
    else receive(conn, payload, ctl);
    return;
  }
  if (conn.waiting.length === 0 && ready(conn, ctl)) {
    receive(conn, payload, ctl);
    return;
  }
  conn.waitingBytes += payload.length;
  if (conn.waitingBytes > ctl.maxWaitingBytes) {
    conn.bye("E_RATE_LIMITED", `More than ${ctl.maxInFlight} requests in flight and ${ctl.maxWaitingBytes} bytes waiting`);
    return;
  }
  conn.waiting.push(payload);
  if (!conn.paused) {
    conn.paused = true;
    conn.socket.pause();
    // Held back by replies that the next flush may write at once (no drain event follows then): look again after it.
    setImmediate(() => pump(conn, ctl));
  }
}

/**
 * Whether the connection may start another request now: fewer than the cap in
 * flight, and its replies not piling up unread (a client that sends requests
 * but does not read what they answer is read no further until it does).
 */
function ready<S>(conn: Connection<S>, ctl: Control<S>): boolean {
  return conn.inFlight < ctl.maxInFlight && conn.outbox.queued <= ctl.outboxHigh && (conn.holdUntil === 0 || !held(conn, ctl));
}

/** The longest a refusal holds a connection's requests back: a retry-after is advice, this is its enforcement. */
const MAX_HOLD_MS = 10_000;

/** Whether the connection is still held by a retry-after; looks again when the hold ends. */
function held<S>(conn: Connection<S>, ctl: Control<S>): boolean {
  const left = conn.holdUntil - performance.now();
  if (left <= 0) {
    conn.holdUntil = 0;
    return false;
  }
  if (!conn.holdTimer) {
    conn.holdTimer = setTimeout(() => {
      conn.holdTimer = undefined;
      pump(conn, ctl);
    }, Math.ceil(left));
    conn.holdTimer.unref();
  }
  return true;
}


/** A request was answered: take what waited, and read again once nothing does. */
function settle<S>(conn: Connection<S>, ctl: Control<S>): void {
  conn.inFlight--;
  pump(conn, ctl);
}

/** Starts what waited while the connection is ready; resumes reading once nothing waits. */
function pump<S>(conn: Connection<S>, ctl: Control<S>): void {
  while (!conn.closed && conn.waiting.length > 0 && ready(conn, ctl)) {
    const next = conn.waiting.shift()!;
    conn.waitingBytes -= next.length;
    receive(conn, next, ctl);
  }
  if (conn.paused && !conn.closed && conn.waiting.length === 0) {
    conn.paused = false;
    conn.socket.resume();
  }
}

function receive<S>(conn: Connection<S>, payload: Uint8Array, ctl: Control<S>): void {
  const { options, caPem } = ctl;
  if (conn.holdEarly(payload)) return;
  let frame: Record<string, unknown>;
  try {
    frame = decode(payload);
  } catch (error) {
    conn.bye("E_BAD_FRAME", (error as Error).message);
    return;
  }
  if (frame.t === "ev" && typeof frame.ev === "string" && conn.greeted) {
    options.onEvent?.(conn, frame.ev, frame);
    return;
  }
  if (frame.t !== "req" || typeof frame.id !== "number" || !Number.isSafeInteger(frame.id) || typeof frame.op !== "string") {
    conn.bye("E_BAD_FRAME", "Expected a request: {t: 'req', id, op}");
    return;
  }
  const req = frame as Request;
  if (!conn.greeted) {
    if (req.op !== "hello") {
      conn.send(fail(req.id, "E_HELLO_FIRST", "The first request must be hello"));
      conn.bye("E_HELLO_FIRST", "The first request must be hello");
      return;
    }
    if (req.v !== PROTOCOL_VERSION) {
      conn.send(fail(req.id, "E_VERSION", `This server speaks protocol version ${PROTOCOL_VERSION}`));
      conn.bye("E_VERSION", `This server speaks protocol version ${PROTOCOL_VERSION}`);
      return;
    }
    conn.beginHello();
    conn.inFlight++;
    void answer(conn, req, options, async () => {
      const fields = (await options.hello?.(conn, req)) ?? {};
      conn.greeted = true;
      // The CA, so that a client meeting this cluster for the first time can pin it (net/trust.ts).
      return { v: PROTOCOL_VERSION, maxFrame: conn.fullMaxFrame, ...(caPem ? { ca: caPem } : {}), ...fields };
    }).then(() => {
      conn.waitingBytes = 0;
      for (const early of conn.endHello()) {
        if (conn.closed) return;
        admit(conn, early, ctl);
      }
      settle(conn, ctl);
    });
    return;
  }
  const route = Object.hasOwn(options.routes, req.op) ? options.routes[req.op] : undefined;
  if (!route) {
    options.recorder?.refused("E_UNKNOWN_OP", req.op.slice(0, 40), req.id);
    conn.send(fail(req.id, "E_UNKNOWN_OP", `Unknown request "${req.op.slice(0, 40)}"`));
    return;
  }
  const refusal = route.guard?.(conn);
  if (refusal) {
    options.recorder?.refused(refusal.code, req.op, req.id);
    conn.send(fail(req.id, refusal.code, refusal.message));
    return;
  }
  conn.inFlight++;
  void answer(conn, req, options, () => route.handle(conn, req)).then(() => settle(conn, ctl));
}

async function answer<S>(
  conn: Connection<S>,
  req: Request,
  options: ListenOptions<S>,
  run: () => Promise<Record<string, unknown> | void> | Record<string, unknown> | void,
): Promise<void> {
  try {
    const result = await run();
    if (!conn.closed) conn.sendEncoded(encodeOk(req.id, result ?? {}));
  } catch (error) {
    if (error instanceof ChatError) {
      options.recorder?.refused(error.code, req.op, req.id);
      if (error.retryAfterMs !== undefined) conn.hold(error.retryAfterMs);
      if (!conn.closed) conn.send(fail(req.id, error.code, error.message, error.retryAfterMs));
      return;
    }
    options.recorder?.refused("E_INTERNAL", req.op, req.id);
    options.onError?.(conn, req.op, error, req.id);
    if (!conn.closed) conn.send(fail(req.id, "E_INTERNAL", "Internal server error"));
  }
}
