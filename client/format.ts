/**
 * How messages look: a line for people, a JSON object for scripts. A run of
 * messages sent before this device joined a conversation's MLS group is one
 * quiet line for people (they are forward secrecy at work, not a fault), and
 * still one object each for scripts, with its code.
 */
import { beforeJoin } from "./received";
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
  /** With a problem: its stable code (E_SIGNATURE, E_MLS_BEFORE_JOIN, ...), for scripts to branch on. */
  code?: string;
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
    ...(message.verified ? {} : { problem: message.problem ?? "unverified", ...(message.code !== undefined ? { code: message.code } : {}) }),
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
  const time = clock(message.at);
  const to = s.group !== undefined ? `#${s.group}` : s.to;
  if (s.type === "system") return continued(`[${time}] * ${s.group !== undefined ? `#${s.group}: ` : ""}`, s.text);
  if (beforeJoin(message)) return `[${time}] · ${s.from} → ${to}: sent before this device joined, not readable here (message ${s.id})`;
  if (!s.verified) return `[${time}] ⚠ ${s.from} → ${to}: NOT SHOWN, ${sanitize(s.problem ?? "unverified")} (message ${s.id})`;
  return continued(`[${time}] ${s.from} → ${to}: `, s.text);
}

/** What a run of `count` messages sent before this device joined is told as, in every view. */
export function earlierLine(count: number): string {
  const n = count === 1 ? "1 earlier message was" : `${count} earlier messages were`;
  return `${n} sent before this device joined: MLS keys are not shared back in time; the history backup (CHATTERBOX_HISTORY_BACKUP=on on a device that has them) brings them to new devices`;
}

/**
 * Lines for messages in order (history): for people, each run of messages of
 * one conversation sent before this device joined is one quiet line; for
 * scripts (`json`), one object a message as ever. `me` names the user, to say
 * who a direct conversation is with.
 */
export function lines(messages: Received[], json: boolean, me: string): string[] {
  if (json) return messages.map((m) => line(m, true));
  const out: string[] = [];
  for (let i = 0; i < messages.length; i++) {
    const run = runAt(messages, i);
    if (run === 0) {
      out.push(line(messages[i]!, false));
      continue;
    }
    out.push(earlierRun(messages[i]!, run, me));
    i += run - 1;
  }
  return out;
}

/** How many messages from `i` on are one run sent before this device joined, in one conversation (0: none). */
function runAt(messages: readonly Received[], i: number): number {
  let n = 0;
  while (i + n < messages.length && beforeJoin(messages[i + n]!) && messages[i + n]!.conv === messages[i]!.conv) n++;
  return n;
}

/** The line mode line for a run of `count` such messages, the first being `first`. */
export function earlierRun(first: Received, count: number, me: string): string {
  const where = first.group !== undefined ? `#${first.group}` : `with ${first.from === me ? first.to : first.from}`;
  return `[${clock(first.at)}] · ${where}: ${earlierLine(count)}`;
}

const clock = (at: number) => new Date(at).toLocaleTimeString("en-GB", { hour12: false });

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
