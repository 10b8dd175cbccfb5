/**
 * The TCP forward kinds of a config file (`burrow start --config`), registered through
 * registerForwardKind when this module is loaded (supervisor.ts loads it):
 *
 *   - name: pg-public
 *     tcp: 5432                      # burrow tcp: a public tcp://<host>:<port>
 *   - name: prod-db                  # the share's name, unless shareName says otherwise
 *     share: localhost:5432          # burrow share tcp
 *     allow: [replica:5432]          # further targets connectors may ask for
 *     secret: ${DB_SHARE_SECRET}     # required here: nobody would see a generated one
 *   - name: db-client
 *     connect: prod-db               # burrow connect
 *     listen: 127.0.0.1:7000         # a bare port means 127.0.0.1
 *     secret: ${DB_SHARE_SECRET}     # or a token of the share's tenant
 *     target: replica:5432           # optional
 */
import { type KeyPair, normalizeShareName, shareSecretDigest, validateShareSecret, validateTcpTarget } from '@burrow/protocol';
import { Agent } from './agent';
import { type ExtensionForward, registerForwardKind } from './configFile';
import { Connector } from './connector';
import { type LocalTarget, parseTcpTarget } from './localTarget';

interface TcpOptions {
  readonly target: LocalTarget;
}

interface ShareOptions {
  readonly target: LocalTarget;
  readonly shareName: string;
  readonly allow: readonly LocalTarget[];
  readonly secret: string;
}

interface ConnectOptions {
  readonly share: string;
  readonly listen: { readonly host: string; readonly port: number };
  readonly secret?: string;
  readonly target?: string;
}

function tcpTarget(value: unknown, what: string): LocalTarget {
  if (typeof value !== 'number' && typeof value !== 'string') throw new Error(`${what} must be a port or host:port`);
  if (typeof value === 'number' && (!Number.isInteger(value) || value < 1 || value > 65535)) throw new Error(`${what}: port ${value} must be 1-65535`);
  try {
    return parseTcpTarget(value);
  } catch (err) {
    throw new Error(`${what}: ${(err as Error).message}`);
  }
}

function secretOf(value: unknown): string {
  try {
    return validateShareSecret(value);
  } catch (err) {
    throw new Error(`secret: ${(err as Error).message}`);
  }
}

const common = (f: ExtensionForward) => ({
  relay: f.relay,
  deadAfterMs: f.deadAfterMs,
  ...(f.token !== undefined ? { token: f.token } : {}),
});

registerForwardKind('tcp', {
  fields: [],
  parse: (value): TcpOptions => ({ target: tcpTarget(value, 'tcp') }),
  createWorker: (f: ExtensionForward, keyPair: KeyPair) => {
    const o = f.options as TcpOptions;
    return new Agent({ ...common(f), target: o.target, keyPair, tcp: true, ...(f.session !== undefined ? { session: f.session } : {}) });
  },
});

registerForwardKind('share', {
  fields: ['shareName', 'allow', 'secret'],
  parse: (value, fields): ShareOptions => {
    if (fields.secret === undefined) throw new Error('a share needs "secret" (best from an environment variable); connectors prove access with it');
    const allowRaw = fields.allow === undefined ? [] : Array.isArray(fields.allow) ? fields.allow : [fields.allow];
    if (fields.shareName !== undefined && typeof fields.shareName !== 'string') throw new Error('shareName must be a string');
    return {
      target: tcpTarget(value, 'share'),
      // Set by the supervisor's forward name when absent (see createWorker).
      shareName: fields.shareName === undefined ? '' : normalizeShareName(fields.shareName as string),
      allow: allowRaw.flatMap((a) => (typeof a === 'string' ? a.split(',').map((s) => s.trim()) : [a])).map((a) => tcpTarget(a, 'allow')),
      secret: secretOf(fields.secret),
    };
  },
  createWorker: (f, keyPair) => {
    const o = f.options as ShareOptions;
    return new Agent({
      ...common(f),
      target: o.target,
      keyPair,
      share: { name: o.shareName !== '' ? o.shareName : normalizeShareName(f.name), secretSha256: shareSecretDigest(o.secret), allow: o.allow },
    });
  },
});

registerForwardKind('connect', {
  fields: ['listen', 'secret', 'target'],
  parse: (value, fields): ConnectOptions => {
    if (typeof value !== 'string') throw new Error('connect must name a share');
    const share = normalizeShareName(value);
    if (fields.listen === undefined) throw new Error('a connect forward needs "listen: <host:port>", e.g. listen: 127.0.0.1:7000');
    const listenRaw = typeof fields.listen === 'number' || /^\d+$/.test(String(fields.listen)) ? `127.0.0.1:${String(fields.listen)}` : fields.listen;
    const listen = tcpTarget(listenRaw, 'listen');
    let target: string | undefined;
    if (fields.target !== undefined) {
      try {
        target = validateTcpTarget(fields.target);
      } catch (err) {
        throw new Error(`target: ${(err as Error).message}`);
      }
    }
    return {
      share,
      listen: { host: listen.hostname, port: listen.port },
      ...(fields.secret !== undefined ? { secret: secretOf(fields.secret) } : {}),
      ...(target !== undefined ? { target } : {}),
    };
  },
  createWorker: (f, keyPair) => {
    const o = f.options as ConnectOptions;
    return new Connector({
      ...common(f),
      keyPair,
      share: o.share,
      listen: o.listen,
      ...(o.secret !== undefined ? { secret: o.secret } : {}),
      ...(o.target !== undefined ? { target: o.target } : {}),
    });
  },
});
