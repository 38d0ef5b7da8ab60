/**
 * How messages look: a line for people, a JSON object for scripts.
 */
import type { Received } from "./session";

export interface ShownMessage {
  type: "message" | "system";
  id: number;
  from: string;
  to: string;
  /** For a group message, the group. */
  group?: string;
  time: string;
  text: string;
  verified: boolean;
  /** Why the message could not be verified; its text is then empty. */
  problem?: string;
  /** For a file message: what the file is (never its key). */
  file?: { id: string; name: string; size: number; type: string; width?: number; height?: number };
}

export function shown(message: Received): ShownMessage {
  return {
    type: message.kind === "system" ? "system" : "message",
    id: message.id,
    from: message.from,
    to: message.to,
    ...(message.group !== undefined ? { group: message.group } : {}),
    time: new Date(message.at).toISOString(),
    // A system line is the server's record of a membership change: shown, and marked as not signed.
    text: message.verified || message.kind === "system" ? message.text : "",
    verified: message.verified,
    ...(message.verified ? {} : { problem: message.problem ?? "unverified" }),
    ...(message.file
      ? {
          file: {
            id: message.file.id,
            name: message.file.name,
            size: message.file.size,
            type: message.file.type,
            ...(message.file.width !== undefined ? { width: message.file.width, height: message.file.height } : {}),
          },
        }
      : {}),
  };
}

export function line(message: Received, json: boolean): string {
  const s = shown(message);
  if (json) return JSON.stringify(s);
  const time = new Date(message.at).toLocaleTimeString("en-GB", { hour12: false });
  const to = s.group !== undefined ? `#${s.group}` : s.to;
  if (s.type === "system") return `[${time}] * ${s.group !== undefined ? `#${s.group}: ` : ""}${sanitize(s.text)}`;
  if (!s.verified) return `[${time}] ⚠ ${s.from} → ${to}: NOT SHOWN, ${sanitize(s.problem ?? "unverified")} (message ${s.id})`;
  return `[${time}] ${s.from} → ${to}: ${sanitize(s.text)}`;
}

/** Terminal control characters in someone else's text must not drive our terminal. */
export function sanitize(text: string): string {
  return text.replace(/[\u0000-\u0008\u000b-\u001f\u007f-\u009f]/g, "�");
}
