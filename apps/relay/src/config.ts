/**
 * Relay configuration: flags > BURROW_* env > defaults, validated once, then frozen.
 * Pure: parseRelayConfig never reads process state itself; main.ts passes argv and env in.
 */
import { randomBytes } from 'node:crypto';
import { DEFAULT_STREAM_WINDOW_BYTES } from '@burrow/protocol';

export interface RelayConfig {
  readonly port: number;
  readonly host: string;
  /** Tunnels live at <label>.<domain>. */
  readonly domain: string;
  /** The apex URL as the public sees it (scheme, host, port); tunnel URLs are derived from it. Unset: http://<domain>:<bound port>. */
  readonly publicUrl: string | undefined;
  readonly requestTimeoutMs: number;
  readonly maxBodyBytes: number;
  readonly pingIntervalMs: number;
  readonly registrationTimeoutMs: number;
  readonly maxStreamsPerTunnel: number;
  readonly streamWindowBytes: number;
  readonly nodeId: string;
  /** Most friendly-name bindings the relay keeps (each is kept forever: this bounds that table). */
  readonly maxNames: number;
  /** Where a single relay keeps state across restarts (friendly-name bindings); unset: memory only. */
  readonly dataDir: string | undefined;
  /** Further host[:port] authorities agents may sign registrations for (how they dial this relay). */
  readonly extraAudiences: readonly string[];
  readonly logLevel: 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent';
}

export class ConfigError extends Error {
  readonly code = 'BURROW_ERR_CONFIG';
}

interface OptionSpec {
  readonly key: keyof RelayConfig;
  readonly flag: string;
  readonly env: string;
  readonly kind: 'int' | 'string' | 'level' | 'list';
  readonly min?: number;
  readonly max?: number;
  readonly help: string;
  /** Default shown in --help (computed defaults are described in words). */
  readonly defaultText: string;
}

const LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;

export const RELAY_OPTIONS: readonly OptionSpec[] = [
  { key: 'port', flag: '--port', env: 'BURROW_PORT', kind: 'int', min: 0, max: 65535, help: 'TCP port for public traffic and agents', defaultText: '8080' },
  { key: 'host', flag: '--host', env: 'BURROW_HOST', kind: 'string', help: 'address to listen on', defaultText: '0.0.0.0' },
  { key: 'domain', flag: '--domain', env: 'BURROW_DOMAIN', kind: 'string', help: 'tunnels are served at <label>.<domain>', defaultText: 'localhost' },
  {
    key: 'publicUrl',
    flag: '--public-url',
    env: 'BURROW_PUBLIC_URL',
    kind: 'string',
    help: 'apex URL as the public reaches it (set when TLS sits in front)',
    defaultText: 'http://<domain>:<port>',
  },
  {
    key: 'requestTimeoutMs',
    flag: '--request-timeout-ms',
    env: 'BURROW_REQUEST_TIMEOUT_MS',
    kind: 'int',
    min: 1,
    max: 3_600_000,
    help: 'wait this long for a response head, then 504',
    defaultText: '30000',
  },
  {
    key: 'maxBodyBytes',
    flag: '--max-body-bytes',
    env: 'BURROW_MAX_BODY_BYTES',
    kind: 'int',
    min: 0,
    max: 2 ** 40,
    help: 'largest request or response body (413 / 502 beyond)',
    defaultText: '512000',
  },
  {
    key: 'pingIntervalMs',
    flag: '--ping-interval-ms',
    env: 'BURROW_PING_INTERVAL_MS',
    kind: 'int',
    min: 50,
    max: 600_000,
    help: 'ping an agent after this much silence; drop it after twice this',
    defaultText: '10000',
  },
  {
    key: 'registrationTimeoutMs',
    flag: '--registration-timeout-ms',
    env: 'BURROW_REGISTRATION_TIMEOUT_MS',
    kind: 'int',
    min: 50,
    max: 600_000,
    help: 'close agent sockets that have not registered by then',
    defaultText: '10000',
  },
  {
    key: 'maxStreamsPerTunnel',
    flag: '--max-streams-per-tunnel',
    env: 'BURROW_MAX_STREAMS_PER_TUNNEL',
    kind: 'int',
    min: 1,
    max: 1_000_000,
    help: 'concurrent requests per tunnel (503 beyond)',
    defaultText: '1000',
  },
  {
    key: 'streamWindowBytes',
    flag: '--stream-window-bytes',
    env: 'BURROW_STREAM_WINDOW_BYTES',
    kind: 'int',
    min: 16 * 1024,
    max: 16 * 1024 * 1024,
    help: 'per-stream flow-control window',
    defaultText: String(DEFAULT_STREAM_WINDOW_BYTES),
  },
  { key: 'nodeId', flag: '--node-id', env: 'BURROW_NODE_ID', kind: 'string', help: "this node's id on the bus", defaultText: 'random' },
  {
    key: 'maxNames',
    flag: '--max-names',
    env: 'BURROW_MAX_NAMES',
    kind: 'int',
    min: 0,
    max: 100_000_000,
    help: 'most friendly names bound on this relay',
    defaultText: '100000',
  },
  {
    key: 'dataDir',
    flag: '--data-dir',
    env: 'BURROW_DATA_DIR',
    kind: 'string',
    help: 'keep friendly-name bindings here across restarts',
    defaultText: 'none (memory only)',
  },
  {
    key: 'extraAudiences',
    flag: '--extra-audiences',
    env: 'BURROW_EXTRA_AUDIENCES',
    kind: 'list',
    help: 'more host[:port] names agents may dial this relay by (comma-separated)',
    defaultText: 'none',
  },
  { key: 'logLevel', flag: '--log-level', env: 'BURROW_LOG_LEVEL', kind: 'level', help: `log level (${LEVELS.join(', ')})`, defaultText: 'info' },
];

export function relayHelp(): string {
  const lines = [
    'Usage: burrow-relay [options]',
    '',
    'Runs a burrow relay: public HTTP/WebSocket ingress at <label>.<domain> and the agent endpoint on the apex host.',
    '',
    'Options (flag, environment variable, default):',
  ];
  for (const o of RELAY_OPTIONS) {
    lines.push(`  ${`${o.flag} <${o.kind === 'int' ? 'n' : o.kind === 'list' ? 'a,b' : 'value'}>`.padEnd(34)}${o.help}`);
    lines.push(`  ${''.padEnd(34)}env ${o.env}, default ${o.defaultText}`);
  }
  lines.push(`  ${'-h, --help'.padEnd(34)}show this help`);
  return `${lines.join('\n')}\n`;
}

export type ParseResult = { readonly kind: 'help' } | { readonly kind: 'config'; readonly config: RelayConfig };

function parseValue(o: OptionSpec, raw: string, source: string): string | number | string[] {
  if (o.kind === 'list') {
    const items = raw
      .split(',')
      .map((x) => x.trim().toLowerCase())
      .filter((x) => x !== '');
    for (const item of items) {
      if (!/^[a-z0-9.-]+(?::\d{1,5})?$|^\[[0-9a-f:.]+\](?::\d{1,5})?$/.test(item)) throw new ConfigError(`${source}: "${item}" is not a host or host:port`);
    }
    return items;
  }
  if (o.kind === 'int') {
    if (!/^\d+$/.test(raw)) throw new ConfigError(`${source}: "${raw}" is not a whole number`);
    const n = Number(raw);
    if ((o.min !== undefined && n < o.min) || (o.max !== undefined && n > o.max)) {
      throw new ConfigError(`${source}: ${n} is outside ${o.min}..${o.max}`);
    }
    return n;
  }
  if (o.kind === 'level' && !(LEVELS as readonly string[]).includes(raw)) {
    throw new ConfigError(`${source}: "${raw}" is not one of ${LEVELS.join(', ')}`);
  }
  if (raw === '') throw new ConfigError(`${source}: must not be empty`);
  return raw;
}

export function parseRelayConfig(argv: readonly string[], env: Readonly<Record<string, string | undefined>>): ParseResult {
  const values: Record<string, string | number | string[]> = {};
  for (const o of RELAY_OPTIONS) {
    const raw = env[o.env];
    if (raw !== undefined && raw !== '') values[o.key] = parseValue(o, raw, o.env);
  }
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i] as string;
    if (arg === '-h' || arg === '--help') return { kind: 'help' };
    const eq = arg.indexOf('=');
    const name = eq >= 0 ? arg.slice(0, eq) : arg;
    const o = RELAY_OPTIONS.find((x) => x.flag === name);
    if (o === undefined) throw new ConfigError(`unknown option "${arg}" (see --help)`);
    let raw: string | undefined;
    if (eq >= 0) raw = arg.slice(eq + 1);
    else raw = argv[++i];
    if (raw === undefined) throw new ConfigError(`${name} needs a value`);
    values[o.key] = parseValue(o, raw, name);
  }
  const port = (values.port as number | undefined) ?? 8080;
  const domain = String(values.domain ?? 'localhost')
    .toLowerCase()
    .replace(/\.$/, '');
  if (!/^(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)*[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$/.test(domain)) {
    throw new ConfigError(`--domain: "${domain}" is not a host name`);
  }
  const publicUrl = values.publicUrl === undefined ? undefined : normalizePublicUrl(String(values.publicUrl), domain);
  const config: RelayConfig = {
    port,
    host: String(values.host ?? '0.0.0.0'),
    domain,
    publicUrl,
    requestTimeoutMs: (values.requestTimeoutMs as number | undefined) ?? 30_000,
    maxBodyBytes: (values.maxBodyBytes as number | undefined) ?? 512_000,
    pingIntervalMs: (values.pingIntervalMs as number | undefined) ?? 10_000,
    registrationTimeoutMs: (values.registrationTimeoutMs as number | undefined) ?? 10_000,
    maxStreamsPerTunnel: (values.maxStreamsPerTunnel as number | undefined) ?? 1000,
    streamWindowBytes: (values.streamWindowBytes as number | undefined) ?? DEFAULT_STREAM_WINDOW_BYTES,
    nodeId: String(values.nodeId ?? randomBytes(6).toString('hex')),
    maxNames: (values.maxNames as number | undefined) ?? 100_000,
    dataDir: values.dataDir === undefined ? undefined : String(values.dataDir),
    extraAudiences: Object.freeze((values.extraAudiences as string[] | undefined) ?? []),
    logLevel: (values.logLevel as RelayConfig['logLevel'] | undefined) ?? 'info',
  };
  return { kind: 'config', config: Object.freeze(config) };
}

export function normalizePublicUrl(raw: string, domain: string): string {
  let u: URL;
  try {
    u = new URL(raw);
  } catch {
    throw new ConfigError(`--public-url: "${raw}" is not a URL`);
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new ConfigError(`--public-url: use http or https, not ${u.protocol}`);
  if (u.hostname.toLowerCase() !== domain) {
    throw new ConfigError(`--public-url: host "${u.hostname}" must be the --domain "${domain}" (tunnels are <label>.${domain})`);
  }
  if (u.pathname !== '/' || u.search !== '' || u.hash !== '') throw new ConfigError('--public-url: must have no path, query or fragment');
  return `${u.protocol}//${u.host}`;
}

/** Builds a config for tests and embedders: defaults, then overrides. */
export function relayConfig(overrides: Partial<RelayConfig> = {}): RelayConfig {
  const base = parseRelayConfig([], {});
  if (base.kind !== 'config') throw new Error('unreachable');
  return Object.freeze({ ...base.config, ...overrides });
}
