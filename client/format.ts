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
  if (s.type === "system") return continued(`[${time}] * ${s.group !== undefined ? `#${s.group}: ` : ""}`, s.text);
  if (!s.verified) return `[${time}] ⚠ ${s.from} → ${to}: NOT SHOWN, ${sanitize(s.problem ?? "unverified")} (message ${s.id})`;
  return continued(`[${time}] ${s.from} → ${to}: `, s.text);
}

/**
 * Someone else's text after a prefix we wrote. Each line break in it starts a
 * continuation indented under the prefix and marked, so no line of theirs can
 * start where our lines start ("[time] name → ...") and pass for a message.
 */
export function continued(prefix: string, text: string): string {
  const lines = text.split(LINE_BREAKS);
  const indent = `${" ".repeat(Math.max(0, prefix.length - 2))}┆ `;
  return prefix + lines.map(sanitize).join(`\n${indent}`);
}

/** Every way of breaking a line: LF, CR LF, CR alone, NEL, and Unicode's line and paragraph separators. */
const LINE_BREAKS = /\r\n|[\n\r\u0085\u2028\u2029]/;

/**
 * Terminal control characters in someone else's text must not drive our
 * terminal, and bidi controls must not reorder what we print around them
 * (a right-to-left override can make "bob → alice" read as something else):
 * each becomes a visible replacement character. A tab becomes a space.
 */
export function sanitize(text: string): string {
  return text.replace(/\t/g, " ").replace(/[\u0000-\u001f\u007f-\u009f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069\ufff9-\ufffb]/g, "\ufffd");
}
