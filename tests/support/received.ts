/** A message as a view is handed it (verified, conversation 7, a minute apart), for tests of the views that need no session. */
import type { Received } from "../../client/session";

export const msg = (seq: number, from: string, to: string, text: string, extra: Partial<Received> = {}): Received => ({
  id: seq,
  conv: 7,
  seq,
  from,
  to,
  kind: "chat",
  at: Date.UTC(2026, 0, 1, 12, seq),
  cmid: `c${seq}`,
  body: new Uint8Array(0),
  text,
  verified: true,
  ...extra,
});
