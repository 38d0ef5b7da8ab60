/**
 * The log of a long-running role: pino, one JSON object a line on stdout, each
 * with the role and whatever the role binds (its server id), and where known
 * the request id and the error code. `pretty` is for a person at a terminal.
 *
 * Everything is written synchronously from this thread: pino's worker-thread
 * transports cannot start inside a `bun build --compile` binary.
 *
 * Call sites keep the simple form `log("text")`; they add fields where they
 * know more: `log("commit failed", { level: "error", code: "E_UNAVAILABLE" })`.
 */
import { writeSync } from "node:fs";
import pino, { type Logger } from "pino";

export type LogFormat = "json" | "pretty";
export type LogLevel = "debug" | "info" | "warn" | "error";

export interface LogFields {
  level?: LogLevel;
  /** The protocol error code (E_...), when the line is about one. */
  code?: string;
  /** The id of the request the line is about. */
  req?: number;
  [field: string]: unknown;
}

/** What every part takes to log: a plain line, and fields when it has them. */
export type Log = (line: string, fields?: LogFields) => void;

export interface LoggerOptions {
  role: string;
  format?: LogFormat;
  /** Fields on every line, e.g. { server: id }. */
  bindings?: Record<string, unknown>;
  /** Lowest level written; default info, or $CHATTERBOX_LOG_LEVEL. */
  level?: LogLevel;
  /** Where lines go; default stdout. Each call gets one whole line. */
  write?: (line: string) => void;
}

/**
 * Field names that may carry a secret, whatever a caller puts in them. Nothing
 * logs these today; this keeps a future `log("…", { token })` harmless.
 */
const SECRET_FIELDS = ["password", "auth", "authKey", "token", "proof", "secret", "key", "nonce", "body", "text", "ciphertext"];

export function parseLogFormat(value: string | undefined): LogFormat {
  if (value === undefined || value === "" || value === "auto") return process.stdout.isTTY ? "pretty" : "json";
  if (value === "json" || value === "pretty") return value;
  throw new Error(`--log-format takes json or pretty, got "${value}"`);
}

export function createLogger(options: LoggerOptions): Log {
  const write = options.write ?? writeStdout();
  const format = options.format ?? "json";
  const logger: Logger = pino(
    {
      level: options.level ?? levelFromEnv(),
      base: { role: options.role, pid: process.pid, ...options.bindings },
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
      redact: { paths: SECRET_FIELDS.flatMap((f) => [f, `*.${f}`]), censor: "[redacted]" },
    },
    { write: format === "pretty" ? (json: string) => write(pretty(json)) : write },
  );
  return (line, fields) => {
    const { level, ...rest } = fields ?? {};
    logger[level ?? guessLevel(line)](rest, line);
  };
}

/** For lines from call sites that do not say a level yet. */
function guessLevel(line: string): LogLevel {
  return /\b(failed|error|refused|cannot)\b/i.test(line) ? "warn" : "info";
}

function levelFromEnv(): LogLevel {
  const level = process.env.CHATTERBOX_LOG_LEVEL;
  return level === "debug" || level === "warn" || level === "error" ? level : "info";
}

/**
 * Synchronous writes to fd 1, so that nothing is lost when the process exits
 * right after a line. A full pipe (EAGAIN) waits a millisecond and tries
 * again, but for two seconds at most: a log reader that stopped reading must
 * not stop the server, so the line is dropped instead.
 */
const STALLED_MS = 2000;

function writeStdout(): (line: string) => void {
  const pause = new Int32Array(new SharedArrayBuffer(4));
  return (line) => {
    const whole = Buffer.from(line);
    let bytes = whole;
    const since = Date.now();
    while (bytes.length > 0) {
      try {
        bytes = bytes.subarray(writeSync(1, bytes));
      } catch (error) {
        if ((error as { code?: string }).code !== "EAGAIN") return;
        // Dropped only whole: a line begun is finished, or the next would be glued to half of it.
        if (bytes.length === whole.length && Date.now() - since > STALLED_MS) return;
        Atomics.wait(pause, 0, 0, 1);
      }
    }
  };
}

const STANDARD = new Set(["level", "time", "msg", "pid", "role", "hostname"]);

/** `12:00:01.234 INFO  server[1a2b3c4d] text key=value`, from one JSON line. */
export function pretty(json: string): string {
  const entry = JSON.parse(json) as Record<string, unknown>;
  const time = String(entry.time ?? "").slice(11, 23);
  const level = String(entry.level ?? "info").toUpperCase().padEnd(5);
  const who = entry.server ? `${entry.role}[${String(entry.server).slice(0, 8)}]` : String(entry.role);
  const extra = Object.entries(entry)
    .filter(([key]) => !STANDARD.has(key) && key !== "server")
    .map(([key, value]) => `${key}=${typeof value === "string" ? value : JSON.stringify(value)}`);
  // One entry stays one line: a newline from a client's input must not forge a second.
  const text = `${entry.msg ?? ""}${extra.length ? `  ${extra.join(" ")}` : ""}`.replace(/[\x00-\x08\x0b-\x1f\x7f]/g, "?").replace(/\n/g, "\n  ");
  return `${time} ${level} ${who} ${text}\n`;
}
