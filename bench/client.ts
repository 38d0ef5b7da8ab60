/**
 * One simulated user: the real protocol over a real socket (net/link.ts). It
 * finds its server through the balancer, logs in (a saved resume token first,
 * so a rerun does not hash 1,000 passwords again; the password, or a signup,
 * when that fails), replays its backlog, acknowledges what it receives as the
 * real client does, and sends what the load generator tells it to.
 */
import { askBalancer } from "../balancer/ask";
import { PLAINTEXT } from "../net/tls";
import { loginKeys, restoreIdentity, signupAccount } from "../client/account";
import { benchDevice } from "./provision";
import { decodeForBench } from "./peek";
import { encodeForBench } from "./request-frame";
import { RECEIVED_ACK_DELAY_MS } from "../client/connection";
import type { IdentityKeys } from "../crypto/keys";
import { Link } from "../net/link";
import type { BenchMls } from "./mls";
import { ChatError } from "../protocol/errors";
import { chunks, MAX_ACKS, type WireMessage } from "../protocol/messages";


export interface ClientOptions {
  index: number;
  name: string;
  password: string;
  balancer?: string;
  /** The ceiling: connect straight to this relay, no login. */
  relay?: string;
  token?: string;
  /** Log in with the password, to get the identity keys back (for --e2e). */
  needKeys: boolean;
  /** Read deliveries only as far as counting them needs (bench/peek.ts): not with --e2e or --mls, which open every body. */
  peek: boolean;
  /**
   * Runs a password login or signup: few at once, since the server hashes
   * each on a small thread pool and closes connections not logged in by 10 s.
   */
  gate<T>(run: () => Promise<T>): Promise<T>;
  onMessage(client: SimClient, m: WireMessage): void;
}

export class SimClient {
  link!: Link;
  server = "";
  token?: string;
  keys?: IdentityKeys;
  /** The device key the server knows this client's device by (from login or resume): its MLS credential names it. */
  deviceKey?: string;
  /** With --mls: this client as an MLS device (bench/mls.ts). */
  mls?: BenchMls;
  private readonly toAck = new Map<number, number>();
  /** The highest of this client's own sends per conversation, acknowledged only by the last ack. */
  private readonly sent = new Map<number, number>();
  private ackTimer?: Timer;

  constructor(readonly options: ClientOptions) {
    this.token = options.token;
  }

  get index(): number {
    return this.options.index;
  }

  get name(): string {
    return this.options.name;
  }

  async connect(): Promise<void> {
    const o = this.options;
    if (o.relay) return this.open();
    if (this.token && !o.needKeys) {
      await this.open();
      let resumed = false;
      try {
        const reply = await this.link.request("resume", { user: o.name, token: this.token });
        this.deviceKey = reply.device as string;
        resumed = true;
      } catch (error) {
        this.link.close();
        if (!(error instanceof ChatError) || error.code !== "E_TOKEN") throw error;
      }
      if (resumed) return this.sync();
    }
    await o.gate(async () => {
      await this.open();
      await this.logIn();
    });
    await this.sync();
  }

  private async sync(): Promise<void> {
    await this.link.request("sync", {}, 120_000);
  }

  private async open(): Promise<void> {
    const o = this.options;
    this.server = o.relay ?? (await askBalancer(o.balancer!, 10_000));
    this.link = await Link.connect(this.server, {
      // The bare relay of --ceiling measures the socket path alone, without TLS.
      ...(o.relay ? { tls: PLAINTEXT } : {}),
      hello: o.relay ? { role: "client", user: o.name } : { role: "client", agent: "chatterbox-bench" },
      ...(o.peek ? { decode: decodeForBench } : {}),
      encode: encodeForBench,
      onEvent: (ev, frame) => {
        if (ev !== "msg") return;
        const m = frame.m as WireMessage;
        this.options.onMessage(this, m);
        this.queueAck(m.conv, m.seq);
      },
    });
  }

  private async logIn(): Promise<void> {
    const { name, password } = this.options;
    let keys = await loginKeys(this.link, name, password);
    let reply: Record<string, unknown>;
    try {
      reply = await this.link.request("login", { user: name, auth: keys.authKey, device: benchDevice(name) }, 120_000);
    } catch (error) {
      if (!(error instanceof ChatError) || error.code !== "E_NO_SUCH_USER") throw error;
      await signupAccount(this.link, name, password).catch((e) => {
        // Another worker's run may have made it meanwhile.
        if (!(e instanceof ChatError) || e.code !== "E_NAME_TAKEN") throw e;
      });
      keys = await loginKeys(this.link, name, password);
      reply = await this.link.request("login", { user: name, auth: keys.authKey, device: benchDevice(name) }, 120_000);
    }
    this.token = reply.token as string;
    this.deviceKey = reply.device as string;
    if (this.options.needKeys) this.keys = restoreIdentity(reply.backup as Uint8Array, keys.wrapKey, name);
  }

  /**
   * Sends. As the real client does, a sent message is not acknowledged on its
   * own: the next ack in its conversation made for a message received past it
   * covers it (acks are cumulative), and the last one (`flushAcks(true)`)
   * takes what is left, so that the next run does not replay it. It used to
   * ride on the next ack of any conversation: a cursor row more for nearly
   * every message, which the real client does not write, and a claim to
   * have everything up to it while an earlier message of the partner could
   * still be on its way.
   */
  async send(args: Record<string, unknown>): Promise<Record<string, unknown>> {
    const reply = await this.link.request("send", args);
    const conv = reply.conv as number;
    if ((this.sent.get(conv) ?? 0) < (reply.seq as number)) this.sent.set(conv, reply.seq as number);
    return reply;
  }

  request(op: string, args: Record<string, unknown> = {}): Promise<Record<string, unknown>> {
    return this.link.request(op, args);
  }

  /** Sends the acknowledgements still waiting (with `last`, own sends too); resolves when the server has them. */
  async flushAcks(last = false): Promise<void> {
    clearTimeout(this.ackTimer);
    this.ackTimer = undefined;
    if (last) {
      for (const [conv, seq] of this.sent) if ((this.toAck.get(conv) ?? 0) < seq) this.toAck.set(conv, seq);
      this.sent.clear();
    }
    const acks = [...this.toAck];
    this.toAck.clear();
    if (this.link.closed) return;
    await Promise.all(chunks(acks, MAX_ACKS).map((part) => this.link.request("ack", { acks: part }).catch(() => {})));
  }

  close(): void {
    clearTimeout(this.ackTimer);
    this.link?.close();
  }

  private queueAck(conv: number, seq: number): void {
    if (this.options.relay) return;
    if ((this.toAck.get(conv) ?? 0) < seq) this.toAck.set(conv, seq);
    this.ackTimer ??= setTimeout(() => void this.flushAcks(), RECEIVED_ACK_DELAY_MS);
  }
}
