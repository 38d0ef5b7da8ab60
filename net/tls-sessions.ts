/**
 * TLS session resumption for callers: the last session ticket each address gave
 * this process, offered again on the next connection there, so a reconnect
 * storm (or thousands of bench clients) skips the certificate exchange. A
 * resumed session proves the other end holds the ticket key of the server that
 * was verified when the ticket was issued. Tickets are kept per trusted CA and
 * per certificate shown, so a change of trust never rides on an old session,
 * and a session never lends one caller's certificate to another.
 */
const MAX_ENTRIES = 1024;
const tickets = new Map<string, Uint8Array>();

function keyOf(address: string, caPem: string, certPem: string | undefined): string {
  return `${address}\n${caPem}\n${certPem ?? "no certificate"}`;
}

export function ticketFor(address: string, caPem: string, certPem: string | undefined): Uint8Array | undefined {
  return tickets.get(keyOf(address, caPem, certPem));
}

export function keepTicket(address: string, caPem: string, certPem: string | undefined, ticket: Uint8Array | undefined): void {
  if (!ticket || ticket.length === 0) return;
  const key = keyOf(address, caPem, certPem);
  tickets.delete(key);
  tickets.set(key, ticket);
  // Oldest first out: a Map iterates in insertion order.
  if (tickets.size > MAX_ENTRIES) tickets.delete(tickets.keys().next().value!);
}
