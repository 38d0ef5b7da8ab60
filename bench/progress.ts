/**
 * A progress bar on stderr while the load runs, only when stderr is a terminal.
 */
import { addEncoded, newHistogram } from "./hist";
import type { Tick } from "./messages";

export class Progress {
  private readonly on: boolean;
  private shown = false;

  constructor(
    private readonly totalS: number,
    wanted: boolean,
  ) {
    this.on = wanted && !!process.stderr.isTTY;
  }

  update(elapsedS: number, ticks: Tick[]): void {
    if (!this.on) return;
    const width = 30;
    const fraction = Math.min(1, elapsedS / this.totalS);
    const filled = Math.round(fraction * width);
    const seconds = ticks.length > 0 ? 0.5 : 1;
    const acked = ticks.reduce((n, t) => n + t.acked, 0) / seconds;
    const delivered = ticks.reduce((n, t) => n + t.delivered, 0) / seconds;
    const h = newHistogram();
    for (const t of ticks) addEncoded(h, t.deliveryHist);
    const p99 = h.totalCount ? `${(h.getValueAtPercentile(99) / 1000).toFixed(1)} ms` : "-";
    h.destroy();
    const bar = `[${"#".repeat(filled)}${".".repeat(width - filled)}]`;
    process.stderr.write(`\r${bar} ${elapsedS.toFixed(1)}/${this.totalS} s  ${fmt(acked)} msg/s stored  ${fmt(delivered)}/s delivered  p99 ${p99}   `);
    this.shown = true;
  }

  done(): void {
    if (this.shown) process.stderr.write("\n");
    this.shown = false;
  }
}

function fmt(n: number): string {
  return Math.round(n).toLocaleString("en-US");
}
