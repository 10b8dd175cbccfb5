/**
 * Pure parser for the `burrow` command line: argv and env in, a command or a usage error out.
 */
import {
  type AccessRules,
  type AccessRulesInput,
  accessRulesFrom,
  normalizeShareName,
  normalizeSubdomain,
  validateSessionName,
  validateShareSecret,
  validateTcpTarget,
  validateTenantToken,
} from '@burrow/protocol';
import { type LocalTarget, parseTarget, parseTcpTarget } from './localTarget';

/** `burrow http`, or `burrow tcp` (kind 'tcp': a raw TCP target, a public TCP port). */
export interface HttpCommand extends RelayCommandBase {
  readonly kind: 'http' | 'tcp';
  readonly target: LocalTarget;
  readonly subdomain?: string;
  readonly session?: string;
  readonly hostHeader: string;
  readonly insecureLocalTls: boolean;
  /** Visitor access rules, if any access flag was given. */
  readonly access?: AccessRules;
}

/** `burrow start --config <file>`: every forward of a config file in one process (see configFile.ts). */
export interface StartCommand {
  readonly kind: 'start';
  readonly configFile: string;
  readonly json: boolean;
}

/** Options every relay-connected command has. */
interface RelayCommandBase {
  readonly relay: string;
  readonly keyFile?: string;
  readonly json: boolean;
  readonly deadAfterMs: number;
  /** Tenant token for relays that require one. */
  readonly token?: string;
}

/** `burrow share tcp <host:port> --name NAME`: a private share, reachable only with `burrow connect`. */
export interface ShareCommand extends RelayCommandBase {
  readonly kind: 'share';
  readonly target: LocalTarget;
  readonly name: string;
  /** Further targets a connecting agent may ask for (--allow). */
  readonly allow: readonly LocalTarget[];
  /** --secret or BURROW_SHARE_SECRET; undefined: bin generates one and prints it once. */
  readonly secret?: string;
}

/** `burrow connect NAME --listen host:port`: a local listener whose connections reach a share. */
export interface ConnectCommand extends RelayCommandBase {
  readonly kind: 'connect';
  readonly share: string;
  readonly listen: { readonly host: string; readonly port: number };
  readonly secret?: string;
  /** One of the share's allowed targets (--target). */
  readonly target?: string;
}

export type Command = HttpCommand | StartCommand | ShareCommand | ConnectCommand | { readonly kind: 'help' } | { readonly kind: 'version' };

export class UsageError extends Error {
  readonly code = 'BURROW_ERR_USAGE';
}

export const USAGE = `Usage: burrow http <port | host:port | url> [options]
       burrow start --config <file> [--json]
       burrow tcp <port | host:port> [--relay, --session, --key, --token, --allow-cidr, --json, --dead-after-ms]
       burrow share tcp <port | host:port> --name <name> [--allow <host:port>[,...]] [--secret <s>]
       burrow connect <name> --listen <host:port> [--secret <s>] [--target <host:port>]

Exposes a local HTTP/WebSocket app at a public URL through a burrow relay.
\`tcp\` exposes a local TCP service (a database, SSH) at a public tcp://<host>:<port> instead; the relay
needs --tcp-ports. The same key gets the same port back while it is free.
\`share tcp\` shares a TCP service privately under a name: nothing public, no port on the relay.
\`connect\` listens locally (e.g. 127.0.0.1:7000) and carries each connection to that share; it
needs the share's secret (printed by \`share\`), or a --token of the share's tenant.
\`start\` runs every forward of a YAML or JSON config file in one process (file also from env
BURROW_CONFIG); it restarts a forward that fails and exits 1 when one cannot run.

Options (flag, environment variable, default):
  --relay <url[,url...]>   relay(s) to connect to, tried in turn; env BURROW_RELAY, default http://localhost:8080
  --subdomain <name>       ask for <name>.<domain> too (bound to your key on first use)
  --session <name>         a further stable URL from the same key (one per name)
  --key <file>             key file; default $BURROW_HOME/key.json or ~/.config/burrow/key.json
  --host-header <mode>     preserve (default) | rewrite (use the target's host) | a literal value
  --insecure               accept a self-signed certificate from an https local app
  --json                   one JSON object per line on stdout instead of human output
  --config <file>          start: the config file of forwards; env BURROW_CONFIG
  --dead-after-ms <n>      reconnect after this much silence from the relay; env BURROW_DEAD_AFTER_MS, default 20000
  --token <token>          tenant token, for relays that require one; env BURROW_TOKEN
  --name <name>            share: the share's name (bound to your key on first use)
  --allow <host:port>      share: a further target connectors may ask for (repeatable, or comma-separated)
  --secret <secret>        share/connect: the share secret; env BURROW_SHARE_SECRET; share makes one when unset
  --listen <host:port>     connect: where to listen (a bare port means 127.0.0.1)
  --target <host:port>     connect: one of the share's allowed targets instead of its main one
  -h, --help               show this help
  --version                print the version

Visitor access, enforced by the relay (it gets SHA-256 digests, never the secrets); each repeatable:
  --allow-cidr <cidr[,...]>       only these addresses or CIDRs may visit (others get 403)
  --basic-auth <user:pass>        visitors log in with HTTP Basic auth
  --bearer-token <token>          visitors send Authorization: Bearer <token>
  --require-header 'Name: value'  visitors send this header with exactly this value
  Any one credential lets a visitor in (others get 401), on top of --allow-cidr; the header
  that matched is removed before the request reaches your app.

Examples:
  burrow http 3000
  burrow http localhost:8000 --subdomain shop --relay https://tunnel.example.com
  burrow http 3000 --basic-auth alice:s3cret --allow-cidr 203.0.113.0/24
  burrow start --config burrow.yml
  burrow tcp 5432 --relay https://tunnel.example.com
  burrow share tcp localhost:5432 --name prod-db
  burrow connect prod-db --listen 127.0.0.1:7000 --secret <secret>
`;

const VALUE_FLAGS = new Set([
  '--relay',
  '--subdomain',
  '--session',
  '--key',
  '--host-header',
  '--dead-after-ms',
  '--token',
  '--config',
  '--name',
  '--secret',
  '--listen',
  '--target',
]);
/** Flags that may be given several times; every value is kept. */
const LIST_FLAGS = new Set(['--basic-auth', '--allow-cidr', '--require-header', '--bearer-token', '--allow']);
/** Flags of share and connect only. */
const SHARE_FLAGS = ['--name', '--allow', '--secret', '--listen', '--target'];
const ACCESS_FLAGS = ['--basic-auth', '--allow-cidr', '--require-header', '--bearer-token'];
const BOOL_FLAGS = new Set(['--json', '--insecure']);

export function parseAgentArgs(argv: readonly string[], env: Readonly<Record<string, string | undefined>>): Command {
  const values = new Map<string, string>();
  const lists = new Map<string, string[]>();
  const bools = new Set<string>();
  const positional: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i] as string;
    if (arg === '-h' || arg === '--help') return { kind: 'help' };
    if (arg === '--version') return { kind: 'version' };
    if (arg.startsWith('--')) {
      const eq = arg.indexOf('=');
      const name = eq >= 0 ? arg.slice(0, eq) : arg;
      if (BOOL_FLAGS.has(name) && eq < 0) {
        bools.add(name);
        continue;
      }
      if (!VALUE_FLAGS.has(name) && !LIST_FLAGS.has(name)) throw new UsageError(`unknown option "${arg}"`);
      const value = eq >= 0 ? arg.slice(eq + 1) : argv[++i];
      if (value === undefined || value === '') throw new UsageError(`${name} needs a value`);
      if (LIST_FLAGS.has(name)) lists.set(name, [...(lists.get(name) ?? []), value]);
      else values.set(name, value);
      continue;
    }
    positional.push(arg);
  }
  const [command, targetSpec, ...extra] = positional;
  if (command === undefined) throw new UsageError('missing command: burrow http <port>');
  if (command === 'start') return startCommand(positional.slice(1), values, lists, bools, env);
  if (command === 'share' || command === 'connect') return shareCommand(command, positional.slice(1), values, lists, bools, env);
  if (command !== 'http' && command !== 'tcp') throw new UsageError(`unknown command "${command}"; try: burrow http <port>`);
  const shareOnly = SHARE_FLAGS.find((f) => values.has(f) || lists.has(f));
  if (shareOnly !== undefined) throw new UsageError(`${shareOnly} is an option of burrow share and burrow connect`);
  if (values.has('--config')) throw new UsageError('--config belongs to start: burrow start --config <file>');
  if (targetSpec === undefined) throw new UsageError('missing target: burrow http <port | host:port | url>');
  if (extra.length > 0) throw new UsageError(`unexpected argument "${extra[0]}"`);
  let target: LocalTarget;
  try {
    target = command === 'tcp' ? parseTcpTarget(targetSpec) : parseTarget(targetSpec);
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
  const base = relayBase(values, bools, env);
  const subdomain = values.get('--subdomain');
  const session = values.get('--session');
  try {
    if (subdomain !== undefined) normalizeSubdomain(subdomain);
    if (session !== undefined) validateSessionName(session);
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
  const access = accessFlags(lists);
  if (command === 'tcp') {
    // Raw TCP has no headers: visitors can be limited by address only.
    const httpOnly = ['--subdomain', '--host-header', '--insecure', ...ACCESS_FLAGS.filter((f) => f !== '--allow-cidr')].find(
      (f) => values.has(f) || lists.has(f) || bools.has(f),
    );
    if (httpOnly !== undefined) throw new UsageError(`${httpOnly} is an option of burrow http; a TCP tunnel carries raw bytes on its own port`);
  }
  return {
    kind: command,
    ...base,
    target,
    insecureLocalTls: bools.has('--insecure'),
    hostHeader: values.get('--host-header') ?? 'preserve',
    ...(subdomain !== undefined ? { subdomain } : {}),
    ...(session !== undefined ? { session } : {}),
    ...(access !== undefined ? { access } : {}),
  };
}

/** --relay, --dead-after-ms, --token, --key and --json, as every relay-connected command reads them. */
function relayBase(values: ReadonlyMap<string, string>, bools: ReadonlySet<string>, env: Readonly<Record<string, string | undefined>>): RelayCommandBase {
  const relay = values.get('--relay') ?? env.BURROW_RELAY ?? 'http://localhost:8080';
  const relays = relay
    .split(',')
    .map((r) => r.trim())
    .filter((r) => r !== '');
  if (relays.length === 0) throw new UsageError('--relay: give at least one relay URL');
  for (const r of relays) {
    try {
      const u = new URL(r);
      if (!['http:', 'https:', 'ws:', 'wss:'].includes(u.protocol)) throw new Error();
    } catch {
      throw new UsageError(`--relay: "${r}" is not an http(s) URL`);
    }
  }
  const deadRaw = values.get('--dead-after-ms') ?? env.BURROW_DEAD_AFTER_MS;
  let deadAfterMs = 20_000;
  if (deadRaw !== undefined && deadRaw !== '') {
    if (!/^\d+$/.test(deadRaw) || Number(deadRaw) < 100) throw new UsageError(`--dead-after-ms: "${deadRaw}" must be a whole number of at least 100`);
    deadAfterMs = Number(deadRaw);
  }
  const token = values.get('--token') ?? (env.BURROW_TOKEN !== '' ? env.BURROW_TOKEN : undefined);
  if (token !== undefined) {
    try {
      validateTenantToken(token);
    } catch (err) {
      throw new UsageError(`--token (or BURROW_TOKEN): ${(err as Error).message}`);
    }
  }
  const keyFile = values.get('--key');
  return {
    relay,
    json: bools.has('--json'),
    deadAfterMs,
    ...(keyFile !== undefined ? { keyFile } : {}),
    ...(token !== undefined ? { token } : {}),
  };
}

/** A tcp target for --allow and --target: host:port (a bare port means localhost). */
function tcpTarget(flag: string, spec: string): LocalTarget {
  try {
    return parseTcpTarget(spec);
  } catch (err) {
    throw new UsageError(`${flag}: ${(err as Error).message}`);
  }
}

/** `burrow share tcp <target> --name N` and `burrow connect N --listen host:port`. */
function shareCommand(
  command: 'share' | 'connect',
  args: readonly string[],
  values: ReadonlyMap<string, string>,
  lists: ReadonlyMap<string, readonly string[]>,
  bools: ReadonlySet<string>,
  env: Readonly<Record<string, string | undefined>>,
): ShareCommand | ConnectCommand {
  const own = command === 'share' ? ['--name', '--allow', '--secret'] : ['--listen', '--secret', '--target'];
  const common = ['--relay', '--key', '--token', '--dead-after-ms', '--json'];
  const other = [...values.keys(), ...lists.keys(), ...bools].find((f) => !own.includes(f) && !common.includes(f));
  if (other !== undefined) throw new UsageError(`${other} is not an option of burrow ${command}`);
  const base = relayBase(values, bools, env);
  const secretRaw = values.get('--secret') ?? (env.BURROW_SHARE_SECRET !== '' ? env.BURROW_SHARE_SECRET : undefined);
  let secret: string | undefined;
  if (secretRaw !== undefined) {
    try {
      secret = validateShareSecret(secretRaw);
    } catch (err) {
      throw new UsageError(`--secret (or BURROW_SHARE_SECRET): ${(err as Error).message}`);
    }
  }
  const name = (flag: string, raw: string | undefined): string => {
    if (raw === undefined)
      throw new UsageError(command === 'share' ? 'share needs --name <name>' : 'missing share name: burrow connect <name> --listen <host:port>');
    try {
      return normalizeShareName(raw);
    } catch (err) {
      throw new UsageError(`${flag}: ${(err as Error).message}`);
    }
  };
  if (command === 'share') {
    const [kind, targetSpec, ...extra] = args;
    if (kind !== 'tcp') throw new UsageError(`burrow share shares TCP services: burrow share tcp <port | host:port> --name <name>`);
    if (targetSpec === undefined) throw new UsageError('missing target: burrow share tcp <port | host:port> --name <name>');
    if (extra.length > 0) throw new UsageError(`unexpected argument "${extra[0]}"`);
    const allow = (lists.get('--allow') ?? [])
      .flatMap((v) => v.split(','))
      .map((v) => v.trim())
      .filter((v) => v !== '')
      .map((v) => tcpTarget('--allow', v));
    return {
      kind: 'share',
      ...base,
      target: tcpTarget('target', targetSpec),
      name: name('--name', values.get('--name')),
      allow,
      ...(secret !== undefined ? { secret } : {}),
    };
  }
  const [shareName, ...extra] = args;
  if (extra.length > 0) throw new UsageError(`unexpected argument "${extra[0]}"`);
  const listenRaw = values.get('--listen');
  if (listenRaw === undefined) throw new UsageError('connect needs --listen <host:port>, e.g. --listen 127.0.0.1:7000');
  const listen = tcpTarget('--listen', /^\d+$/.test(listenRaw) ? `127.0.0.1:${listenRaw}` : listenRaw);
  const target = values.get('--target');
  if (target !== undefined) {
    try {
      validateTcpTarget(target);
    } catch (err) {
      throw new UsageError(`--target: ${(err as Error).message}`);
    }
  }
  return {
    kind: 'connect',
    ...base,
    share: name('name', shareName),
    listen: { host: listen.hostname, port: listen.port },
    ...(secret !== undefined ? { secret } : {}),
    ...(target !== undefined ? { target } : {}),
  };
}

function startCommand(
  args: readonly string[],
  values: ReadonlyMap<string, string>,
  lists: ReadonlyMap<string, readonly string[]>,
  bools: ReadonlySet<string>,
  env: Readonly<Record<string, string | undefined>>,
): StartCommand {
  if (args.length > 0) throw new UsageError(`unexpected argument "${args[0]}"; start takes its forwards from --config <file>`);
  const other = [...values.keys(), ...lists.keys(), ...bools].find((f) => f !== '--config' && f !== '--json');
  if (other !== undefined) throw new UsageError(`${other} is not an option of start; set it in the config file`);
  const configFile = values.get('--config') ?? (env.BURROW_CONFIG !== '' ? env.BURROW_CONFIG : undefined);
  if (configFile === undefined) throw new UsageError('start needs a config file: burrow start --config <file> (or BURROW_CONFIG)');
  return { kind: 'start', configFile, json: bools.has('--json') };
}

/** AccessRules from the access flags, or undefined when none was given; problems name their flag. */
function accessFlags(lists: ReadonlyMap<string, readonly string[]>): AccessRules | undefined {
  const input: AccessRulesInput = {
    basicAuth: lists.get('--basic-auth') ?? [],
    allowCidrs: (lists.get('--allow-cidr') ?? [])
      .flatMap((v) => v.split(','))
      .map((v) => v.trim())
      .filter((v) => v !== ''),
    headers: lists.get('--require-header') ?? [],
    bearerTokens: lists.get('--bearer-token') ?? [],
  };
  const flags: readonly [string, keyof AccessRulesInput][] = [
    ['--basic-auth', 'basicAuth'],
    ['--allow-cidr', 'allowCidrs'],
    ['--require-header', 'headers'],
    ['--bearer-token', 'bearerTokens'],
  ];
  for (const [flag, key] of flags) {
    try {
      accessRulesFrom({ [key]: input[key] });
    } catch (err) {
      throw new UsageError(`${flag}: ${(err as Error).message.replace(/^access rules: /, '')}`);
    }
  }
  if (flags.every(([flag]) => !lists.has(flag))) return undefined;
  if (lists.has('--allow-cidr') && input.allowCidrs?.length === 0) throw new UsageError('--allow-cidr: give at least one address or CIDR');
  try {
    return accessRulesFrom(input);
  } catch (err) {
    // Only the shared list can still overflow: --require-header and --bearer-token both add headers.
    throw new UsageError(`--require-header/--bearer-token: ${(err as Error).message.replace(/^access rules: /, '')}`);
  }
}
