/**
 * Who is typing in each conversation. Typing has no "stopped" notice: each
 * notice counts for a few seconds, and a message from the typist ends it.
 */
const SHOWN_MS = 6_000;

export class Typists {
  private readonly until = new Map<number, Map<string, number>>();

  saw(conv: number, who: string, now = Date.now()): void {
    const here = this.until.get(conv) ?? new Map<string, number>();
    here.set(who, now + SHOWN_MS);
    this.until.set(conv, here);
  }

  stopped(conv: number, who: string): void {
    this.until.get(conv)?.delete(who);
  }

  /** Who is typing in a conversation now. */
  in(conv: number | undefined, now = Date.now()): string[] {
    const here = conv !== undefined ? this.until.get(conv) : undefined;
    return [...(here ?? new Map<string, number>()).entries()].filter(([, until]) => until > now).map(([who]) => who);
  }
}
