/**
 * The client's question to the balancer: which server should I connect to?
 * One short connection per question; the balancer holds nothing for clients.
 */
import { Link } from "../net/link";
import { ChatError } from "../protocol/errors";

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
