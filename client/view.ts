/**
 * What draws the chat, apart from the session that runs it. The session's
 * events reach a view (a message, a receipt, typing, a state change, the
 * outcome of a command); the view calls back what the person asks for (a line
 * typed, a conversation switched to, older history, what was shown and so may
 * be marked read). Line mode, JSON lines and the full-screen client are three
 * implementations; client/chat.ts wires one of them to a session.
 */
import type { ReceiptEvent, Received, SendResult, TypingEvent } from "./session";

/** A conversation as the person names it: a user for a DM, a group. */
export type Target = { kind: "dm" | "group"; name: string };

export const label = (t: Target): string => (t.kind === "group" ? `#${t.name}` : t.name);

/** One of the user's messages on its way. */
export interface Sending {
  stored(result: SendResult): void;
  failed(error: Error): void;
}

/** Whether a conversation's messages are forward secret (MLS) or not (envelopes sealed to long-term keys), and why not. */
export interface Secrecy {
  target: Target;
  forwardSecret: boolean;
  reason?: string;
  /** This device was added to the conversation's MLS group by someone with no right to: who, and why. */
  doubt?: string;
}

/** The sentence the views show for it. */
export function secrecyLine(s: Secrecy): string {
  if (s.doubt !== undefined) return `WARNING: ${label(s.target)}'s membership is not confirmed by an admin: this device was ${s.doubt}`;
  return s.forwardSecret
    ? `messages in ${label(s.target)} are forward secret again (MLS)`
    : `WARNING: messages in ${label(s.target)} are not forward secret (sealed to long-term keys, not MLS): ${s.reason ?? "not on MLS yet"}`;
}

/** What a view may ask of the chat. */
export interface ViewActions {
  /** A line the person entered: text for the current conversation, or a /command. */
  submit(line: string): void;
  /** The person is typing in the current conversation. */
  typing(): void;
  /** The view showed this message to the person: the read marker may move up to it. */
  shown(conv: number, seq: number): void;
  /** Makes a conversation current (a user's name is checked first). */
  switchTo(target: Target): Promise<void>;
  /** Messages before `before` (a seq) in a conversation: this device's copy first, then the server's. */
  older(target: Target, before: number, limit: number): Promise<Received[]>;
  /** What this device holds that matches, newest first. */
  search(text: string): Received[];
  /** The conversations the person has (groups, and the people they share a DM with), with unread counts. */
  conversations(): Promise<Conversation[]>;
  /** The other members' positions in a conversation, to mark the user's own messages delivered or read. */
  receipts(conv: number): Promise<ReceiptEvent[]>;
  /** The connection now: connected (to which server) or not (and when the next try is), and how many sends wait in the outbox. */
  connection(): { connected: boolean; server: string; retryAt?: number; pending: number };
  /** Whether a contact's identity key changed and waits for /trust (their messages are held). */
  keyChanged(user: string): boolean;
  /** The person leaves. */
  quit(): void;
}

export interface Conversation {
  target: Target;
  conv: number;
  unread: number;
}

/** What the chat tells a view. */
export interface ChatView {
  /** Starts drawing and reading input; the view keeps `actions` for what the person does. */
  open(actions: ViewActions): void;
  /** A message, in order, once (the user's own from another connection too). */
  message(m: Received): void;
  receipt(r: ReceiptEvent): void;
  /** The read marker moved (on this device or another). */
  read(conv: number, seq: number): void;
  typing(t: TypingEvent): void;
  /** A change of the connection's state, or a warning, in a sentence. */
  status(text: string): void;
  /** A conversation's messages are not forward secret (envelopes, and why), or are again (MLS): once each time that changes. */
  secrecy(notice: Secrecy): void;
  /** The outcome of a command: a type and fields for scripts, a sentence for people. */
  event(type: string, fields: Record<string, unknown>, human: string): void;
  /** A message of the user's is on its way (in the outbox); the view hears when the server stored it. */
  pending(target: Target, text: string): Sending;
  /** The current conversation changed. */
  switched(target: Target, conv: number | undefined): void;
  /** Lines printed about a received file (saved where, or why not). */
  fileLine(text: string): void;
  /** Whether saveFile should print JSON. */
  readonly json: boolean;
  /** The session ended for good (logged in elsewhere, revoked, refused): said where the person will still see it. */
  ended(error: Error & { code?: string }): void;
  /** Stops drawing and gives the terminal back as it was (resolved once it is). */
  close(): void | Promise<void>;
}
