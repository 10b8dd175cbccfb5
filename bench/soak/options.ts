/**
 * Soak options: flags > BURROW_SOAK_* env > defaults, parsed once. Pure: reads nothing itself;
 * the entry point passes argv and env in.
 */

export interface SoakOptions {
  /** Traffic time (faults included); setup and the final checks come on top. */
  readonly durationMs: number;
  readonly tunnels: number;
  /** Relay nodes: 1 (in-memory bus) or 2 (joined through a real redis-server, Redis restarts in the fault mix). */
  readonly nodes: 1 | 2;
  /** Operations in flight at once. */
  readonly concurrency: number;
  /** Write the full report here as JSON. */
  readonly jsonPath: string | undefined;
  /** Seed of the traffic and fault choices (printed, so a run can be repeated). */
  readonly seed: number;
  /** Time between fault injections. */
  readonly faultEveryMs: number;
  /** Time between relay memory samples. */
  readonly sampleEveryMs: number;
  /** Largest growth of the relay's live memory (last third over middle third) that still counts as levelled off, in percent. */
  readonly maxGrowthPct: number;
}

export class SoakUsageError extends Error {
  readonly code = 'BURROW_ERR_CONFIG';
}

const UNITS_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };

/** "10m", "90s", "1m30s", "500ms", "2h"; a bare number is seconds. */
export function parseDuration(text: string): number {
  const t = text.trim();
  if (/^\d+(\.\d+)?$/.test(t)) return Math.round(Number(t) * 1000);
  const parts = [...t.matchAll(/(\d+(?:\.\d+)?)(ms|s|m|h)/g)];
  if (parts.length === 0 || parts.map((p) => p[0]).join('') !== t) throw new SoakUsageError(`not a duration: "${text}" (try 10m, 90s, 1m30s or 500ms)`);
  return Math.round(parts.reduce((sum, p) => sum + Number(p[1]) * (UNITS_MS[p[2] as string] as number), 0));
}

const clamp = (v: number, lo: number, hi: number): number => Math.min(hi, Math.max(lo, v));

interface Spec {
  readonly flag: string;
  readonly env: string;
  readonly help: string;
}

const SPECS: readonly Spec[] = [
  { flag: '--duration', env: 'BURROW_SOAK_DURATION', help: 'traffic time, e.g. 10m, 90s, 1m30s (default 10m)' },
  { flag: '--tunnels', env: 'BURROW_SOAK_TUNNELS', help: 'tunnels; half (rounded up) behind fault proxies, the rest a control group (default 20)' },
  { flag: '--nodes', env: 'BURROW_SOAK_NODES', help: '1 relay (in-memory bus) or 2 relays on a redis-server (default 2)' },
  { flag: '--concurrency', env: 'BURROW_SOAK_CONCURRENCY', help: 'operations in flight at once (default 24)' },
  { flag: '--json', env: 'BURROW_SOAK_JSON', help: 'also write the whole report to this file as JSON' },
  { flag: '--seed', env: 'BURROW_SOAK_SEED', help: 'seed of the traffic and fault choices (default: random, printed)' },
  { flag: '--fault-every', env: 'BURROW_SOAK_FAULT_EVERY', help: 'time between faults (default: duration / 8, between 2.5 s and 8 s)' },
  { flag: '--sample-every', env: 'BURROW_SOAK_SAMPLE_EVERY', help: 'time between relay memory samples (default: duration / 100, between 1 s and 5 s)' },
  { flag: '--max-growth-pct', env: 'BURROW_SOAK_MAX_GROWTH_PCT', help: 'memory verdict threshold, percent (default 10)' },
];

export function soakHelp(): string {
  const rows = SPECS.map((s) => `  ${`${s.flag} <v>`.padEnd(22)} ${s.env.padEnd(28)} ${s.help}`);
  return `Usage: npm run soak -- [options]\n\nRuns tunnels with mixed traffic and injected faults, then reports failures and relay memory.\n\n${rows.join('\n')}\n`;
}

function positiveInt(name: string, text: string, max: number): number {
  const n = Number(text);
  if (!Number.isInteger(n) || n < 1 || n > max) throw new SoakUsageError(`${name} must be a whole number from 1 to ${max}, not "${text}"`);
  return n;
}

export type ParsedSoak = { readonly kind: 'help' } | { readonly kind: 'run'; readonly options: SoakOptions };

export function parseSoakOptions(argv: readonly string[], env: NodeJS.ProcessEnv): ParsedSoak {
  const values = new Map<string, string>();
  for (const s of SPECS) {
    const v = env[s.env];
    if (v !== undefined && v !== '') values.set(s.flag, v);
  }
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i] as string;
    if (arg === '--help' || arg === '-h') return { kind: 'help' };
    const eq = arg.indexOf('=');
    const flag = eq > 0 ? arg.slice(0, eq) : arg;
    if (!SPECS.some((s) => s.flag === flag)) throw new SoakUsageError(`unknown option ${arg}; see --help`);
    const value = eq > 0 ? arg.slice(eq + 1) : argv[++i];
    if (value === undefined) throw new SoakUsageError(`${flag} needs a value`);
    values.set(flag, value);
  }
  const durationMs = parseDuration(values.get('--duration') ?? '10m');
  if (durationMs < 5000) throw new SoakUsageError('--duration must be at least 5s');
  const tunnels = positiveInt('--tunnels', values.get('--tunnels') ?? '20', 500);
  if (tunnels < 2) throw new SoakUsageError('--tunnels must be at least 2 (one behind a fault proxy, one in the control group)');
  const nodes = positiveInt('--nodes', values.get('--nodes') ?? '2', 2) as 1 | 2;
  const seedText = values.get('--seed');
  const seed = seedText !== undefined ? positiveInt('--seed', seedText, 2 ** 31 - 1) : 1 + Math.floor(Math.random() * (2 ** 31 - 2));
  const faultEvery = values.get('--fault-every');
  const sampleEvery = values.get('--sample-every');
  const growth = Number(values.get('--max-growth-pct') ?? '10');
  if (!Number.isFinite(growth) || growth <= 0) throw new SoakUsageError('--max-growth-pct must be a positive number');
  return {
    kind: 'run',
    options: Object.freeze({
      durationMs,
      tunnels,
      nodes,
      concurrency: positiveInt('--concurrency', values.get('--concurrency') ?? '24', 1000),
      jsonPath: values.get('--json'),
      seed,
      faultEveryMs: faultEvery !== undefined ? parseDuration(faultEvery) : clamp(Math.round(durationMs / 8), 2500, 8000),
      sampleEveryMs: sampleEvery !== undefined ? parseDuration(sampleEvery) : clamp(Math.round(durationMs / 100), 1000, 5000),
      maxGrowthPct: growth,
    }),
  };
}
