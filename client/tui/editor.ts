/**
 * The input line's editing, apart from any terminal: text and a cursor, the
 * motions and kills of a shell's line editor (Home/End, word motions, Ctrl-W,
 * Ctrl-U, Ctrl-K), a history walked with Up/Down, and Tab completion. The
 * full-screen view feeds it keys and draws what it holds.
 */
const graphemes = new Intl.Segmenter(undefined, { granularity: "grapheme" });

/** Text as the characters a person sees (grapheme clusters): a flag or an accented letter is one, never split. */
export function charsOf(text: string): string[] {
  return Array.from(graphemes.segment(text), (s) => s.segment);
}

export class InputEditor {
  /** The text as characters, so that the cursor never splits one. */
  private chars: string[] = [];
  /** Where the cursor is, in characters from the start (not columns: a wide character takes two). */
  cursor = 0;
  private readonly past: string[] = [];
  /** Where Up/Down is in the history (past.length: the line being written), and that line, kept. */
  private walking = 0;
  private kept = "";

  get text(): string {
    return this.chars.join("");
  }

  get atEnd(): boolean {
    return this.cursor === this.chars.length;
  }

  /** Replaces the text (a draft brought back), cursor at the end. */
  set(text: string): void {
    this.chars = charsOf(text);
    this.cursor = this.chars.length;
    this.walking = this.past.length;
  }

  insert(text: string): void {
    const add = charsOf(text);
    this.chars.splice(this.cursor, 0, ...add);
    this.cursor += add.length;
  }

  left(): void {
    this.cursor = Math.max(0, this.cursor - 1);
  }
  right(): void {
    this.cursor = Math.min(this.chars.length, this.cursor + 1);
  }
  home(): void {
    this.cursor = 0;
  }
  end(): void {
    this.cursor = this.chars.length;
  }

  private isWord(i: number): boolean {
    return /[\p{L}\p{N}_]/u.test(this.chars[i] ?? "");
  }
  /** Where the word before the cursor starts (Alt-B, Ctrl-Left, Ctrl-W). */
  private wordStart(): number {
    let i = this.cursor;
    while (i > 0 && !this.isWord(i - 1)) i--;
    while (i > 0 && this.isWord(i - 1)) i--;
    return i;
  }
  wordLeft(): void {
    this.cursor = this.wordStart();
  }
  wordRight(): void {
    let i = this.cursor;
    while (i < this.chars.length && !this.isWord(i)) i++;
    while (i < this.chars.length && this.isWord(i)) i++;
    this.cursor = i;
  }

  backspace(): void {
    if (this.cursor === 0) return;
    this.chars.splice(this.cursor - 1, 1);
    this.cursor--;
  }
  deleteForward(): void {
    this.chars.splice(this.cursor, 1);
  }
  /** Ctrl-W: the word before the cursor. */
  killWord(): void {
    const start = this.wordStart();
    this.chars.splice(start, this.cursor - start);
    this.cursor = start;
  }
  /** Ctrl-U: everything before the cursor. */
  killToStart(): void {
    this.chars.splice(0, this.cursor);
    this.cursor = 0;
  }
  /** Ctrl-K: everything after the cursor. */
  killToEnd(): void {
    this.chars.splice(this.cursor);
  }

  /** Enter: the line, remembered for Up, and an empty editor. */
  submit(): string {
    const line = this.text;
    if (line.trim() !== "" && this.past[this.past.length - 1] !== line) this.past.push(line);
    this.set("");
    return line;
  }

  up(): void {
    if (this.walking === 0) return;
    if (this.walking === this.past.length) this.kept = this.text;
    this.walking--;
    this.show(this.past[this.walking]!);
  }
  down(): void {
    if (this.walking >= this.past.length) return;
    this.walking++;
    this.show(this.walking === this.past.length ? this.kept : this.past[this.walking]!);
  }
  private show(text: string): void {
    this.chars = charsOf(text);
    this.cursor = this.chars.length;
  }

  /**
   * Tab: completes the word before the cursor from `candidates` (a command
   * when the line starts with "/", else names). One match is completed with a
   * space after it; several are completed as far as they agree.
   */
  complete(candidates: readonly string[]): string[] {
    const start = this.wordStartForCompletion();
    const word = this.chars.slice(start, this.cursor).join("");
    if (word === "") return [];
    const matches = [...new Set(candidates.filter((c) => c.startsWith(word) && c !== word))].sort();
    if (matches.length === 0) return [];
    let common = matches[0]!;
    for (const m of matches) while (!m.startsWith(common)) common = common.slice(0, -1);
    const add = (matches.length === 1 ? `${matches[0]} ` : common).slice(word.length);
    this.insert(add);
    return matches;
  }
  private wordStartForCompletion(): number {
    let i = this.cursor;
    while (i > 0 && !/\s/.test(this.chars[i - 1]!)) i--;
    return i;
  }
}
