/**
 * Who each simulated client sends to. Clients are numbered 0..n-1 across all
 * workers; groups are consecutive blocks of `groupSize` clients.
 */
import type { Pattern } from "./options";

export type Target = { kind: "d"; to: number } | { kind: "g"; group: number };

export interface Population {
  clients: number;
  groupSize: number;
  /** For dm-cross: each client's server, and for each server the clients on the others. */
  serverOf?: Map<number, string>;
  notOn?: Map<string, number[]>;
}

export function placementOf(clients: number, placement: Record<number, string>): Pick<Population, "serverOf" | "notOn"> {
  const serverOf = new Map(Object.entries(placement).map(([i, s]) => [Number(i), s]));
  const servers = new Set(serverOf.values());
  const notOn = new Map([...servers].map((s) => [s, [...serverOf].filter(([, t]) => t !== s).map(([i]) => i)]));
  return { serverOf, notOn };
}

export function groupOf(client: number, groupSize: number): number {
  return Math.floor(client / groupSize);
}

/** The members of group g: a short last group takes what is left. */
export function groupMembers(g: number, p: Population): number[] {
  const first = g * p.groupSize;
  const last = Math.min(first + p.groupSize, p.clients);
  return Array.from({ length: last - first }, (_, i) => first + i);
}

export function groupName(prefix: string, g: number, groupSize: number): string {
  return `${prefix}g${groupSize}-${g}`;
}

/** Whether this client sends at all: in `offline`, the second half only receives (later). */
export function sends(pattern: Pattern, client: number, clients: number): boolean {
  return pattern !== "offline" || client < Math.floor(clients / 2);
}

export function receivesLater(pattern: Pattern, client: number, clients: number): boolean {
  return pattern === "offline" && client >= Math.floor(clients / 2);
}

function randomOther(from: number, count: number, offset = 0): number {
  const pick = offset + Math.floor(Math.random() * (count - 1));
  return pick >= from ? pick + 1 : pick;
}

export function target(pattern: Pattern, from: number, p: Population): Target {
  switch (pattern) {
    case "dm":
      return { kind: "d", to: randomOther(from, p.clients) };
    case "dm-cross": {
      const others = p.notOn?.get(p.serverOf?.get(from) ?? "");
      if (!others || others.length === 0) return { kind: "d", to: randomOther(from, p.clients) };
      return { kind: "d", to: others[Math.floor(Math.random() * others.length)]! };
    }
    case "group":
      return { kind: "g", group: groupOf(from, p.groupSize) };
    case "offline": {
      const half = Math.floor(p.clients / 2);
      return { kind: "d", to: half + Math.floor(Math.random() * (p.clients - half)) };
    }
    case "mixed":
      // Nine direct messages for each group message.
      return Math.random() < 0.1 && groupMembers(groupOf(from, p.groupSize), p).length > 1
        ? { kind: "g", group: groupOf(from, p.groupSize) }
        : { kind: "d", to: randomOther(from, p.clients) };
  }
}
