/**
 * Who each simulated client sends to. Clients are numbered 0..n-1 across all
 * workers; groups are consecutive blocks of `groupSize` clients.
 */
import type { Pattern } from "./options";

export type Target = { kind: "d"; to: number } | { kind: "g"; group: number };

export interface Population {
  clients: number;
  groupSize: number;
  /** Direct-message partners of each client. */
  contacts: number;
  /** "random": direct messages go to anyone, uniformly, instead of the contacts. */
  partners?: "fixed" | "random";
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

function randomOther(from: number, count: number): number {
  const pick = Math.floor(Math.random() * (count - 1));
  return pick >= from ? pick + 1 : pick;
}

/** Per population (clients, contacts), per client: looked up for every message sent, so keyed by numbers, not a string made each time. */
const contactCache = new Map<number, Map<number, number[]>>();

/**
 * The fixed partners a client writes to, the same in every process and every
 * run (a seeded generator): people write to their contacts, and a message to
 * one of 999 strangers each time would measure opening conversations instead.
 */
export function contactsOf(client: number, p: Pick<Population, "clients" | "contacts">): number[] {
  const population = p.clients * 4096 + p.contacts;
  let cache = contactCache.get(population);
  if (!cache) contactCache.set(population, (cache = new Map()));
  const cached = cache.get(client);
  if (cached) return cached;
  const want = Math.min(p.contacts, p.clients - 1);
  const found = new Set<number>();
  let seed = (client * 2654435761 + 12345) >>> 0;
  while (found.size < want) {
    seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0;
    const other = seed % p.clients;
    if (other !== client) found.add(other);
  }
  const list = [...found];
  cache.set(client, list);
  return list;
}

function randomContact(from: number, p: Population): number {
  if (p.partners === "random") return randomOther(from, p.clients);
  const list = contactsOf(from, p);
  return list[Math.floor(Math.random() * list.length)]!;
}

export function target(pattern: Pattern, from: number, p: Population): Target {
  switch (pattern) {
    case "dm":
      return { kind: "d", to: randomContact(from, p) };
    case "dm-cross": {
      const away = crossContacts(from, p);
      return { kind: "d", to: away[Math.floor(Math.random() * away.length)]! };
    }
    case "group":
      return { kind: "g", group: groupOf(from, p.groupSize) };
    case "offline":
      return { kind: "d", to: offlineContact(from, p) };
    case "mixed":
      // Nine direct messages for each group message.
      return Math.random() < 0.1 && groupMembers(groupOf(from, p.groupSize), p).length > 1
        ? { kind: "g", group: groupOf(from, p.groupSize) }
        : { kind: "d", to: randomContact(from, p) };
  }
}

const crossCache = new Map<number, number[]>();

/** Contacts on another server; when a client has none there, some other client there. */
function crossContacts(from: number, p: Population): number[] {
  let list = crossCache.get(from);
  if (list) return list;
  const mine = p.serverOf?.get(from);
  list = contactsOf(from, p).filter((c) => p.serverOf?.get(c) !== mine);
  if (list.length === 0) {
    const away = p.notOn?.get(mine ?? "") ?? [];
    list = away.length > 0 ? [away[from % away.length]!] : [randomOther(from, p.clients)];
  }
  crossCache.set(from, list);
  return list;
}

/** In `offline`, the first half writes to the second: a sender's contacts, moved into that half. */
export function offlineContact(from: number, p: Population): number {
  const half = Math.floor(p.clients / 2);
  const list = contactsOf(from, { clients: p.clients - half, contacts: p.contacts });
  return half + list[Math.floor(Math.random() * list.length)]!;
}

/** Everyone a client may write to directly in this pattern, to open those conversations before the clock starts. */
export function partners(pattern: Pattern, from: number, p: Population): number[] {
  // Random partners are not opened beforehand: opening them is what that mode measures.
  if (pattern === "group" || (p.partners === "random" && (pattern === "dm" || pattern === "mixed"))) return [];
  if (pattern === "offline") {
    const half = Math.floor(p.clients / 2);
    return from < half ? contactsOf(from, { clients: p.clients - half, contacts: p.contacts }).map((c) => half + c) : [];
  }
  return contactsOf(from, p);
}
