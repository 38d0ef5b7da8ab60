/**
 * Idempotent work that survives a reconnect: it waits for the link to come
 * back (up to a minute) and is tried again after each temporary refusal, with
 * backoff, a bounded number of times. A request that must not run twice uses
 * the link once instead.
 */
import { ChatError, isTemporary } from "../protocol/errors";

/** Whether there is a link now, and whether the connection is closing or ended for good (then waiting is pointless). */
export interface LinkState {
  connected(): boolean;
  leaving(): boolean;
}

const MAX_ATTEMPTS = 50;
const RECONNECT_WAIT_MS = 60_000;

export async function retrying<T>(run: () => Promise<T>, link: LinkState): Promise<T> {
  for (let attempt = 0; ; attempt++) {
    try {
      if (!link.connected()) await waitConnected(link, RECONNECT_WAIT_MS);
      return await run();
    } catch (error) {
      if (!(error instanceof ChatError) || !isTemporary(error.code) || attempt >= MAX_ATTEMPTS || link.leaving()) throw error;
      await Bun.sleep(Math.min(1000, 50 * 2 ** attempt));
    }
  }
}

async function waitConnected(link: LinkState, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!link.connected()) {
    if (link.leaving()) throw new ChatError("E_CLOSED");
    if (Date.now() > deadline) throw new ChatError("E_TIMEOUT", "Not reconnected in time");
    await Bun.sleep(20);
  }
}
