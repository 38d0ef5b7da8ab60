/**
 * CPU time and resident memory of processes we started, from /proc (Linux).
 * CPU is sampled at the start and end of the measured window; a process that
 * used one core fully for the window shows 100%.
 */
import { readdirSync, readFileSync } from "node:fs";

const TICKS_PER_SECOND = 100;

/** Seconds of CPU (user + system) used so far by pid, or undefined when unreadable. */
export function cpuSeconds(pid: number): number | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    // The command name can hold spaces and parentheses: fields start after the last ")".
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return (Number(fields[11]) + Number(fields[12])) / TICKS_PER_SECOND;
  } catch {
    return undefined;
  }
}

/** Resident memory of pid in bytes. */
export function rssBytes(pid: number): number | undefined {
  try {
    const match = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
    return match ? Number(match[1]) * 1024 : undefined;
  } catch {
    return undefined;
  }
}

/** pid and every process below it: PostgreSQL's backends are children of the postmaster. */
export function tree(pid: number): number[] {
  const parent = new Map<number, number>();
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, "utf8");
      parent.set(Number(entry), Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]));
    } catch {}
  }
  const found = [pid];
  for (let i = 0; i < found.length; i++) for (const [child, p] of parent) if (p === found[i]) found.push(child);
  return found;
}

/** CPU seconds of a group of processes, read now; `usage(since)` turns two readings into a percentage. */
export class CpuMeter {
  private start = new Map<number, number>();
  private t0 = 0;

  constructor(private readonly pids: () => number[]) {}

  begin(): void {
    this.t0 = performance.now();
    this.start = new Map(this.pids().map((pid) => [pid, cpuSeconds(pid) ?? 0]));
  }

  /** Percent of one core over the window, summed over the group. */
  end(): number {
    const seconds = (performance.now() - this.t0) / 1000;
    let used = 0;
    for (const pid of this.pids()) used += (cpuSeconds(pid) ?? 0) - (this.start.get(pid) ?? 0);
    return Math.round((used / seconds) * 1000) / 10;
  }
}
