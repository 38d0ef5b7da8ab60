/**
 * Group membership changes, recorded by the server as system messages, in words.
 */
import { unpack } from "msgpackr";
import type { WireMessage } from "../protocol/messages";

/** Whether this is the line that made `me` a member: a group's creation by or with them, or their addition. */
export function joinsMe(message: WireMessage, me: string): boolean {
  if (message.kind !== "system") return false;
  try {
    const event = unpack(message.body) as { event?: string; actor?: string; users?: string[] };
    if (event.event === "created") return event.actor === me || !!event.users?.includes(me);
    return event.event === "added" && !!event.users?.includes(me);
  } catch {
    return false;
  }
}

export function describeSystem(message: WireMessage, me: string): string {
  let event: { event?: string; actor?: string; users?: string[] };
  try {
    event = unpack(message.body);
  } catch {
    return "(an unreadable membership change)";
  }
  const who = (name: string | undefined) => (name === me ? "you" : (name ?? "someone"));
  const list = (names: string[] = []) => names.map(who).join(", ");
  const group = message.group ?? message.to;
  switch (event.event) {
    case "created":
      return `${who(event.actor)} created ${group}${event.users?.length ? ` with ${list(event.users)}` : ""}`;
    case "added":
      return `${who(event.actor)} added ${list(event.users)}`;
    case "removed":
      return `${who(event.actor)} removed ${list(event.users)}`;
    case "promoted":
      return `${who(event.actor)} made ${list(event.users)} an admin`;
    case "left":
      return `${who(event.actor)} left${event.users?.[0] ? `; ${event.users[0] === me ? "you are" : `${event.users[0]} is`} now an admin` : ""}`;
    default:
      return "(a membership change this client does not know)";
  }
}
