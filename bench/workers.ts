/**
 * The coordinator's side of the worker processes: spawn `chatterbox
 * bench-worker` copies, talk to them in JSON lines, wait for what they say.
 */
import type { Subprocess } from "bun";
import { selfCommand } from "../roles/self";
import { profiled } from "./system";
import type { FromWorker, ToWorker } from "./messages";

export class WorkerProcess {
  readonly proc: Subprocess<"pipe", "pipe", "inherit">;
  private readonly waiting: { type: string; resolve(m: FromWorker): void }[] = [];
  private readonly backlog: FromWorker[] = [];
  exited = false;

  constructor(
    readonly index: number,
    private readonly onMessage: (m: FromWorker) => boolean | void,
  ) {
    this.proc = Bun.spawn([...profiled(selfCommand(), `worker-${index}`), "bench-worker"], {
      stdin: "pipe",
      stdout: "pipe",
      stderr: "inherit",
      env: { ...process.env, CHATTERBOX_TEST_KDF: "1" },
    });
    void this.read();
    void this.proc.exited.then(() => (this.exited = true));
  }

  get pid(): number {
    return this.proc.pid;
  }

  send(order: ToWorker | Record<string, unknown>): void {
    this.proc.stdin.write(JSON.stringify(order) + "\n");
    this.proc.stdin.flush();
  }

  /** The next message of this type (or one that already came). */
  next<T extends FromWorker["type"]>(type: T, timeoutMs = 600_000): Promise<Extract<FromWorker, { type: T }>> {
    const i = this.backlog.findIndex((m) => m.type === type);
    if (i >= 0) return Promise.resolve(this.backlog.splice(i, 1)[0] as Extract<FromWorker, { type: T }>);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`worker ${this.index}: no ${type} within ${timeoutMs / 1000} s`)), timeoutMs);
      const check = setInterval(() => {
        if (this.exited) reject(new Error(`worker ${this.index} exited (code ${this.proc.exitCode}) while waiting for ${type}`));
      }, 200);
      this.waiting.push({
        type,
        resolve: (m) => {
          clearTimeout(timer);
          clearInterval(check);
          resolve(m as Extract<FromWorker, { type: T }>);
        },
      });
    });
  }

  kill(): void {
    if (!this.exited) this.proc.kill("SIGKILL");
  }

  private async read(): Promise<void> {
    const decoder = new TextDecoder();
    let partial = "";
    for await (const chunk of this.proc.stdout) {
      const parts = (partial + decoder.decode(chunk, { stream: true })).split("\n");
      partial = parts.pop()!;
      for (const line of parts) {
        if (!line.trim()) continue;
        const message = JSON.parse(line) as FromWorker;
        if (this.onMessage(message) === true) continue;
        const w = this.waiting.findIndex((x) => x.type === message.type);
        if (w >= 0) this.waiting.splice(w, 1)[0]!.resolve(message);
        else this.backlog.push(message);
      }
    }
  }
}
