/**
 * Keeps `chatterbox up`'s embedded PostgreSQL running. If the postmaster exits
 * unasked (killed, the out-of-memory killer, a crash it could not recover
 * from), it is started again on the same data folder and the same port, so
 * the chat servers' connection URL stays right: they answer E_UNAVAILABLE
 * meanwhile and replace their connections once it is back (db/connect.ts's
 * healing pool), and nothing committed is lost, PostgreSQL's own crash
 * recovery replays its WAL. A start that fails (the old backends still
 * holding shared memory, the port taken) is tried again at the pacer's pauses.
 */
import type { EmbeddedPostgres } from "../db/embedded";
import type { Log } from "./logger";
import { RestartPacer } from "./supervise";

/** Starts the embedded PostgreSQL again on the given port. */
export type StartPostgres = (port: number) => Promise<EmbeddedPostgres>;

export class KeptPostgres {
  private readonly pacer = new RestartPacer();
  private stopping = false;
  private pending: Timer | undefined;
  /** Starts that followed an unasked exit. */
  restarts = 0;

  constructor(
    private postgres: EmbeddedPostgres,
    private readonly start: StartPostgres,
    private readonly log: Log,
  ) {}

  /** The PostgreSQL running now (another one after each restart). */
  get current(): EmbeddedPostgres {
    return this.postgres;
  }

  /** From now on, an unasked exit is answered with a new start. */
  watch(): void {
    this.follow(this.postgres);
  }

  private follow(postgres: EmbeddedPostgres): void {
    void postgres.exited.then((how) => {
      if (this.stopping || postgres !== this.postgres) return;
      this.again(`the embedded PostgreSQL (pid ${postgres.pid}) exited (${how})`);
    });
  }

  private again(what: string): void {
    const pause = this.pacer.next();
    this.log(`${what}; starting it again in ${pause / 1000} s`, { level: "warn" });
    this.pending = setTimeout(() => void this.restart(), pause);
  }

  private async restart(): Promise<void> {
    this.pending = undefined;
    if (this.stopping) return;
    let postgres: EmbeddedPostgres;
    try {
      postgres = await this.start(this.postgres.port);
    } catch (error) {
      if (!this.stopping) this.again(`the embedded PostgreSQL did not start: ${(error as Error).message.split("\n")[0]}`);
      return;
    }
    if (this.stopping) return void (await postgres.stop());
    this.postgres = postgres;
    this.pacer.started();
    this.restarts++;
    this.log(`the embedded PostgreSQL started again (pid ${postgres.pid}, port ${postgres.port})`);
    this.follow(postgres);
  }

  /** No more restarts; stops what runs now. */
  async stop(): Promise<void> {
    this.stopping = true;
    clearTimeout(this.pending);
    await this.postgres.stop();
  }
}
