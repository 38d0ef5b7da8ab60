/**
 * Line mode: a line a message. On a terminal (`chat --plain`), a prompt that
 * incoming lines print above; from a pipe, commands read line by line and a
 * line printed for each event, with a "[sent ID]" line for each of the user's
 * messages the server stored. Everything printed counts as shown. Messages
 * sent before this device joined a conversation's MLS group come in runs (a
 * new device's replay, /history): a run is one quiet line, printed once it
 * ends (another line, or a moment with nothing more of it).
 */
import { earlierRun, line, sanitize } from "../format";
import { beforeJoin } from "../received";
import type { ReceiptEvent, Received, TypingEvent } from "../session";
import { lineEditor, type LineEditor } from "../terminal";
import { label, secrecyLine, type ChatView, type Secrecy, type Sending, type Target, type ViewActions } from "../view";
import { readLines } from "./input";

/** A "typing" line for the same person and conversation at most this often. */
const TYPING_LINE_MS = 5_000;

/** A run of messages from before this device joined ends after this long with no more of it. */
const RUN_ENDS_MS = 250;

export class LineView implements ChatView {
  readonly json = false;
  private actions?: ViewActions;
  private editor?: LineEditor;
  private input?: { close(): void };
  private readonly typingShown = new Map<string, number>();
  /** Messages from before this device joined, not printed yet: the run's first, how many, and the last from someone else. */
  private run?: { first: Received; count: number; lastTheirs?: number; timer: ReturnType<typeof setTimeout> };

  constructor(
    private readonly user: string,
    private readonly interactive: boolean,
    private readonly out: (text: string) => void = (text) => console.log(text),
  ) {}

  private print(text: string): void {
    this.endRun();
    if (this.editor) this.editor.print(text);
    else this.out(text);
  }

  /** One more message of a run from before this device joined (a run is of one conversation). */
  private extendRun(m: Received): void {
    if (this.run && this.run.first.conv !== m.conv) this.endRun();
    const run = this.run ?? { first: m, count: 0, timer: setTimeout(() => this.endRun(), RUN_ENDS_MS) };
    run.count++;
    if (m.from !== this.user) run.lastTheirs = m.seq;
    run.timer.refresh();
    this.run = run;
  }

  private endRun(): void {
    const run = this.run;
    if (!run) return;
    this.run = undefined;
    clearTimeout(run.timer);
    this.print(earlierRun(run.first, run.count, this.user));
    // The quiet line is what the person was shown of them: the read marker may move past them, as past a warning.
    if (run.lastTheirs !== undefined) this.actions?.shown(run.first.conv, run.lastTheirs);
  }

  open(actions: ViewActions): void {
    this.actions = actions;
    if (!this.interactive) {
      this.input = readLines(actions.submit, actions.quit);
      return;
    }
    this.editor = lineEditor(
      (typed) => {
        // Leaving draws no prompt after it.
        if (/^\s*\/(quit|exit)\s*$/.test(typed)) this.editor?.close();
        actions.submit(typed);
      },
      actions.quit,
      actions.typing,
    );
    this.editor.setPrompt("> ");
  }

  message(m: Received): void {
    if (beforeJoin(m)) return this.extendRun(m);
    this.print(line(m, false));
    // Printed is shown: the read marker may move past it (never past what was not printed).
    if (m.from !== this.user) this.actions?.shown(m.conv, m.seq);
  }

  receipt(_r: ReceiptEvent): void {}

  read(): void {}

  typing(t: TypingEvent): void {
    const key = `${t.conv}:${t.from}`;
    if (Date.now() - (this.typingShown.get(key) ?? 0) < TYPING_LINE_MS) return;
    this.typingShown.set(key, Date.now());
    this.print(`* ${t.from} is typing${t.group ? ` in #${t.group}` : ""}…`);
  }

  status(text: string): void {
    this.print(`* ${text}`);
  }

  secrecy(notice: Secrecy): void {
    this.print(`* ${secrecyLine(notice)}`);
  }

  event(_type: string, _fields: Record<string, unknown>, human: string): void {
    this.print(human);
  }

  pending(target: Target, text: string): Sending {
    return {
      // At a prompt the typed line is already on screen; a script gets the id the server gave it.
      stored: (r) => {
        if (!this.interactive) this.print(`[sent ${r.msg}] ${this.user} → ${label(target)}: ${sanitize(text)}`);
      },
      failed: () => {},
    };
  }

  switched(target: Target): void {
    this.editor?.setPrompt(`${label(target)}> `);
  }

  ended(error: Error): void {
    this.print(`* ${error.message}`);
  }

  fileLine(text: string): void {
    this.print(text);
  }

  close(): void {
    this.endRun();
    this.editor?.close();
    this.editor = undefined;
    this.input?.close();
  }
}
