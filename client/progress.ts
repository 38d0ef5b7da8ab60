/**
 * A progress bar on stderr: bytes, rate and time left. Only on a terminal;
 * elsewhere it stays silent, so scripted output is unchanged.
 */
export interface Progress {
  update(done: number): void;
  end(): void;
}

const SILENT: Progress = { update() {}, end() {} };

export function progressBar(label: string, total: number, enabled = process.stderr.isTTY === true): Progress {
  if (!enabled) return SILENT;
  // Labels carry file names, which come from senders: no control characters reach the terminal.
  label = label.replace(/[\u0000-\u001f\u007f-\u009f]/g, "");
  const started = Date.now();
  let last = 0;
  const draw = (done: number) => {
    const seconds = Math.max(0.001, (Date.now() - started) / 1000);
    const rate = done / seconds;
    const left = rate > 0 ? (total - done) / rate : Infinity;
    const width = 24;
    const filled = Math.round((done / Math.max(1, total)) * width);
    const bar = "█".repeat(filled) + "░".repeat(width - filled);
    process.stderr.write(`\r\x1b[2K${label} ${bar} ${bytes(done)}/${bytes(total)} ${bytes(rate)}/s ${Number.isFinite(left) ? `${Math.ceil(left)} s left` : ""}`);
  };
  return {
    update(done) {
      if (Date.now() - last < 100 && done < total) return;
      last = Date.now();
      draw(done);
    },
    end() {
      process.stderr.write("\r\x1b[2K");
    },
  };
}

export function bytes(n: number): string {
  const units = ["B", "KiB", "MiB", "GiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) {
    n /= 1024;
    i++;
  }
  return `${n.toFixed(i === 0 ? 0 : 1)} ${units[i]}`;
}
