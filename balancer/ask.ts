/**
 * The client's question to the balancer: which server should I connect to?
 * One short connection per question; the balancer holds nothing for clients.
 */
import { Link } from "../net/link";
import { ChatError, isTemporary } from "../protocol/errors";
import { backoffDelay } from "./backoff";

/** Returns a server's HOST:PORT; throws ChatError E_NO_SERVER or E_UNAVAILABLE (or E_VERSION). */
export async function askBalancer(balancer: string, timeoutMs = 3000): Promise<string> {
  let timedOut = false;
  let timer: Timer | undefined;
  // Bun.connect has no timeout of its own: bound the whole exchange, connect included.
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      timedOut = true;
      reject(new ChatError("E_UNAVAILABLE", `The balancer at ${balancer} did not answer within ${timeoutMs} ms`));
    }, timeoutMs);
  });
  const exchange = (async () => {
    const link = await Link.connect(balancer, { hello: { role: "client" }, timeoutMs });
    try {
      if (timedOut) throw new ChatError("E_UNAVAILABLE");
      const reply = await link.request("where");
      if (typeof reply.server !== "string") throw new ChatError("E_UNAVAILABLE", "The balancer answered without a server");
      return reply.server;
    } finally {
      link.close();
    }
  })();
  exchange.catch(() => {}); // a late failure after the deadline has no one to tell
  try {
    return await Promise.race([exchange, deadline]);
  } catch (error) {
    if (error instanceof ChatError && !["E_TIMEOUT", "E_CLOSED", "E_INTERNAL"].includes(error.code)) throw error;
    throw new ChatError("E_UNAVAILABLE", `The balancer at ${balancer} is unavailable: ${(error as Error).message}`);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * askBalancer, tried again with backoff while the answer is temporary (the
 * balancer restarting, or no server registered with it yet), for up to waitMs.
 */
export async function askBalancerPatiently(balancer: string, waitMs: number, onRetry?: (error: ChatError) => void): Promise<string> {
  const deadline = Date.now() + waitMs;
  for (let attempt = 0; ; attempt++) {
    try {
      return await askBalancer(balancer);
    } catch (error) {
      if (!(error instanceof ChatError) || !isTemporary(error.code)) throw error;
      const delay = backoffDelay(attempt, 200, 2_000);
      if (Date.now() + delay > deadline) throw error;
      if (attempt === 0) onRetry?.(error);
      await Bun.sleep(delay);
    }
  }
}
