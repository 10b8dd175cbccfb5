/**
 * Relay configuration: flags > BURROW_* env > defaults, validated once, then frozen.
 * Pure: parseRelayConfig never reads process state itself; main.ts passes argv and env in.
 */
import { randomBytes } from 'node:crypto';
import { isIP } from 'node:net';
import { DEFAULT_STREAM_WINDOW_BYTES } from '@burrow/protocol';

/**
 * Per-stream window of a relay without Redis. Larger than the protocol's default: a 1 MiB
 * download moves without waiting for credit (measured on loopback: 1 MiB downloads at 8
 * connections +17 to +20% over 256 KiB). On Redis the default stays 256 KiB, because windows
 * bound how far a node's subscriber can lag behind (docs/OPERATIONS.md, Redis pub/sub limits).
 */
export const ONE_NODE_STREAM_WINDOW_BYTES = 1024 * 1024;

/** The window a relay gets when none is set: on Redis (a URL or cluster seeds) the protocol's, alone the larger one. */
function defaultStreamWindowBytes(redisUrl: unknown, redisCluster: readonly string[] | undefined): number {
  return redisUrl !== undefined || (redisCluster?.length ?? 0) > 0 ? DEFAULT_STREAM_WINDOW_BYTES : ONE_NODE_STREAM_WINDOW_BYTES;
}

export interface RelayConfig {
  readonly port: number;
  readonly host: string;
  /** Tunnels live at <label>.<domain>. */
  readonly domain: string;
  /** The apex URL as the public sees it (scheme, host, port, then basePath); tunnel URLs are derived from it. Unset: http://<domain>:<bound port><basePath>. */
  readonly publicUrl: string | undefined;
  /** Path prefix the relay is served under on the apex host ('/unlynx'); '' for none. From --base-path, else the path of --public-url. */
  readonly basePath: string;
  /** Serve tunnels at <basePath>/t/<label>/ on the apex host too (all tunnels then share the apex origin). */
  readonly pathRouting: boolean;
  /** The URL agents are given: host (<label>.<domain>) or path (<publicUrl>/t/<label>/, needs pathRouting). */
  readonly tunnelUrls: 'host' | 'path';
  readonly requestTimeoutMs: number;
  /** A public request head (request line and headers) must arrive within this long, else 408 (slowloris). */
  readonly headersTimeoutMs: number;
  /** A public request body that sends no byte for this long (while the relay is reading it) is cut with 408; 0: never. */
  readonly bodyIdleTimeoutMs: number;
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
  /** Each Redis connection is PINGed this often, and redialled when it answers nothing for as long (a blackholed route). */
  readonly redisHealthMs: number;
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
  /** Public TCP ports for `burrow tcp` (inclusive); every node listens on all of them at `host`. Unset: no TCP tunnels. */
  readonly tcpPorts: { readonly first: number; readonly last: number } | undefined;
  /** Host printed in tcp:// URLs; unset: the public URL's host. */
  readonly tcpHost: string | undefined;
  /** Most TCP connections one tunnel carries at once (fleet-wide: counted where its agent is). */
  readonly tcpMaxConnections: number;
  /** A TCP connection with no byte either way for this long is closed; 0: never. */
  readonly tcpIdleTimeoutMs: number;
}

export class ConfigError extends Error {
  readonly code = 'BURROW_ERR_CONFIG';
}

interface OptionSpec {
  readonly key: keyof RelayConfig;
  readonly flag: string;
  readonly env: string;
  readonly kind: 'int' | 'string' | 'level' | 'list' | 'cidrs' | 'bool' | 'auth' | 'choice' | 'ports';
  /** The accepted values of a 'choice' option. */
  readonly choices?: readonly string[];
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
    help: 'apex URL as the public reaches it (set when TLS sits in front); may end in the base path',
    defaultText: 'http://<domain>:<port>',
  },
  {
    key: 'basePath',
    flag: '--base-path',
    env: 'BURROW_BASE_PATH',
    kind: 'string',
    help: 'serve the relay under this path on the apex host (/unlynx); default: the path of --public-url',
    defaultText: 'none',
  },
  {
    key: 'pathRouting',
    flag: '--path-routing',
    env: 'BURROW_PATH_ROUTING',
    kind: 'bool',
    help: 'also serve HTTP tunnels at <base>/t/<label>/ on the apex host (on/off; tunnels then share one origin)',
    defaultText: 'off',
  },
  {
    key: 'tunnelUrls',
    flag: '--tunnel-urls',
    env: 'BURROW_TUNNEL_URLS',
    kind: 'choice',
    choices: ['host', 'path'],
    help: 'URL agents are given: host (<label>.<domain>) or path (<public-url>/t/<label>/, needs --path-routing on)',
    defaultText: 'host',
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
    key: 'headersTimeoutMs',
    flag: '--headers-timeout-ms',
    env: 'BURROW_HEADERS_TIMEOUT_MS',
    kind: 'int',
    min: 50,
    max: 3_600_000,
    help: 'a public request head must arrive within this long, then 408',
    defaultText: '20000',
  },
  {
    key: 'bodyIdleTimeoutMs',
    flag: '--body-idle-timeout-ms',
    env: 'BURROW_BODY_IDLE_TIMEOUT_MS',
    kind: 'int',
    min: 0,
    max: 3_600_000,
    help: 'cut a public request body that sends nothing for this long, with 408 (0: never)',
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
    help: 'per-stream flow-control window (one node: larger, for body throughput; on Redis: smaller, as it bounds subscriber lag)',
    defaultText: `${ONE_NODE_STREAM_WINDOW_BYTES}, with --redis ${DEFAULT_STREAM_WINDOW_BYTES}`,
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
    key: 'redisHealthMs',
    flag: '--redis-health-ms',
    env: 'BURROW_REDIS_HEALTH_MS',
    kind: 'int',
    min: 100,
    max: 60_000,
    help: 'PING each Redis connection this often; redial one that answers nothing for as long',
    defaultText: '1000',
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
  {
    key: 'tcpPorts',
    flag: '--tcp-ports',
    env: 'BURROW_TCP_PORTS',
    kind: 'ports',
    help: 'public TCP ports for `burrow tcp`, first-last (every node listens on all of them)',
    defaultText: 'none (no TCP tunnels)',
  },
  { key: 'tcpHost', flag: '--tcp-host', env: 'BURROW_TCP_HOST', kind: 'string', help: 'host shown in tcp:// URLs', defaultText: "the public URL's host" },
  {
    key: 'tcpMaxConnections',
    flag: '--tcp-max-connections',
    env: 'BURROW_TCP_MAX_CONNECTIONS',
    kind: 'int',
    min: 1,
    max: 1_000_000,
    help: 'concurrent TCP connections per tunnel (more are closed at once)',
    defaultText: '100',
  },
  {
    key: 'tcpIdleTimeoutMs',
    flag: '--tcp-idle-timeout-ms',
    env: 'BURROW_TCP_IDLE_TIMEOUT_MS',
    kind: 'int',
    min: 0,
    max: 86_400_000,
    help: 'close a TCP connection after this long without a byte either way (0: never)',
    defaultText: '300000',
  },
];

/** What --help shows as an option's value. */
const ARG_NAMES: Partial<Record<OptionSpec['kind'], string>> = { int: 'n', list: 'a,b', cidrs: 'a,b', bool: 'on|off', auth: 'open|token' };

export function relayHelp(): string {
  const lines = [
    'Usage: burrow-relay [options]',
    '',
    'Runs a burrow relay: public HTTP/WebSocket ingress at <label>.<domain> and the agent endpoint on the apex host.',
    '',
    'Options (flag, environment variable, default):',
  ];
  for (const o of RELAY_OPTIONS) {
    const arg = o.choices?.join('|') ?? ARG_NAMES[o.kind] ?? 'value';
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
  if (o.kind === 'choice') {
    const choices = o.choices ?? [];
    if (!choices.includes(raw)) throw new ConfigError(`${source}: "${raw}" is not ${choices.join(' or ')}`);
    return raw;
  }
  if (o.kind === 'ports') {
    const m = /^\s*(\d{1,5})\s*(?:-\s*(\d{1,5}))?\s*$/.exec(raw);
    const first = Number(m?.[1]);
    const last = m?.[2] === undefined ? first : Number(m[2]);
    if (m === null || first < 1 || last > 65535 || first > last) throw new ConfigError(`${source}: "${raw}" is not a port range like 20000-20999`);
    if (last - first >= 10_000) throw new ConfigError(`${source}: ${last - first + 1} ports; a node listens on every one, use at most 10000`);
    return `${first}-${last}`;
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
  let basePath = values.basePath === undefined ? '' : validateBasePath(String(values.basePath), '--base-path');
  const publicUrl = values.publicUrl === undefined ? undefined : normalizePublicUrl(String(values.publicUrl), domain, basePath);
  if (publicUrl !== undefined && basePath === '') basePath = publicUrlPath(publicUrl);
  const config: RelayConfig = {
    port,
    host: String(values.host ?? '0.0.0.0'),
    domain,
    publicUrl,
    basePath,
    pathRouting: (values.pathRouting as boolean | undefined) ?? false,
    tunnelUrls: (values.tunnelUrls as RelayConfig['tunnelUrls'] | undefined) ?? 'host',
    requestTimeoutMs: (values.requestTimeoutMs as number | undefined) ?? 30_000,
    headersTimeoutMs: (values.headersTimeoutMs as number | undefined) ?? 20_000,
    bodyIdleTimeoutMs: (values.bodyIdleTimeoutMs as number | undefined) ?? 30_000,
    maxBodyBytes: (values.maxBodyBytes as number | undefined) ?? 512_000,
    pingIntervalMs: (values.pingIntervalMs as number | undefined) ?? 10_000,
    registrationTimeoutMs: (values.registrationTimeoutMs as number | undefined) ?? 10_000,
    maxStreamsPerTunnel: (values.maxStreamsPerTunnel as number | undefined) ?? 1000,
    streamWindowBytes:
      (values.streamWindowBytes as number | undefined) ?? defaultStreamWindowBytes(values.redisUrl, values.redisCluster as string[] | undefined),
    nodeId: String(values.nodeId ?? randomBytes(6).toString('hex')),
    maxNames: (values.maxNames as number | undefined) ?? 100_000,
    dataDir: values.dataDir === undefined ? undefined : String(values.dataDir),
    extraAudiences: Object.freeze((values.extraAudiences as string[] | undefined) ?? []),
    logLevel: (values.logLevel as RelayConfig['logLevel'] | undefined) ?? 'info',
    redisUrl: values.redisUrl === undefined ? undefined : validateRedisUrl(String(values.redisUrl)),
    redisCluster: Object.freeze((values.redisCluster as string[] | undefined) ?? []),
    leaseTtlMs: (values.leaseTtlMs as number | undefined) ?? 10_000,
    reconnectGraceMs: (values.reconnectGraceMs as number | undefined) ?? 5000,
    redisHealthMs: (values.redisHealthMs as number | undefined) ?? 1000,
    drainTimeoutMs: (values.drainTimeoutMs as number | undefined) ?? 20_000,
    adminListen: validateListen(String(values.adminListen ?? '127.0.0.1:9091')),
    trustedProxies: Object.freeze((values.trustedProxies as string[] | undefined) ?? []),
    accessLog: (values.accessLog as boolean | undefined) ?? true,
    auth: (values.auth as RelayConfig['auth'] | undefined) ?? 'open',
    adminToken: values.adminToken === undefined ? undefined : String(values.adminToken),
    tcpPorts: values.tcpPorts === undefined ? undefined : portRange(String(values.tcpPorts)),
    tcpHost: values.tcpHost === undefined ? undefined : String(values.tcpHost),
    tcpMaxConnections: (values.tcpMaxConnections as number | undefined) ?? 100,
    tcpIdleTimeoutMs: (values.tcpIdleTimeoutMs as number | undefined) ?? 300_000,
  };
  if (config.adminToken !== undefined && config.adminToken.length < 16) throw new ConfigError('--admin-token: use at least 16 characters');
  if (config.auth === 'token' && config.adminToken === undefined) {
    throw new ConfigError('--auth token needs --admin-token: tenants and tokens are made through the admin API');
  }
  if (config.tunnelUrls === 'path' && !config.pathRouting) {
    throw new ConfigError('--tunnel-urls path needs --path-routing on: path URLs are served by path routing');
  }
  if (config.redisUrl !== undefined && config.redisCluster.length > 0) throw new ConfigError('--redis and --redis-cluster: set one, not both');
  return { kind: 'config', config: Object.freeze(config) };
}

/** "first-last" as parseValue wrote it. */
function portRange(text: string): { readonly first: number; readonly last: number } {
  const [first, last] = text.split('-').map(Number) as [number, number];
  return Object.freeze({ first, last });
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

/**
 * A base path: '/' then segments of unreserved URL characters (letters, digits, '-', '.', '_', '~'),
 * no '.' or '..' segment, no empty segment, no trailing slash. A lone '/' means none ('').
 */
export function validateBasePath(raw: string, source: string): string {
  if (raw === '/') return '';
  const segments = raw.split('/');
  if (segments[0] !== '' || segments.length < 2 || segments.slice(1).some((s) => !/^[A-Za-z0-9._~-]+$/.test(s) || s === '.' || s === '..')) {
    throw new ConfigError(`${source}: "${raw}" is not a path like /unlynx (starts with '/', no trailing slash, letters, digits, '-', '.', '_', '~')`);
  }
  return raw;
}

/** The path of a normalized public URL: its base path, '' for none. */
function publicUrlPath(publicUrl: string): string {
  const path = new URL(publicUrl).pathname;
  return path === '/' ? '' : path;
}

/**
 * scheme://host[:port] then the base path. The URL's own path (trailing slash dropped) may be
 * the base path or nothing (then the base path is appended); without --base-path it becomes it.
 */
export function normalizePublicUrl(raw: string, domain: string, basePath = ''): string {
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
  if (u.search !== '' || u.hash !== '') throw new ConfigError('--public-url: must have no query or fragment');
  const path = u.pathname === '/' ? '' : validateBasePath(u.pathname.replace(/\/+$/, ''), '--public-url');
  if (path !== '' && basePath !== '' && path !== basePath) {
    throw new ConfigError(`--public-url: its path "${path}" must be the --base-path "${basePath}" (or leave it out)`);
  }
  return `${u.protocol}//${u.host}${path === '' ? basePath : path}`;
}

/** Builds a config for tests and embedders: defaults, then overrides. */
export function relayConfig(overrides: Partial<RelayConfig> = {}): RelayConfig {
  const base = parseRelayConfig([], {});
  if (base.kind !== 'config') throw new Error('unreachable');
  // Embedded relays (tests, libraries) open no admin listener unless asked: several run in one process.
  // A relay given Redis here gets the window a Redis fleet gets from parseRelayConfig.
  const streamWindowBytes = defaultStreamWindowBytes(overrides.redisUrl, overrides.redisCluster);
  return Object.freeze({ ...base.config, adminListen: 'off', streamWindowBytes, ...overrides });
}
