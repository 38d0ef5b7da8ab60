/**
 * PostgreSQL breaks a deadlock by failing one of the transactions in it; the
 * cure is to run that transaction again. For work that is safe to repeat whole.
 */
const RETRYABLE = new Set(["40P01", "40001"]); // deadlock detected, serialization failure

export async function retryOnConflict<T>(run: () => Promise<T>, attempts = 5): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await run();
    } catch (error) {
      const code = (error as { code?: string }).code;
      if (!code || !RETRYABLE.has(code) || attempt >= attempts) throw error;
      // A little jitter, so that the two sides of the deadlock do not meet again.
      await Bun.sleep(Math.random() * 10 * attempt);
    }
  }
}
