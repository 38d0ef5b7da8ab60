/**
 * The quick switcher (Ctrl-K): a filter typed over the conversations' names,
 * its matches in the status bar; Enter goes to the first, Escape leaves it.
 */
import { label } from "../view";
import type { Action } from "./keys";
import type { Conv } from "./model";

export class Switcher {
  /** The filter typed so far; undefined while the switcher is closed. */
  private filter?: string;

  get open(): boolean {
    return this.filter !== undefined;
  }

  start(): void {
    this.filter = "";
  }

  /** A key while open: the conversation chosen, when Enter chose one. */
  key(action: Action, convs: Conv[]): Conv | undefined {
    const matches = this.matches(convs);
    if (action.do === "insert") this.filter += action.text;
    else if (action.do === "edit" && action.op === "backspace") this.filter = [...this.filter!].slice(0, -1).join("");
    else if (action.do === "submit") {
      this.filter = undefined;
      return matches[0];
    } else if (action.do === "escape" || action.do === "interrupt" || action.do === "switcher") this.filter = undefined;
    return undefined;
  }

  /** The conversations whose name holds the filter, in the list's order. */
  matches(convs: Conv[]): Conv[] {
    const f = (this.filter ?? "").toLowerCase();
    return convs.filter((c) => label(c.target).toLowerCase().includes(f));
  }

  get prompt(): string {
    return `switch to: ${this.filter ?? ""}`;
  }
}
