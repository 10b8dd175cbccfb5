/**
 * Relay configuration: flags > BURROW_* env > defaults, validated once, then frozen.
 * Pure: parseRelayConfig never reads process state itself; main.ts passes argv and env in.
 */
import { randomBytes } from 'node:crypto';
import { isIP } from 'node:net';
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
  /** Standalone Redis (redis:// or rediss:// URL) joining this node to others; unset: in-memory bus, one node. */
  readonly redisUrl: string | undefined;
  /** Redis Cluster seed nodes (host:port); sharded pub/sub. Exclusive with redisUrl. */
  readonly redisCluster: readonly string[];
  /** A label's lease lasts this long without renewal (a killed node's tunnels move after at most this). */
  readonly leaseTtlMs: number;
  /** After an agent drops, requests for its label wait this long for it to come back (then 502). */
  readonly reconnectGraceMs: number;
  /** On SIGTERM, in-flight requests get this long to finish before the relay closes. */
  readonly drainTimeoutMs: number;
  /** host:port of the admin listener (/metrics, /readyz); 'off' disables it. */
  readonly adminListen: string;
  /** Addresses or CIDRs of proxies whose X-Forwarded-For is believed. */
  readonly trustedProxies: readonly string[];
  /** One JSON line per public request. */
  readonly accessLog: boolean;
  /** open: any key may register; token: agents need a tenant token (admin API creates them). */
  readonly auth: 'open' | 'token';
  /** Bearer token the admin API requires; unset: the admin API is off (metrics and probes stay). */
  readonly adminToken: string | undefined;
}

export class ConfigError extends Error {
  readonly code = 'BURROW_ERR_CONFIG';
}

interface OptionSpec {
  readonly key: keyof RelayConfig;
  readonly flag: string;
  readonly env: string;
  readonly kind: 'int' | 'string' | 'level' | 'list' | 'cidrs' | 'bool' | 'auth';
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
  {
    key: 'redisUrl',
    flag: '--redis',
    env: 'BURROW_REDIS_URL',
    kind: 'string',
    help: 'Redis URL (redis:// or rediss://) joining relay nodes',
    defaultText: 'none (in-memory bus, one node)',
  },
  {
    key: 'redisCluster',
    flag: '--redis-cluster',
    env: 'BURROW_REDIS_CLUSTER',
    kind: 'list',
    help: 'Redis Cluster seed nodes host:port,... (sharded pub/sub)',
    defaultText: 'none',
  },
  {
    key: 'leaseTtlMs',
    flag: '--lease-ttl-ms',
    env: 'BURROW_LEASE_TTL_MS',
    kind: 'int',
    min: 300,
    max: 600_000,
    help: "a dead node's tunnels are released after this long",
    defaultText: '10000',
  },
  {
    key: 'reconnectGraceMs',
    flag: '--reconnect-grace-ms',
    env: 'BURROW_RECONNECT_GRACE_MS',
    kind: 'int',
    min: 0,
    max: 600_000,
    help: 'requests wait this long for a dropped agent to come back',
    defaultText: '5000',
  },
  {
    key: 'drainTimeoutMs',
    flag: '--drain-timeout-ms',
    env: 'BURROW_DRAIN_TIMEOUT_MS',
    kind: 'int',
    min: 0,
    max: 3_600_000,
    help: 'on SIGTERM, let in-flight requests finish for this long',
    defaultText: '20000',
  },
  {
    key: 'adminListen',
    flag: '--admin-listen',
    env: 'BURROW_ADMIN_LISTEN',
    kind: 'string',
    help: 'host:port for /metrics and /readyz, or off',
    defaultText: '127.0.0.1:9091',
  },
  {
    key: 'trustedProxies',
    flag: '--trusted-proxies',
    env: 'BURROW_TRUSTED_PROXIES',
    kind: 'cidrs',
    help: 'believe X-Forwarded-For only from these addresses/CIDRs',
    defaultText: 'none',
  },
  { key: 'auth', flag: '--auth', env: 'BURROW_AUTH', kind: 'auth', help: 'open (any key registers) or token (tenant tokens)', defaultText: 'open' },
  {
    key: 'adminToken',
    flag: '--admin-token',
    env: 'BURROW_ADMIN_TOKEN',
    kind: 'string',
    help: 'bearer token for the admin API (at least 16 characters)',
    defaultText: 'none (admin API off)',
  },
  { key: 'accessLog', flag: '--access-log', env: 'BURROW_ACCESS_LOG', kind: 'bool', help: 'one JSON log line per public request (on/off)', defaultText: 'on' },
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
    const arg =
      o.kind === 'int' ? 'n' : o.kind === 'list' || o.kind === 'cidrs' ? 'a,b' : o.kind === 'bool' ? 'on|off' : o.kind === 'auth' ? 'open|token' : 'value';
    lines.push(`  ${`${o.flag} <${arg}>`.padEnd(34)}${o.help}`);
    lines.push(`  ${''.padEnd(34)}env ${o.env}, default ${o.defaultText}`);
  }
  lines.push(`  ${'-h, --help'.padEnd(34)}show this help`);
  return `${lines.join('\n')}\n`;
}

export type ParseResult = { readonly kind: 'help' } | { readonly kind: 'config'; readonly config: RelayConfig };

function parseValue(o: OptionSpec, raw: string, source: string): string | number | boolean | string[] {
  if (o.kind === 'auth') {
    if (raw !== 'open' && raw !== 'token') throw new ConfigError(`${source}: "${raw}" is not open or token`);
    return raw;
  }
  if (o.kind === 'bool') {
    const v = raw.trim().toLowerCase();
    if (['on', 'true', '1', 'yes'].includes(v)) return true;
    if (['off', 'false', '0', 'no'].includes(v)) return false;
    throw new ConfigError(`${source}: "${raw}" is not on or off`);
  }
  if (o.kind === 'cidrs') {
    const items = raw
      .split(',')
      .map((x) => x.trim())
      .filter((x) => x !== '');
    for (const item of items) {
      const [addr, bits, extra] = item.split('/');
      const family = isIP(addr ?? '');
      const maxBits = family === 4 ? 32 : 128;
      if (family === 0 || extra !== undefined || (bits !== undefined && (!/^\d{1,3}$/.test(bits) || Number(bits) > maxBits))) {
        throw new ConfigError(`${source}: "${item}" is not an IP address or CIDR`);
      }
    }
    return items;
  }
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
  const values: Record<string, string | number | boolean | string[]> = {};
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
    redisUrl: values.redisUrl === undefined ? undefined : validateRedisUrl(String(values.redisUrl)),
    redisCluster: Object.freeze((values.redisCluster as string[] | undefined) ?? []),
    leaseTtlMs: (values.leaseTtlMs as number | undefined) ?? 10_000,
    reconnectGraceMs: (values.reconnectGraceMs as number | undefined) ?? 5000,
    drainTimeoutMs: (values.drainTimeoutMs as number | undefined) ?? 20_000,
    adminListen: validateListen(String(values.adminListen ?? '127.0.0.1:9091')),
    trustedProxies: Object.freeze((values.trustedProxies as string[] | undefined) ?? []),
    accessLog: (values.accessLog as boolean | undefined) ?? true,
    auth: (values.auth as RelayConfig['auth'] | undefined) ?? 'open',
    adminToken: values.adminToken === undefined ? undefined : String(values.adminToken),
  };
  if (config.adminToken !== undefined && config.adminToken.length < 16) throw new ConfigError('--admin-token: use at least 16 characters');
  if (config.auth === 'token' && config.adminToken === undefined) {
    throw new ConfigError('--auth token needs --admin-token: tenants and tokens are made through the admin API');
  }
  if (config.redisUrl !== undefined && config.redisCluster.length > 0) throw new ConfigError('--redis and --redis-cluster: set one, not both');
  return { kind: 'config', config: Object.freeze(config) };
}

function validateRedisUrl(raw: string): string {
  let u: URL;
  try {
    u = new URL(raw);
  } catch {
    throw new ConfigError(`--redis: "${raw}" is not a URL (redis://host:6379)`);
  }
  if (u.protocol !== 'redis:' && u.protocol !== 'rediss:') throw new ConfigError(`--redis: use redis:// or rediss://, not ${u.protocol}`);
  return raw;
}

/** host:port (IPv6 in brackets), or off. */
function validateListen(raw: string): string {
  if (raw === 'off') return raw;
  const m = /^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+):(\d{1,5})$/.exec(raw);
  if (m === null || Number(m[2]) > 65535) throw new ConfigError(`--admin-listen: "${raw}" is not host:port or off`);
  return raw;
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
  // Embedded relays (tests, libraries) open no admin listener unless asked: several run in one process.
  return Object.freeze({ ...base.config, adminListen: 'off', ...overrides });
}
