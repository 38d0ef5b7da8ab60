// How long a device keeps MLS secrets, and the trust check ts-mls runs on every credential.
import type { ClientConfig } from "ts-mls";
import { defaultClientConfig } from "ts-mls/clientConfig.js";
import type { TrustGate } from "./trust.ts";

/**
 * No skipped-generation keys: the server delivers each conversation in order, so a message older than
 * one already read from the same sender is a replay or a reorder, and is refused. One past epoch is kept,
 * for messages sent just before a commit that the server ordered after it; older epochs' keys are dropped
 * (forward secrecy).
 */
export const KEY_RETENTION = Object.freeze({ retainKeysForGenerations: 0, retainKeysForEpochs: 1, maximumForwardRatchetSteps: 1000 });

export function clientConfig(gate: TrustGate): ClientConfig {
  return { ...defaultClientConfig, keyRetentionConfig: KEY_RETENTION, authService: gate };
}
