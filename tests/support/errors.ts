/** The error a test expects, as a value to assert on: its code, its reason, its sentence. */
import type { ChatError } from "../../protocol/errors";
import { CryptoError } from "../../crypto/errors";

/** The ChatError a refused request was rejected with; fails the test if it was accepted. */
export async function refusal(promise: Promise<unknown>): Promise<ChatError> {
  try {
    await promise;
  } catch (error) {
    return error as ChatError;
  }
  throw new Error("expected a refusal, but the request succeeded");
}

/** Why `fn` threw its CryptoError; or "no error", or what else it threw. */
export function reasonOf(fn: () => unknown): string {
  try {
    fn();
  } catch (e) {
    return e instanceof CryptoError ? e.reason : `not a CryptoError: ${e}`;
  }
  return "no error";
}
