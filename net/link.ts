/**
 * The calling side of a connection: Bun.connect, hello, then requests that each
 * resolve with their one reply, and events handed to a callback. Used by the
 * client, by servers towards the balancer and their peers, and by tests.
 */
import type { Socket } from "bun";
import { decode, encode } from "../protocol/codec";
import { ChatError, isErrorCode } from "../protocol/errors";
import { DEFAULT_MAX_FRAME, FrameReader } from "../protocol/frame";
import { PROTOCOL_VERSION } from "../protocol/messages";
import { Outbox } from "./outbox";
import { connectTls, handshakeError, PLAINTEXT, type ClientTls, type Plaintext } from "./tls";
import { keepTicket, ticketFor } from "./tls-sessions";
import { defaultTrust, type Trust } from "./trust";

export interface LinkHandlers {
  onEvent?(ev: string, frame: Record<string, unknown>): void;
  /** The other side said why it is closing. */
  onBye?(error: ChatError): void;
  onClose?(): void;
}

export interface LinkOptions extends LinkHandlers {
  /** Fields of the hello request beyond the version (role, agent, peer credentials). */
  hello?: Record<string, unknown>;
  timeoutMs?: number;
  maxFrame?: number;
  /** Bytes the link may queue for a slow peer before it closes (net/outbox.ts). */
  outboxLimit?: number;
  /** How to check the other end; by default the process's trust (net/trust.ts) decides. */
  tls?: ClientTls | Plaintext;
  /** Whom to ask when tls is not given (default: defaultTrust()). */
  trust?: Trust;
  /** How a frame's payload is read (default: protocol/codec.ts's decode); the load generator peeks at deliveries (bench/peek.ts). */
  decode?(payload: Uint8Array): Record<string, unknown>;
  /** How a request is framed (default: protocol/codec.ts's encode); the load generator writes its sends by hand (bench/request-frame.ts). */
  encode?(value: Record<string, unknown>): Uint8Array;
}

type Pending = { resolve(value: Record<string, unknown>): void; reject(error: unknown): void; op: string; timeoutMs: number; deadline: number };

export class Link {
  private nextId = 1;
  private readonly pending = new Map<number, Pending>();
  /**
   * One timer for every request's deadline, set for the earliest: a timer made
   * and cleared for each request was 4% of a load generator's samples, and a
   * reply nearly always comes long before its deadline. It stays set when the
   * last reply comes: a client with one request at a time would otherwise make
   * and clear it for each; when it fires it fails what is due and sets itself
   * for the next deadline, if any.
   */
  private deadlineTimer?: Timer;
  private timerAt = Infinity;
  private readonly reader: FrameReader;
  private socket!: Socket<undefined>;
  private outbox!: Outbox;
  private isClosed = false;
  helloReply: Record<string, unknown> = {};

  private constructor(private readonly options: LinkOptions) {
    this.reader = new FrameReader(options.maxFrame ?? DEFAULT_MAX_FRAME);
  }

  /**
   * Connects, checks the other end's certificate and says hello. Without
   * explicit tls, a first contact learns the CA the other end names (an
   * unverified probe), pins it, and connects again checking against it.
   */
  static async connect(address: string, options: LinkOptions = {}): Promise<Link> {
    if (options.tls) return Link.open(address, options, options.tls);
    const trust = options.trust ?? defaultTrust();
    let tls = trust.tlsFor(address);
    if (tls !== PLAINTEXT && "learn" in tls) tls = trust.learn(address, await Link.probeCa(address, options.timeoutMs));
    try {
      return await Link.open(address, options, tls);
    } catch (error) {
      if (!(error instanceof ChatError) || error.code !== "E_TLS") throw error;
      // Which CA does it name instead? A different one is worth a louder refusal.
      const named = await Link.probeCa(address, options.timeoutMs).then(
        (ca) => ({ ca }),
        () => undefined,
      );
      throw (named && trust.mismatch(address, named.ca)) || error;
    }
  }

  /** The CA certificate the other end names in its hello, over a connection that checks nothing; none for a public CA's certificate. */
  private static async probeCa(address: string, timeoutMs?: number): Promise<string | undefined> {
    const probe = await Link.open(address, { hello: { role: "client" }, timeoutMs }, { learn: true });
    probe.close();
    const ca = probe.helloReply.ca;
    return typeof ca === "string" ? ca : undefined;
  }

  private static async open(address: string, options: LinkOptions, tls: ClientTls | Plaintext): Promise<Link> {
    const { host, port } = parseAddress(address);
    const link = new Link(options);
    let handshake: (error?: ChatError) => void = () => {};
    const handshaken = new Promise<ChatError | undefined>((resolve) => (handshake = resolve));
    // Resumption where a verified session exists; the ticket comes after the handshake, with the first data.
    const verified = tls === PLAINTEXT || "learn" in tls ? undefined : "systemRoots" in tls ? { caPem: "system roots", certPem: undefined } : tls;
    const ticket = verified && ticketFor(address, verified.caPem, verified.certPem);
    let ticketKept = false;
    try {
      link.socket = await Bun.connect({
        hostname: host,
        port,
        ...(tls === PLAINTEXT ? {} : { tls: connectTls(tls) }),
        socket: {
          open: (socket) => ticket && socket.setSession(ticket),
          handshake: (_socket, success, error) => handshake(handshakeError(tls, address, success, error)),
          data: (socket, chunk) => {
            if (verified && !ticketKept) {
              ticketKept = true;
              keepTicket(address, verified.caPem, verified.certPem, socket.getSession() as unknown as Uint8Array | undefined);
            }
            link.onData(chunk);
          },
          drain: () => link.outbox.flush(),
          close: () => {
            handshake(new ChatError("E_UNAVAILABLE", `${address} closed the connection during the TLS handshake`));
            link.onClosed();
          },
          error: () => link.onClosed(),
        },
      });
    } catch (error) {
      throw new ChatError("E_UNAVAILABLE", `Cannot connect to ${address}: ${(error as Error).message}`);
    }
    link.outbox = new Outbox(link.socket, () => link.close(), options.outboxLimit);
    if (tls !== PLAINTEXT) {
      const waitMs = options.timeoutMs ?? 30_000;
      const timer = setTimeout(() => handshake(new ChatError("E_UNAVAILABLE", `No TLS handshake with ${address} within ${waitMs} ms`)), waitMs);
      const refused = await handshaken;
      clearTimeout(timer);
      if (refused) {
        link.close();
        throw refused;
      }
    }
    try {
      link.helloReply = await link.request("hello", { v: PROTOCOL_VERSION, ...options.hello });
    } catch (error) {
      link.close();
      throw error;
    }
    return link;
  }

  /** Whether the TLS session was resumed from an earlier connection's ticket (net/tls-sessions.ts). */
  resumed(): boolean {
    return (this.socket as unknown as { isSessionReused?(): boolean }).isSessionReused?.() === true;
  }

  /** "TLSv1.3", say; undefined without TLS. */
  tlsVersion(): string | undefined {
    return (this.socket as unknown as { getTLSVersion?(): string | null }).getTLSVersion?.() ?? undefined;
  }

  get closed(): boolean {
    return this.isClosed;
  }

  request(op: string, args: Record<string, unknown> = {}, timeoutMs = this.options.timeoutMs ?? 30_000): Promise<Record<string, unknown>> {
    if (this.isClosed) return Promise.reject(new ChatError("E_CLOSED"));
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      const deadline = performance.now() + timeoutMs;
      this.pending.set(id, { resolve, reject, op, timeoutMs, deadline });
      if (deadline < this.timerAt) this.armDeadline(deadline);
      this.outbox.push((this.options.encode ?? encode)({ ...args, t: "req", id, op }));
    });
  }

  private armDeadline(at: number): void {
    clearTimeout(this.deadlineTimer);
    this.timerAt = at;
    this.deadlineTimer = setTimeout(() => this.expire(), Math.max(0, at - performance.now()));
  }

  /** Fails the requests past their deadline and sets the timer for the next one. */
  private expire(): void {
    this.deadlineTimer = undefined;
    this.timerAt = Infinity;
    const now = performance.now();
    let next = Infinity;
    for (const [id, waiter] of this.pending) {
      if (waiter.deadline <= now) {
        this.pending.delete(id);
        waiter.reject(new ChatError("E_TIMEOUT", `No answer to ${waiter.op} within ${waiter.timeoutMs} ms`));
      } else if (waiter.deadline < next) next = waiter.deadline;
    }
    if (next < Infinity) this.armDeadline(next);
  }

  /** Sends a frame that expects no reply (events between servers). */
  notify(ev: string, fields: Record<string, unknown> = {}): void {
    if (!this.isClosed) this.outbox.push(encode({ ...fields, t: "ev", ev }));
  }

  /** Sends an event already framed (protocol/deliveries-frame.ts), in order with the rest. */
  notifyEncoded(bytes: Uint8Array): void {
    if (!this.isClosed) this.outbox.push(bytes);
  }

  /** Sends raw bytes: for tests that speak bad protocol on purpose. */
  sendRaw(bytes: Uint8Array): void {
    this.socket.write(bytes);
  }

  close(): void {
    if (this.isClosed) return;
    this.outbox?.flush();
    this.socket.end();
    this.onClosed();
  }

  private onData(chunk: Uint8Array): void {
    let frames: Uint8Array[];
    try {
      frames = this.reader.push(chunk);
    } catch {
      this.close();
      return;
    }
    for (const payload of frames) {
      let frame: Record<string, unknown>;
      try {
        frame = (this.options.decode ?? decode)(payload);
      } catch {
        this.close();
        return;
      }
      this.dispatch(frame);
    }
  }

  private dispatch(frame: Record<string, unknown>): void {
    if (frame.t === "res") {
      const id = frame.id as number;
      const waiter = this.pending.get(id);
      if (!waiter) return;
      this.pending.delete(id);
      if (frame.ok === true) waiter.resolve(frame);
      else waiter.reject(toError(frame));
    } else if (frame.t === "ev") {
      this.options.onEvent?.(frame.ev as string, frame);
    } else if (frame.t === "bye") {
      this.options.onBye?.(toError(frame));
    }
  }

  private onClosed(): void {
    if (this.isClosed) return;
    this.isClosed = true;
    this.outbox?.close();
    clearTimeout(this.deadlineTimer);
    this.deadlineTimer = undefined;
    this.timerAt = Infinity;
    for (const waiter of this.pending.values()) {
      waiter.reject(new ChatError("E_CLOSED"));
    }
    this.pending.clear();
    this.options.onClose?.();
  }
}

function toError(frame: Record<string, unknown>): ChatError {
  const code = isErrorCode(frame.code) ? frame.code : "E_INTERNAL";
  const retryAfterMs = typeof frame.retryAfterMs === "number" && Number.isFinite(frame.retryAfterMs) && frame.retryAfterMs >= 0 ? frame.retryAfterMs : undefined;
  return new ChatError(code, typeof frame.message === "string" ? frame.message : undefined, retryAfterMs);
}

export function parseAddress(address: string): { host: string; port: number } {
  const at = address.lastIndexOf(":");
  const port = Number(address.slice(at + 1));
  if (at <= 0 || !Number.isInteger(port) || port <= 0 || port > 65535) {
    throw new ChatError("E_BAD_REQUEST", `Expected HOST:PORT, got "${address}"`);
  }
  return { host: address.slice(0, at).replace(/^\[(.*)\]$/, "$1"), port };
}
