/**
 * The edge: the only place that distrusts what arrives. Each helper checks one
 * field and throws a ChatError naming it; past these, types are exact.
 */
import { ChatError } from "./errors";

/** Not "." or "..", nor any name starting with a dot or dash: names become folder names on clients. */
export const NAME_PATTERN = /^[a-z0-9_][a-z0-9_.-]{0,31}$/;
export const MIN_PASSWORD = 8;

type Args = Record<string, unknown>;

export function name(args: Args, field: string): string {
  const value = args[field];
  if (typeof value !== "string" || !NAME_PATTERN.test(value)) {
    throw new ChatError("E_INVALID_NAME", `${field}: names are 1 to 32 characters from a-z, 0-9, '_', '.' and '-', starting with a letter, digit or '_'`);
  }
  return value;
}

export function string(args: Args, field: string, max = 1024): string {
  const value = args[field];
  if (typeof value !== "string" || value.length === 0 || value.length > max) {
    throw new ChatError("E_BAD_REQUEST", `${field}: expected a string of 1 to ${max} characters`);
  }
  return value;
}

export function bytes(args: Args, field: string, max: number): Uint8Array {
  const value = args[field];
  if (!(value instanceof Uint8Array)) {
    throw new ChatError("E_BAD_REQUEST", `${field}: expected bytes`);
  }
  if (value.length > max) {
    throw new ChatError("E_MESSAGE_TOO_LARGE", `${field}: ${value.length} bytes is over the limit of ${max}`);
  }
  return value;
}

function isInt(value: unknown, min: number, max: number): value is number {
  return typeof value === "number" && Number.isInteger(value) && value >= min && value <= max;
}

export function int(args: Args, field: string, min = 0, max = Number.MAX_SAFE_INTEGER): number {
  const value = args[field];
  if (!isInt(value, min, max)) {
    throw new ChatError("E_BAD_REQUEST", `${field}: expected an integer from ${min} to ${max}`);
  }
  return value;
}

export function optionalInt(args: Args, field: string, min = 0, max = Number.MAX_SAFE_INTEGER): number | undefined {
  return args[field] === undefined || args[field] === null ? undefined : int(args, field, min, max);
}

export function optionalName(args: Args, field: string): string | undefined {
  return args[field] === undefined || args[field] === null ? undefined : name(args, field);
}

export function exactBytes(args: Args, field: string, length: number): Uint8Array {
  const value = args[field];
  if (!(value instanceof Uint8Array) || value.length !== length) {
    throw new ChatError("E_BAD_REQUEST", `${field}: expected ${length} bytes`);
  }
  return value;
}

export function names(args: Args, field: string, max: number): string[] {
  const value = args[field];
  if (!Array.isArray(value) || value.length === 0 || value.length > max) {
    throw new ChatError("E_BAD_REQUEST", `${field}: expected a list of 1 to ${max} names`);
  }
  return value.map((_, i) => name(value as unknown as Args, String(i)));
}

/** A list of 1 to `max` [conversation, sequence number] pairs, each conversation at most once. */
export function cursorPairs(args: Args, field: string, max: number): [number, number][] {
  const value = args[field];
  const bad = () => new ChatError("E_BAD_REQUEST", `${field}: expected a list of 1 to ${max} [conv, seq] pairs, one per conversation`);
  if (!Array.isArray(value) || value.length === 0 || value.length > max) throw bad();
  const seen = new Set<number>();
  for (const pair of value) {
    if (!Array.isArray(pair) || pair.length !== 2) throw bad();
    const [conv, seq] = pair as unknown[];
    if (!isInt(conv, 1, 2 ** 31 - 1) || !isInt(seq, 0, Number.MAX_SAFE_INTEGER)) throw bad();
    if (seen.has(conv)) throw bad();
    seen.add(conv);
  }
  return value as [number, number][];
}

export interface KdfArgs {
  alg: "scrypt";
  N: number;
  r: number;
  p: number;
}

/** Key-derivation parameters the server stores for a client and hands back at login. */
export function kdf(args: Args, field: string): KdfArgs {
  const value = args[field] as Args | undefined;
  if (!value || typeof value !== "object" || value.alg !== "scrypt") {
    throw new ChatError("E_BAD_REQUEST", `${field}: expected {alg: "scrypt", N, r, p}`);
  }
  const N = int(value, "N", 1024, 2 ** 20);
  if ((N & (N - 1)) !== 0) throw new ChatError("E_BAD_REQUEST", `${field}.N: expected a power of two`);
  return { alg: "scrypt", N, r: int(value, "r", 1, 32), p: int(value, "p", 1, 16) };
}

const DEVICE_KEY = /^[A-Za-z0-9_-]{8,64}$/;

/** A device as a client names it at login: its random id, and a name for people (control characters removed). */
export function device(args: Args, field: string): { key: string; name: string } {
  const value = args[field] as Args | undefined;
  if (!value || typeof value !== "object" || typeof value.id !== "string" || !DEVICE_KEY.test(value.id)) {
    throw new ChatError("E_BAD_REQUEST", `${field}: expected {id: 8 to 64 characters from A-Z, a-z, 0-9, '_' and '-', name}`);
  }
  const name = typeof value.name === "string" ? value.name.replace(/[\u0000-\u001f\u007f-\u009f\u200e\u200f\u202a-\u202e\u2066-\u2069]/g, "").trim().slice(0, 64) : "";
  return { key: value.id, name: name || "unnamed device" };
}

export function boolean(args: Args, field: string): boolean {
  const value = args[field];
  if (typeof value !== "boolean") throw new ChatError("E_BAD_REQUEST", `${field}: expected true or false`);
  return value;
}
