/**
 * Replies the server pages so that each fits a frame: lists by name (groups,
 * who) and history by bytes as well as by count. These ask page after page
 * until the list ends or the count is reached.
 */
import type { WireMessage } from "../protocol/messages";
import { bytesOf } from "./inflow";
import type { Received } from "./received";

export type Request = (op: string, args?: Record<string, unknown>) => Promise<Record<string, unknown>>;

/** Every item of a list: ask after the last name until there is no `next` (or it stops moving). */
export async function allPages(request: Request, op: string, field: string): Promise<unknown[]> {
  const out: unknown[] = [];
  let after: string | undefined;
  do {
    const reply = await request(op, after === undefined ? {} : { after });
    out.push(...(reply[field] as unknown[]));
    after = typeof reply.next === "string" && reply.next !== after ? reply.next : undefined;
  } while (after !== undefined);
  return out;
}

/**
 * Up to `limit` of a conversation's latest messages (or those before `start`,
 * a seq), oldest first, each read as its reader sees it; MLS commits and
 * welcomes are left out.
 */
export async function pagedHistory(
  request: Request,
  read: (message: WireMessage) => Promise<Received>,
  target: { group: string } | { with: string },
  limit: number,
  start?: number,
): Promise<Received[]> {
  const pages: WireMessage[][] = [];
  let got = 0;
  let before: number | undefined = start;
  while (got < limit) {
    const reply = await request("history", { ...target, limit: limit - got, ...(before !== undefined ? { before } : {}) });
    const page = reply.messages as WireMessage[];
    if (page.length === 0) break;
    pages.unshift(page);
    got += page.length;
    before = page[0]!.seq;
  }
  const out: Received[] = [];
  for (const m of pages.flat()) {
    const r = await read(bytesOf(m));
    if (!r.control) out.push(r);
  }
  return out;
}
