/**
 * A TCP relay placed in a server's path, for tests that watch or meddle with
 * the bytes on a link: every chunk either way can be seen, and what the client
 * sends can be rewritten (or held back) before it reaches the server.
 */
import type { Socket, TCPSocketListener } from "bun";
import { parseAddress } from "../../net/link";
import type { ServerTls } from "../../net/tls";

export interface Relay {
  addr: string;
  /** Client connections accepted so far. */
  readonly connections: number;
  stop(): void;
}

export interface RelayOptions {
  /** Sees every chunk relayed, both directions, in the order it arrived. */
  onChunk?(chunk: Buffer): void;
  /** Per connection: what of each chunk from the client to pass on to the server (by default, all of it). */
  fromClient?(): (chunk: Buffer) => Uint8Array[];
  /**
   * Ends TLS at the relay (presenting this certificate) and opens its own to
   * the server, so the relay can read frames: a man in the middle that holds a
   * cluster certificate, as only tests do.
   */
  terminateTls?: ServerTls;
}

/** Writes that honour a short socket.write: the rest waits for drain. */
class Pipe {
  private pending: Uint8Array[] = [];
  socket?: Socket<any>;
  write(chunk: Uint8Array): void {
    this.pending.push(chunk);
    this.flush();
  }
  flush(): void {
    while (this.socket && this.pending.length > 0) {
      const head = this.pending[0]!;
      const n = this.socket.write(head);
      if (n < 0) return;
      if (n < head.length) {
        this.pending[0] = head.subarray(n);
        return;
      }
      this.pending.shift();
    }
  }
}

export async function startRelay(target: string, options: RelayOptions = {}): Promise<Relay> {
  const { host, port } = parseAddress(target);
  let connections = 0;
  type Side = { toServer: Pipe; toClient: Pipe; pass: (chunk: Buffer) => Uint8Array[]; upstream?: Socket<undefined> };
  const tls = options.terminateTls;
  const listener: TCPSocketListener<Side> = Bun.listen<Side>({
    hostname: "127.0.0.1",
    port: 0,
    ...(tls ? { tls: { cert: tls.certPem, key: tls.keyPem } } : {}),
    socket: {
      open(client) {
        connections++;
        const toServer = new Pipe();
        const toClient = new Pipe();
        toClient.socket = client;
        client.data = { toServer, toClient, pass: options.fromClient?.() ?? ((chunk) => [chunk]) };
        Bun.connect({
          hostname: host,
          port,
          // It shows the server the same certificate, so peer links through it still pass mutual TLS.
          ...(tls ? { tls: { ca: tls.caPem, cert: tls.certPem, key: tls.keyPem, rejectUnauthorized: true } } : {}),
          socket: {
            data(_s, chunk) {
              const copy = Buffer.from(chunk);
              options.onChunk?.(copy);
              toClient.write(copy);
            },
            drain: () => toServer.flush(),
            close: () => void client.end(),
            error: () => void client.end(),
          },
        }).then(
          (upstream) => {
            client.data.upstream = upstream;
            toServer.socket = upstream;
            toServer.flush();
          },
          () => void client.end(),
        );
      },
      data(client, chunk) {
        const copy = Buffer.from(chunk);
        options.onChunk?.(copy);
        for (const piece of client.data.pass(copy)) client.data.toServer.write(piece);
      },
      drain: (client) => client.data.toClient.flush(),
      close: (client) => void client.data.upstream?.end(),
      error: (client) => void client.data.upstream?.end(),
    },
  });
  return {
    addr: `127.0.0.1:${listener.port}`,
    get connections() {
      return connections;
    },
    stop: () => listener.stop(true),
  };
}
