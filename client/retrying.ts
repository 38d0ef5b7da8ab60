/**
 * Idempotent work that survives a reconnect: it waits for the link to come
 * back (up to a minute) and is tried again after each temporary refusal, with
 * backoff, a bounded number of times. A request that must not run twice uses
 * the link once instead.
 *
 * A rate limit with a short retry-after (the server's read admission under
 * pressure: 0.25–5 s) is waited out too, for as long as the server asks, up to
 * a budget: the person asked for a page and should get it, not a refusal. A
 * longer one is theirs to see, because waiting is not what mends it: the
 * uploads cap (10 s, their own uploads still open) or a login slowdown.
 */
import { ChatError, isTemporary } from "../protocol/errors";

/** Whether there is a link now, and whether the connection is closing or ended for good (then waiting is pointless). */
export interface LinkState {
  connected(): boolean;
  leaving(): boolean;
}

const MAX_ATTEMPTS = 50;
const RECONNECT_WAIT_MS = 60_000;
/** The longest retry-after waited out: the read admission's longest is 5 s, the uploads cap's 10 s is shown. */
export const LONGEST_RATE_WAIT_MS = 5_000;
/** All the rate-limit waits of one request together. */
export const RATE_WAIT_BUDGET_MS = 30_000;

export async function retrying<T>(run: () => Promise<T>, link: LinkState): Promise<T> {
  let rateWaited = 0;
  for (let attempt = 0; ; attempt++) {
    try {
      if (!link.connected()) await waitConnected(link, RECONNECT_WAIT_MS);
      return await run();
    } catch (error) {
      if (!(error instanceof ChatError) || attempt >= MAX_ATTEMPTS || link.leaving()) throw error;
      const wait = rateWait(error, rateWaited);
      if (wait !== undefined) {
        rateWaited += wait;
        await Bun.sleep(wait);
        continue;
      }
      if (!isTemporary(error.code)) throw error;
      await Bun.sleep(Math.min(1000, 50 * 2 ** attempt));
    }
  }
}

/** How long to wait out a rate limit, or undefined when it is not one to wait out. */
function rateWait(error: ChatError, waited: number): number | undefined {
  const ms = error.code === "E_RATE_LIMITED" ? error.retryAfterMs : undefined;
  if (ms === undefined || ms > LONGEST_RATE_WAIT_MS || waited + ms > RATE_WAIT_BUDGET_MS) return undefined;
  return Math.max(ms, 1);
}

async function waitConnected(link: LinkState, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!link.connected()) {
    if (link.leaving()) throw new ChatError("E_CLOSED");
    if (Date.now() > deadline) throw new ChatError("E_TIMEOUT", "Not reconnected in time");
    await Bun.sleep(20);
  }
}
