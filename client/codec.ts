/**
 * The one seam where message content becomes a body for the server and back:
 * the session seals every outgoing message and opens every incoming one here
 * and nowhere else, so another scheme (MLS for groups) is another codec.
 */
import type { WireMessage } from "../protocol/messages";
import type { Content } from "./content";
import { dmLabel, groupLabel, labelOf, type E2E, type Revealed } from "./e2e";
import type { Target } from "./files";

export interface ContentCodec {
  /** The body of a message to `target`, readable by exactly `recipients`. */
  seal(target: Target, recipients: string[], cmid: string, content: Content): Promise<Uint8Array>;
  /**
   * What an incoming message says, or why it is not shown. `inOrder`: it comes
   * from delivery, in its conversation's order (a scheme with state, as MLS,
   * takes a message in only then), not from history.
   */
  open(message: WireMessage, inOrder: boolean): Promise<Revealed>;
}

/** Pairwise envelopes (client/e2e.ts), bound to the conversation they were sealed for. */
export class EnvelopeCodec implements ContentCodec {
  constructor(
    private readonly me: string,
    private readonly e2e: Pick<E2E, "seal" | "reveal">,
  ) {}

  seal(target: Target, recipients: string[], cmid: string, content: Content): Promise<Uint8Array> {
    return this.e2e.seal(recipients, "to" in target ? dmLabel(this.me, target.to) : groupLabel(target.group), cmid, content);
  }

  open(message: WireMessage, _inOrder: boolean): Promise<Revealed> {
    return this.e2e.reveal(message, labelOf(message));
  }
}
