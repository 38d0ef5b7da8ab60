/**
 * JSON lines (`chat --json`): one object a line for every event, for scripts.
 * Everything printed counts as shown, so the read marker follows it.
 */
import { line } from "../format";
import type { ReceiptEvent, Received, TypingEvent } from "../session";
import { secrecyLine, type ChatView, type Secrecy, type Sending, type Target, type ViewActions } from "../view";
import { readLines } from "./input";

export class JsonView implements ChatView {
  readonly json = true;
  private actions?: ViewActions;
  private input?: { close(): void };

  constructor(private readonly print: (text: string) => void = (text) => console.log(text)) {}

  open(actions: ViewActions): void {
    this.actions = actions;
    this.input = readLines(actions.submit, actions.quit);
  }

  private emit(type: string, fields: Record<string, unknown>): void {
    this.print(JSON.stringify({ type, ...fields }));
  }

  message(m: Received): void {
    this.print(line(m, true));
    this.actions?.shown(m.conv, m.seq);
  }

  receipt(r: ReceiptEvent): void {
    this.emit("receipt", { conv: r.conv, user: r.user, ...(r.delivered !== undefined ? { delivered: r.delivered } : {}), ...(r.read !== undefined ? { read: r.read } : {}) });
  }

  read(conv: number, seq: number): void {
    this.emit("read", { conv, seq });
  }

  typing(t: TypingEvent): void {
    this.emit("typing", { conv: t.conv, from: t.from, ...(t.group ? { group: t.group } : {}) });
  }

  status(text: string): void {
    this.emit(text.startsWith("WARNING") ? "warning" : "status", { text });
  }

  secrecy(n: Secrecy): void {
    this.emit("secrecy", { [n.target.kind === "group" ? "group" : "to"]: n.target.name, forwardSecret: n.forwardSecret, ...(n.reason !== undefined ? { reason: n.reason } : {}), ...(n.doubt !== undefined ? { doubt: n.doubt } : {}), text: secrecyLine(n) });
  }

  event(type: string, fields: Record<string, unknown>): void {
    this.emit(type, fields);
  }

  pending(target: Target, text: string): Sending {
    return {
      stored: (r) => this.emit("sent", { id: r.msg, ...(target.kind === "group" ? { group: target.name } : { to: target.name }), time: new Date(r.at).toISOString(), text }),
      failed: () => {},
    };
  }

  switched(): void {}

  ended(error: Error & { code?: string }): void {
    this.emit("error", { code: error.code ?? "E_INTERNAL", message: error.message });
  }

  fileLine(text: string): void {
    this.print(text);
  }

  close(): void {
    this.input?.close();
  }
}
