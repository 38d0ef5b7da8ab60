/**
 * Staying connected: the first connection tries again with backoff while
 * the balancer or every server is away for a moment (up to waitMs); a link
 * lost later starts a reconnect loop with exponential backoff and full
 * jitter, which ends when a link is up again, when the session leaves, or
 * with a refusal that retrying cannot fix (then the session ends).
 */
import { backoffDelay } from "../balancer/backoff";
import { ChatError, isTemporary } from "../protocol/errors";
import { DEFAULT_WAIT_MS, type ConnectionOptions } from "./options";

/** What staying connected needs of the connection. */
export interface ReconnectParts {
  /** One attempt: the balancer, a link, the login and the replay; throws when it fails. */
  connect(): Promise<void>;
  connected(): boolean;
  /** Closing, or ended for good: no more tries. */
  leaving(): boolean;
  /** No server answered for too long: the connection closes (and links still logging in with it). */
  giveUp(): void;
  /** A refusal that retrying cannot fix: the session ends with it. */
  end(error: ChatError): void;
  options: Pick<ConnectionOptions, "waitMs" | "onStatus" | "onRetry">;
}

export class Reconnector {
  private reconnecting?: Promise<void>;

  constructor(private readonly parts: ReconnectParts) {}

  /**
   * The first connection: the balancer, or every server, may be away for a
   * moment (a restart), so temporary refusals are tried again with backoff
   * for up to waitMs before the error is the caller's.
   */
  async start(): Promise<void> {
    const { options } = this.parts;
    const deadline = Date.now() + (options.waitMs ?? DEFAULT_WAIT_MS);
    for (let attempt = 0; ; attempt++) {
      try {
        await this.parts.connect();
        return;
      } catch (error) {
        // Logged in, then lost: the reconnect loop has taken over. It may take
        // as long as the replay takes, but not waitMs without any server.
        if (this.reconnecting) {
          await this.reconnected(options.waitMs ?? DEFAULT_WAIT_MS);
          if (this.parts.connected()) return;
        }
        if (!(error instanceof ChatError) || !isTemporary(error.code) || this.parts.leaving()) throw error;
        const delay = backoffDelay(attempt, 200, 2_000);
        if (Date.now() + delay > deadline) throw error;
        if (attempt === 0) options.onStatus?.(`${error.message}; trying again for up to ${Math.round((deadline - Date.now()) / 1000)} s`);
        await Bun.sleep(delay);
      }
    }
  }

  /** The link in use dropped: the reconnect loop starts, unless it runs already. */
  lost(): void {
    if (this.parts.leaving()) return;
    this.reconnecting ??= this.reconnect().finally(() => (this.reconnecting = undefined));
  }

  /**
   * Waits for the reconnect loop; gives up (and stops it) once no link has
   * been up for waitMs in a row, so that a one-shot command whose servers are
   * all gone ends with an error instead of trying for ever.
   */
  private async reconnected(waitMs: number): Promise<void> {
    let since = Date.now();
    while (this.reconnecting) {
      await Promise.race([this.reconnecting, Bun.sleep(200)]);
      if (this.parts.connected()) since = Date.now();
      else if (Date.now() - since > waitMs) {
        this.parts.giveUp();
        throw new ChatError("E_UNAVAILABLE", `No chat server answered for ${Math.round(waitMs / 1000)} s`);
      }
    }
  }

  private async reconnect(): Promise<void> {
    const { options } = this.parts;
    options.onStatus?.("connection lost; reconnecting");
    for (let attempt = 0; !this.parts.leaving(); attempt++) {
      const delay = backoffDelay(attempt, 100, 5_000);
      options.onRetry?.(Date.now() + delay);
      await Bun.sleep(delay);
      // close() may have come during the sleep: a one-shot command must exit.
      if (this.parts.leaving()) return;
      try {
        await this.parts.connect();
        if (!this.parts.connected()) continue;
        options.onStatus?.("reconnected");
        return;
      } catch (error) {
        if (error instanceof ChatError && !isTemporary(error.code) && error.code !== "E_TOKEN") {
          this.parts.end(error);
          return;
        }
      }
    }
  }
}
