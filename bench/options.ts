/**
 * What `chatterbox bench` was asked to do, checked once at the edge.
 */
export const PATTERNS = ["dm", "dm-cross", "group", "offline", "mixed"] as const;
export type Pattern = (typeof PATTERNS)[number];
export const PARTNERS = ["fixed", "random"] as const;
export type Partners = (typeof PARTNERS)[number];

export interface BenchOptions {
  servers: number;
  /** HOST:PORT of a running system; unset: start our own. */
  balancer?: string;
  databaseUrl?: string;
  /** Where our own embedded PostgreSQL and the account tokens live. */
  dataDir?: string;
  workers: number;
  clients: number;
  durationS: number;
  warmupS: number;
  /** Messages a second in total, open loop; "max": closed loop with `window` in flight per client. */
  rate: number | "max";
  window: number;
  size: number;
  e2e: boolean;
  /** Group messages are real MLS ciphertexts of real MLS groups (bench/mls.ts): --pattern group only. */
  mls: boolean;
  pattern: Pattern;
  groupSize: number;
  /** Direct-message partners of each client. */
  contacts: number;
  /** "fixed": the --contacts, opened before the clock; "random": anyone, uniformly, so that cold conversations are measured. */
  partners: Partners;
  strategy: string;
  json: boolean;
  plot?: string;
  sweep?: number[];
  compareStrategies: boolean;
  ceiling: boolean;
  /** Account names are PREFIX0 .. PREFIX(clients-1). */
  prefix: string;
  /** Idle mode: log every client in, send nothing, report memory per connection. */
  idle: boolean;
  /** List PostgreSQL's statements by time taken after each run (embedded database only). */
  pgStatements: boolean;
  /** serve --commit-batches for the servers we start; unset: serve's default. */
  commitBatches?: number;
  /** serve --commit-gap-ms for the servers we start; unset: serve's default. */
  commitGapMs?: number;
}

/** The size of a real sealed and signed 100-character message to one recipient (bench/crypto.ts). */
export const REAL_MESSAGE_BYTES = 407;

export function parseOptions(args: Record<string, unknown>): BenchOptions {
  const int = (name: string, min: number, max: number): number => {
    const n = Number(args[name]);
    if (!Number.isInteger(n) || n < min || n > max) throw new Error(`--${name} takes a whole number from ${min} to ${max}`);
    return n;
  };
  const num = (name: string, min: number): number => {
    const n = Number(args[name]);
    if (!Number.isFinite(n) || n < min) throw new Error(`--${name} takes a number of at least ${min}`);
    return n;
  };
  const pattern = String(args.pattern) as Pattern;
  if (!PATTERNS.includes(pattern)) throw new Error(`--pattern takes one of ${PATTERNS.join(", ")}`);
  const partners = String(args.partners ?? "fixed") as Partners;
  if (!PARTNERS.includes(partners)) throw new Error(`--partners takes one of ${PARTNERS.join(", ")}`);
  const rateText = String(args.rate);
  const rate = rateText === "max" ? "max" : num("rate", 1);
  const sweep = args.sweep ? String(args.sweep).split(",").map((s) => Number(s.trim())) : undefined;
  if (sweep && (sweep.length === 0 || sweep.some((r) => !Number.isFinite(r) || r <= 0))) throw new Error("--sweep takes rates like 1000,5000,20000");
  const clients = int("clients", 2, 100_000);
  const options: BenchOptions = {
    servers: int("servers", 1, 64),
    balancer: args.balancer ? String(args.balancer) : undefined,
    databaseUrl: args["database-url"] ? String(args["database-url"]) : undefined,
    dataDir: args.data ? String(args.data) : undefined,
    workers: Math.min(int("workers", 1, 64), clients),
    clients,
    durationS: num("duration", 0.1),
    warmupS: num("warmup", 0),
    rate,
    window: int("window", 1, 10_000),
    size: int("size", 64, 64 * 1024),
    e2e: !!args.e2e,
    mls: !!args.mls,
    pattern,
    groupSize: Math.min(int("group-size", 2, 1000), clients),
    contacts: int("contacts", 1, 1000),
    partners,
    strategy: String(args.strategy),
    json: !!args.json,
    plot: args.plot ? String(args.plot) : undefined,
    sweep,
    compareStrategies: !!args["compare-strategies"],
    ceiling: !!args.ceiling,
    prefix: String(args.prefix),
    idle: !!args.idle,
    pgStatements: !!args["pg-statements"],
    commitBatches: args["commit-batches"] === undefined ? undefined : int("commit-batches", 1, 64),
    commitGapMs: args["commit-gap-ms"] === undefined ? undefined : int("commit-gap-ms", 0, 1000),
  };
  if (options.mls && (options.pattern !== "group" || options.e2e || options.ceiling)) throw new Error("--mls takes --pattern group, without --e2e or --ceiling");
  if (!/^[a-z0-9_.-]{1,20}$/.test(options.prefix)) throw new Error("--prefix: up to 20 characters from a-z, 0-9, '_', '.', '-'");
  if (options.balancer && (options.compareStrategies || options.ceiling)) {
    throw new Error("--compare-strategies and --ceiling start their own servers: leave out --balancer");
  }
  return options;
}
