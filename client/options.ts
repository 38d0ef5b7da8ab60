/**
 * What a client connection (and the session over it) is told when it is made:
 * where to connect, who logs in and how, and where the news goes.
 */
import type { ChatError } from "../protocol/errors";

/** How long the first connection keeps trying the balancer and a server, by default. */
export const DEFAULT_WAIT_MS = 30_000;

export interface ConnectionOptions {
  balancer: string;
  user: string;
  /** Asked only when there is no valid resume token or no keys on this device. */
  password: () => Promise<string> | string;
  /** Connection and trust news for the user: reconnecting, a contact's key changed. */
  onStatus?(line: string): void;
  /** The session ended for good (logged in elsewhere, or a refusal that retrying cannot fix). */
  onEnd?(error: ChatError): void;
  /** The link is down and the next try is at this time (ms since the epoch): for a countdown. */
  onRetry?(at: number): void;
  /** This device's name, for `chatterbox devices` (default: the host name). */
  deviceName?: string;
  /** A device id to use when nothing is kept on disk (tests: one device per user per process). */
  deviceKey?: string;
  /** Whether the password came from CHATTERBOX_PASSWORD: then a login that did not check it says so. */
  passwordGiven?: boolean;
  /** Keep the token, positions, keys, pins and history under CHATTERBOX_HOME (default true). */
  persist?: boolean;
  agent?: string;
  /** How long the first connection keeps trying the balancer and a server, in ms (default 30 s). */
  waitMs?: number;
}
