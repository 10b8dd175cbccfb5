/**
 * `burrow-relay admin …`: a client of the admin API (/v1) over node's fetch. Pure apart from
 * the fetch it is given: argv, env and output streams come in, an exit code goes out
 * (0 ok, 1 the API or the network failed, 2 usage). main.ts calls runAdminCli.
 */

export const DEFAULT_ADMIN_URL = 'http://127.0.0.1:9091';
/** Every admin call gets an answer within this, or fails. */
export const ADMIN_CLI_TIMEOUT_MS = 10_000;

export interface AdminCliIo {
  readonly env: Readonly<Record<string, string | undefined>>;
  readonly stdout: { write(text: string): unknown };
  readonly stderr: { write(text: string): unknown };
  /** Defaults to the global fetch. */
  readonly fetch?: typeof fetch;
}

export const ADMIN_USAGE = `Usage: burrow-relay admin <command> [options]

Commands:
  tenants list
  tenants create --name <name> [--id <id>] [quota options] [--reserve a,b]
  tenants show <tenant>
  tenants update <tenant> [--name <name>] [quota options] [--reserve a,b]
  tenants delete <tenant>                 (revokes its tokens)
  tokens create <tenant> [--description <text>]
  tokens list <tenant>
  tokens revoke <token-id>
  tunnels list [--tenant <tenant>]
  tunnels disconnect <label>
  history <tenant> [--limit <n>]

Quota options (update: "none" removes a quota):
  --max-tunnels <n>  --max-streams <n>  --requests-per-minute <n>  --max-body-bytes <n>

Options:
  --admin-url <url>      admin listener (env BURROW_ADMIN_URL, default ${DEFAULT_ADMIN_URL})
  --admin-token <token>  admin bearer token (env BURROW_ADMIN_TOKEN)
  --table                print lists as a table instead of JSON
  -h, --help             show this help

Exit codes: 0 ok, 1 the admin API answered with an error (its code and message are printed)
or could not be reached, 2 usage.
`;

class UsageError extends Error {}

const QUOTA_FLAGS = {
  '--max-tunnels': 'maxTunnels',
  '--max-streams': 'maxStreams',
  '--requests-per-minute': 'requestsPerMinute',
  '--max-body-bytes': 'maxBodyBytes',
} as const;

const VALUE_FLAGS = new Set([
  '--admin-url',
  '--admin-token',
  '--name',
  '--id',
  '--reserve',
  '--description',
  '--tenant',
  '--limit',
  ...Object.keys(QUOTA_FLAGS),
]);

interface Parsed {
  readonly positional: string[];
  readonly flags: Map<string, string>;
  readonly table: boolean;
  readonly help: boolean;
}

function parseArgs(argv: readonly string[]): Parsed {
  const positional: string[] = [];
  const flags = new Map<string, string>();
  let table = false;
  let help = false;
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i] as string;
    if (arg === '-h' || arg === '--help') help = true;
    else if (arg === '--table') table = true;
    else if (arg.startsWith('--')) {
      const eq = arg.indexOf('=');
      const name = eq >= 0 ? arg.slice(0, eq) : arg;
      if (!VALUE_FLAGS.has(name)) throw new UsageError(`unknown option ${name}`);
      const value = eq >= 0 ? arg.slice(eq + 1) : argv[++i];
      if (value === undefined) throw new UsageError(`${name} needs a value`);
      flags.set(name, value);
    } else positional.push(arg);
  }
  return { positional, flags, table, help };
}

interface Request {
  readonly method: 'GET' | 'POST' | 'PATCH' | 'DELETE';
  readonly path: string;
  readonly body?: object;
  /** For --table: the array field of the answer and its columns. */
  readonly list?: { readonly field: string; readonly columns: readonly string[] };
}

function allowOnly(p: Parsed, allowed: readonly string[]): void {
  for (const name of p.flags.keys()) {
    if (name !== '--admin-url' && name !== '--admin-token' && !allowed.includes(name)) throw new UsageError(`${name} does not apply to this command`);
  }
}

function arg(p: Parsed, index: number, what: string): string {
  const v = p.positional[index];
  if (v === undefined || v === '') throw new UsageError(`missing <${what}>`);
  return encodeURIComponent(v);
}

function noMoreArgs(p: Parsed, count: number): void {
  if (p.positional.length > count) throw new UsageError(`unexpected argument "${p.positional[count]}"`);
}

function quotaValue(flag: string, raw: string, allowNone: boolean): number | null {
  if (allowNone && raw === 'none') return null;
  if (!/^\d+$/.test(raw) || Number(raw) < 1) throw new UsageError(`${flag} needs a positive whole number${allowNone ? ' or none' : ''}`);
  return Number(raw);
}

function reserveList(raw: string): string[] {
  return raw
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s !== '');
}

const TENANT_COLUMNS = ['id', 'name', 'createdAt', 'quotas', 'reservedNames'];
const TOKEN_COLUMNS = ['id', 'tenantId', 'createdAt', 'description'];
const TUNNEL_COLUMNS = ['label', 'names', 'tenant', 'node', 'connectedAt', 'peer', 'requests', 'bytesIn', 'bytesOut'];
const EVENT_COLUMNS = ['at', 'kind', 'label', 'node', 'peer', 'reason'];

/** Which request a command line makes; update needs the current tenant first (see runAdminCli). */
function plan(
  p: Parsed,
): Request | { readonly update: string; readonly name?: string; readonly quotas: Map<string, number | null>; readonly reserve?: string[] } {
  const [group, action] = p.positional;
  const key = action === undefined ? `${group}` : `${group} ${action}`;
  switch (group === 'history' ? 'history' : key) {
    case 'tenants list':
      allowOnly(p, []);
      noMoreArgs(p, 2);
      return { method: 'GET', path: '/v1/tenants', list: { field: 'tenants', columns: TENANT_COLUMNS } };
    case 'tenants create': {
      allowOnly(p, ['--name', '--id', '--reserve', ...Object.keys(QUOTA_FLAGS)]);
      noMoreArgs(p, 2);
      const name = p.flags.get('--name');
      if (name === undefined) throw new UsageError('tenants create needs --name');
      const quotas: Record<string, number> = {};
      for (const [flag, field] of Object.entries(QUOTA_FLAGS)) {
        const raw = p.flags.get(flag);
        if (raw !== undefined) quotas[field] = quotaValue(flag, raw, false) as number;
      }
      const id = p.flags.get('--id');
      const reserve = p.flags.get('--reserve');
      return {
        method: 'POST',
        path: '/v1/tenants',
        body: {
          name,
          ...(id !== undefined ? { id } : {}),
          ...(Object.keys(quotas).length > 0 ? { quotas } : {}),
          ...(reserve !== undefined ? { reservedNames: reserveList(reserve) } : {}),
        },
      };
    }
    case 'tenants show':
      allowOnly(p, []);
      noMoreArgs(p, 3);
      return { method: 'GET', path: `/v1/tenants/${arg(p, 2, 'tenant')}` };
    case 'tenants update': {
      allowOnly(p, ['--name', '--reserve', ...Object.keys(QUOTA_FLAGS)]);
      noMoreArgs(p, 3);
      const id = arg(p, 2, 'tenant');
      const quotas = new Map<string, number | null>();
      for (const [flag, field] of Object.entries(QUOTA_FLAGS)) {
        const raw = p.flags.get(flag);
        if (raw !== undefined) quotas.set(field, quotaValue(flag, raw, true));
      }
      const name = p.flags.get('--name');
      const reserve = p.flags.get('--reserve');
      if (name === undefined && reserve === undefined && quotas.size === 0) throw new UsageError('tenants update needs --name, --reserve or a quota option');
      return { update: id, quotas, ...(name !== undefined ? { name } : {}), ...(reserve !== undefined ? { reserve: reserveList(reserve) } : {}) };
    }
    case 'tenants delete':
      allowOnly(p, []);
      noMoreArgs(p, 3);
      return { method: 'DELETE', path: `/v1/tenants/${arg(p, 2, 'tenant')}` };
    case 'tokens create': {
      allowOnly(p, ['--description']);
      noMoreArgs(p, 3);
      const description = p.flags.get('--description');
      return { method: 'POST', path: `/v1/tenants/${arg(p, 2, 'tenant')}/tokens`, body: description !== undefined ? { description } : {} };
    }
    case 'tokens list':
      allowOnly(p, []);
      noMoreArgs(p, 3);
      return { method: 'GET', path: `/v1/tenants/${arg(p, 2, 'tenant')}/tokens`, list: { field: 'tokens', columns: TOKEN_COLUMNS } };
    case 'tokens revoke':
      allowOnly(p, []);
      noMoreArgs(p, 3);
      return { method: 'DELETE', path: `/v1/tokens/${arg(p, 2, 'token-id')}` };
    case 'tunnels list': {
      allowOnly(p, ['--tenant']);
      noMoreArgs(p, 2);
      const tenant = p.flags.get('--tenant');
      return {
        method: 'GET',
        path: `/v1/tunnels${tenant !== undefined ? `?tenant=${encodeURIComponent(tenant)}` : ''}`,
        list: { field: 'tunnels', columns: TUNNEL_COLUMNS },
      };
    }
    case 'tunnels disconnect':
      allowOnly(p, []);
      noMoreArgs(p, 3);
      return { method: 'DELETE', path: `/v1/tunnels/${arg(p, 2, 'label')}` };
    case 'history': {
      allowOnly(p, ['--limit']);
      noMoreArgs(p, 2);
      const tenant = arg(p, 1, 'tenant');
      const limit = p.flags.get('--limit');
      if (limit !== undefined && !/^[1-9]\d*$/.test(limit)) throw new UsageError('--limit needs a positive whole number');
      return {
        method: 'GET',
        path: `/v1/tenants/${tenant}/history${limit !== undefined ? `?limit=${limit}` : ''}`,
        list: { field: 'events', columns: EVENT_COLUMNS },
      };
    }
    default:
      throw new UsageError(group === undefined ? 'missing command' : `unknown command "${key}"`);
  }
}

function cellText(v: unknown, column: string): string {
  if (v === undefined || v === null) return '';
  if ((column === 'at' || column === 'createdAt' || column === 'connectedAt') && typeof v === 'number') return new Date(v).toISOString();
  if (Array.isArray(v)) return v.join(',');
  if (typeof v === 'object') {
    return Object.entries(v)
      .map(([k, x]) => `${k}=${x}`)
      .join(',');
  }
  return String(v);
}

export function formatTable(rows: readonly Record<string, unknown>[], columns: readonly string[]): string {
  const cells = rows.map((r) => columns.map((c) => cellText(r[c], c)));
  const widths = columns.map((c, i) => Math.max(c.length, ...cells.map((row) => (row[i] as string).length)));
  const line = (values: readonly string[]): string =>
    values
      .map((v, i) => v.padEnd(widths[i] as number))
      .join('  ')
      .trimEnd();
  return `${[line(columns.map((c) => c.toUpperCase())), ...cells.map(line)].join('\n')}\n`;
}

class ApiError extends Error {
  constructor(
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

/** Runs `burrow-relay admin <argv…>`; resolves to the exit code. */
export async function runAdminCli(argv: readonly string[], io: AdminCliIo): Promise<number> {
  let parsed: Parsed;
  let request: ReturnType<typeof plan>;
  try {
    parsed = parseArgs(argv);
    if (parsed.help || argv.length === 0) {
      (argv.length === 0 ? io.stderr : io.stdout).write(ADMIN_USAGE);
      return argv.length === 0 ? 2 : 0;
    }
    request = plan(parsed);
  } catch (err) {
    if (!(err instanceof UsageError)) throw err;
    io.stderr.write(`burrow-relay admin: ${err.message}\n\n${ADMIN_USAGE}`);
    return 2;
  }
  const baseUrl = (parsed.flags.get('--admin-url') ?? io.env.BURROW_ADMIN_URL ?? DEFAULT_ADMIN_URL).replace(/\/+$/, '');
  const token = parsed.flags.get('--admin-token') ?? io.env.BURROW_ADMIN_TOKEN;
  if (token === undefined || token === '') {
    io.stderr.write("burrow-relay admin: set --admin-token or BURROW_ADMIN_TOKEN (the relay's --admin-token)\n");
    return 2;
  }
  if (!/^https?:\/\/[^/]+$/.test(baseUrl)) {
    io.stderr.write(`burrow-relay admin: --admin-url "${baseUrl}" is not http(s)://host:port\n`);
    return 2;
  }
  const doFetch = io.fetch ?? fetch;

  const send = async (method: string, path: string, body?: object): Promise<unknown> => {
    let res: Response;
    try {
      res = await doFetch(`${baseUrl}${path}`, {
        method,
        headers: { authorization: `Bearer ${token}`, ...(body !== undefined ? { 'content-type': 'application/json' } : {}) },
        ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
        signal: AbortSignal.timeout(ADMIN_CLI_TIMEOUT_MS),
      });
    } catch (err) {
      const cause = (err as { cause?: { code?: string } }).cause?.code;
      throw new ApiError('unreachable', `cannot reach the admin API at ${baseUrl}: ${cause ?? (err as Error).message}`);
    }
    const text = await res.text();
    let json: unknown;
    try {
      json = text === '' ? {} : JSON.parse(text);
    } catch {
      throw new ApiError('bad_response', `HTTP ${res.status} from ${baseUrl}${path} is not JSON (is --admin-url the relay's admin listener?)`);
    }
    if (!res.ok) {
      const e = (json as { error?: { code?: unknown; message?: unknown } }).error;
      if (typeof e === 'object' && e !== null && typeof e.code === 'string') throw new ApiError(e.code, String(e.message ?? ''));
      throw new ApiError(`http_${res.status}`, `HTTP ${res.status} from ${baseUrl}${path}`);
    }
    return json;
  };

  try {
    let result: unknown;
    if ('update' in request) {
      const patch: Record<string, unknown> = {};
      if (request.name !== undefined) patch.name = request.name;
      if (request.reserve !== undefined) patch.reservedNames = request.reserve;
      if (request.quotas.size > 0) {
        // The API replaces quotas wholesale: merge the changes into the current ones.
        const current = (await send('GET', `/v1/tenants/${request.update}`)) as { quotas?: Record<string, number> };
        const quotas: Record<string, number> = { ...(current.quotas ?? {}) };
        for (const [field, value] of request.quotas) {
          if (value === null) delete quotas[field];
          else quotas[field] = value;
        }
        patch.quotas = quotas;
      }
      result = await send('PATCH', `/v1/tenants/${request.update}`, patch);
    } else {
      result = await send(request.method, request.path, request.body);
      const rows = request.list !== undefined ? (result as Record<string, unknown>)[request.list.field] : undefined;
      if (parsed.table && request.list !== undefined && Array.isArray(rows)) {
        io.stdout.write(formatTable(rows as Record<string, unknown>[], request.list.columns));
        return 0;
      }
    }
    io.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
    return 0;
  } catch (err) {
    if (!(err instanceof ApiError)) throw err;
    io.stderr.write(`burrow-relay admin: ${err.code}: ${err.message}\n`);
    return 1;
  }
}
