/**
 * A real terminal for tests: a tmux session on its own socket running a
 * command, typed into with send-keys and read with capture-pane. Its raw
 * output (bells included) is also copied to a file with pipe-pane.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { TEST_CA } from "./tls";
import { waitFor } from "./cluster";

export class Tmux {
  readonly dir = mkdtempSync(join(tmpdir(), "chatterbox-tmux-"));
  private readonly socket = join(this.dir, "sock");
  readonly raw = join(this.dir, "raw");

  private tmux(...args: string[]): string {
    const run = Bun.spawnSync(["tmux", "-S", this.socket, ...args], { stdout: "pipe", stderr: "pipe" });
    if (run.exitCode !== 0) throw new Error(`tmux ${args[0]}: ${run.stderr.toString()}`);
    return run.stdout.toString();
  }

  /** Starts `command` in a terminal `cols` × `rows`, with `env` set for it (its stderr to a file, unless on screen). */
  start(command: string[], env: Record<string, string>, cols = 100, rows = 30, stderrOnScreen = false): void {
    const script = join(this.dir, "run.sh");
    const quote = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;
    writeFileSync(
      script,
      [...Object.entries(env).map(([k, v]) => `export ${k}=${quote(v)}`), `${command.map(quote).join(" ")}${stderrOnScreen ? "" : ` 2>${quote(join(this.dir, "stderr"))}`}`, `echo "[exited $?]"`, "sleep 600"].join("\n"),
    );
    this.tmux("-f", "/dev/null", "new-session", "-d", "-x", String(cols), "-y", String(rows), "bash", script);
    this.tmux("pipe-pane", "-o", `cat >> ${this.raw}`);
  }

  keys(...keys: string[]): void {
    this.tmux("send-keys", ...keys);
  }

  /** Types text as it is (no key names). */
  type(text: string): void {
    this.tmux("send-keys", "-l", text);
  }

  /** Writes bytes to the program as they are, as a terminal would (a mouse report, a focus report). */
  send(bytes: string): void {
    this.tmux("send-keys", "-H", ...[...Buffer.from(bytes, "latin1")].map((b) => b.toString(16).padStart(2, "0")));
  }

  /** Where the terminal's cursor is, 0-based. */
  cursor(): { x: number; y: number } {
    const [x, y] = this.tmux("display-message", "-p", "#{cursor_x} #{cursor_y}").trim().split(" ").map(Number);
    return { x: x!, y: y! };
  }

  /** Pastes text as a terminal does (bracketed, when the program asked for it). */
  paste(text: string): void {
    this.tmux("set-buffer", "--", text);
    this.tmux("paste-buffer", "-p");
  }

  screen(): string {
    return this.tmux("capture-pane", "-p");
  }

  /** The screen with its colours and attributes, as escape sequences. */
  styledScreen(): string {
    return this.tmux("capture-pane", "-p", "-e");
  }

  resize(cols: number, rows: number): void {
    this.tmux("resize-window", "-x", String(cols), "-y", String(rows));
  }

  rawOutput(): string {
    try {
      return readFileSync(this.raw, "latin1");
    } catch {
      return "";
    }
  }

  stderr(): string {
    try {
      return readFileSync(join(this.dir, "stderr"), "utf8");
    } catch {
      return "";
    }
  }

  async waitForScreen(test: (screen: string) => boolean, what: string, timeoutMs = 30_000): Promise<string> {
    let last = "";
    try {
      await waitFor(() => test((last = this.screen())), what, timeoutMs);
    } catch (error) {
      throw new Error(`${(error as Error).message}\n--- screen ---\n${last}\n--- stderr ---\n${this.stderr()}`);
    }
    return last;
  }

  stop(): void {
    try {
      this.tmux("kill-server");
    } catch {
      // Already gone.
    }
    rmSync(this.dir, { recursive: true, force: true });
  }
}

/** The test cluster's CA as a file, for a client process's CHATTERBOX_CA. */
export function caFile(dir: string): string {
  const path = join(dir, "ca.pem");
  writeFileSync(path, TEST_CA.certPem);
  return path;
}
