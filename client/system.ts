/**
 * Group membership changes, recorded by the server as system messages, in words.
 */
import { unpack } from "msgpackr";
import type { WireMessage } from "../protocol/messages";

/** Whether this is the line that made `me` a member: a group's creation by or with them, or their addition. */
export function joinsMe(message: WireMessage, me: string): boolean {
  if (message.kind !== "system") return false;
  const event = membershipEvent(message.body);
  if (!event) return false;
  if (event.event === "created") return event.actor === me || !!event.users?.includes(me);
  return event.event === "added" && !!event.users?.includes(me);
}

interface MembershipEvent {
  event?: string;
  actor?: string;
  users?: string[];
}

/** The body of a system message, or undefined when it is not the map of strings a server writes: it is shown, never trusted. */
function membershipEvent(body: Uint8Array): MembershipEvent | undefined {
  let value: unknown;
  try {
    value = unpack(body);
  } catch {
    return undefined;
  }
  // A plain map only: msgpackr turns some bytes into objects of its own (0xc1 is a C1Type).
  if (typeof value !== "object" || value === null || Object.getPrototypeOf(value) !== Object.prototype) return undefined;
  const { event, actor, users } = value as Record<string, unknown>;
  if (event !== undefined && typeof event !== "string") return undefined;
  if (actor !== undefined && typeof actor !== "string") return undefined;
  if (users !== undefined && !(Array.isArray(users) && users.every((u) => typeof u === "string"))) return undefined;
  return { event, actor, users: users as string[] | undefined };
}

export function describeSystem(message: WireMessage, me: string): string {
  const event = membershipEvent(message.body);
  if (!event) return "(an unreadable membership change)";
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
