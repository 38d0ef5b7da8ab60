/**
 * How messages look: a line for people, a JSON object for scripts.
 */
import type { Received } from "./session";

export interface ShownMessage {
  type: "message";
  id: number;
  from: string;
  to: string;
  time: string;
  text: string;
  verified: boolean;
  /** Why the message could not be verified; its text is then empty. */
  problem?: string;
}

export function shown(message: Received): ShownMessage {
  return {
    type: "message",
    id: message.id,
    from: message.from,
    to: message.to,
    time: new Date(message.at).toISOString(),
    text: message.verified ? message.text : "",
    verified: message.verified,
    ...(message.verified ? {} : { problem: message.problem ?? "unverified" }),
  };
}

export function line(message: Received, json: boolean): string {
  const s = shown(message);
  if (json) return JSON.stringify(s);
  const time = new Date(message.at).toLocaleTimeString("en-GB", { hour12: false });
  if (!s.verified) return `[${time}] ⚠ ${s.from} → ${s.to}: NOT SHOWN, ${sanitize(s.problem ?? "unverified")} (message ${s.id})`;
  return `[${time}] ${s.from} → ${s.to}: ${sanitize(s.text)}`;
}

/** Terminal control characters in someone else's text must not drive our terminal. */
export function sanitize(text: string): string {
  return text.replace(/[\u0000-\u0008\u000b-\u001f\u007f-\u009f]/g, "�");
}
