// How long a device keeps MLS secrets, and the trust check ts-mls runs on every credential.
import type { ClientConfig } from "ts-mls";
import { defaultClientConfig } from "ts-mls/clientConfig.js";
import type { TrustGate } from "./trust.ts";

/**
 * No skipped-generation keys: the server delivers each conversation in order, so a message older than
 * one already read from the same sender is a replay or a reorder, and is refused. Two past epochs are
 * kept: a message sent just before a commit can be stored just after it (the server checks a send's
 * epoch before the group commit stores it), and the device that made that commit may make its next one
 * before that message reaches it; older epochs' keys are dropped (forward secrecy).
 */
export const KEY_RETENTION = Object.freeze({ retainKeysForGenerations: 0, retainKeysForEpochs: 2, maximumForwardRatchetSteps: 1000 });

export function clientConfig(gate: TrustGate): ClientConfig {
  return { ...defaultClientConfig, keyRetentionConfig: KEY_RETENTION, authService: gate };
}
