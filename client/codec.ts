/**
 * The one seam where message content becomes a body for the server and back:
 * the session seals every outgoing message and opens every incoming one here
 * and nowhere else. MLS is a codec in front of the envelopes: it takes what it
 * can, and the envelope the rest (a conversation not on MLS yet, an old body).
 */
import type { WireMessage } from "../protocol/messages";
import { encodeContent, type Content } from "./content";
import { dmLabel, groupLabel, labelOf, type E2E, type Revealed } from "./e2e";
import type { Target } from "./files";
import type { StoredMessage } from "./store";

/** What opening a body gives: its content, or an MLS commit (nothing to show), or this device's stored copy. */
export type Opened =
  | Revealed
  | { status: "control" }
  | { status: "stored"; stored: StoredMessage }
  /** A line to show where the message came, in this device's words from what it verified (a reset that left devices out). */
  | { status: "notice"; text: string };

export interface ContentCodec {
  /** The body of a message to `target`, readable by exactly `recipients`. */
  seal(target: Target, recipients: string[], cmid: string, content: Content): Promise<Uint8Array>;
  /**
   * What an incoming message says, or why it is not shown. `inOrder`: it comes
   * from delivery, in its conversation's order (a scheme with state, as MLS,
   * takes a message in only then), not from history.
   */
  open(message: WireMessage, inOrder: boolean): Promise<Opened>;
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

/** What the MLS codec needs of the device's MLS client (client/mls/client.ts). */
export interface MlsSealer {
  /** A body, or undefined where MLS cannot be used yet. */
  sealDm(to: string, cmid: string, content: Uint8Array): Promise<Uint8Array | undefined>;
  sealGroup(group: string, cmid: string, content: Uint8Array): Promise<Uint8Array | undefined>;
  read(message: WireMessage, inOrder: boolean): Promise<Opened>;
}

/** MLS where every device of the conversation can take it, the envelope elsewhere. */
export class MlsFirstCodec implements ContentCodec {
  constructor(
    private readonly mls: MlsSealer,
    private readonly isMls: (body: Uint8Array) => boolean,
    private readonly envelope: ContentCodec,
  ) {}

  async seal(target: Target, recipients: string[], cmid: string, content: Content): Promise<Uint8Array> {
    const plain = encodeContent(content);
    const body = "to" in target ? await this.mls.sealDm(target.to, cmid, plain) : await this.mls.sealGroup(target.group, cmid, plain);
    return body ?? this.envelope.seal(target, recipients, cmid, content);
  }

  open(message: WireMessage, inOrder: boolean): Promise<Opened> {
    return this.isMls(message.body) ? this.mls.read(message, inOrder) : this.envelope.open(message, inOrder);
  }
}
