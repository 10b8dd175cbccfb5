/**
 * parseAgentArgs unit tests for the visitor access and tenant token flags (the binary itself is
 * run in test/e2e/cli.test.ts). No processes, no sockets.
 */
import { accessRulesFrom, credentialDigest } from '@burrow/protocol';
import { type HttpCommand, parseAgentArgs, USAGE, UsageError } from '../src/cli';

const http = (args: string[], env: Record<string, string> = {}): HttpCommand => {
  const c = parseAgentArgs(['http', '3000', ...args], env);
  if (c.kind !== 'http') throw new Error(`expected http, got ${c.kind}`);
  return c;
};

function usageError(args: string[], env: Record<string, string> = {}): string {
  try {
    parseAgentArgs(['http', '3000', ...args], env);
  } catch (err) {
    if (err instanceof UsageError) return err.message;
    throw err;
  }
  throw new Error('expected a UsageError');
}

describe('access flags', () => {
  test('no access flag: no access rules, no token', () => {
    const c = http([]);
    expect(c).not.toHaveProperty('access');
    expect(c).not.toHaveProperty('token');
  });

  test('--basic-auth is repeatable and becomes digests', () => {
    const c = http(['--basic-auth', 'alice:s3cret', '--basic-auth=bob:pa:ss']);
    expect(c.access).toStrictEqual({
      basicAuth: [
        { user: 'alice', sha256: credentialDigest('alice:s3cret') },
        { user: 'bob', sha256: credentialDigest('bob:pa:ss') },
      ],
    });
    expect(JSON.stringify(c)).not.toContain('s3cret');
  });

  test('--allow-cidr is repeatable and comma-separated', () => {
    const c = http(['--allow-cidr', '10.0.0.0/8, 192.0.2.7', '--allow-cidr', '2001:db8::/32,']);
    expect(c.access).toStrictEqual({ allowCidrs: ['10.0.0.0/8', '192.0.2.7', '2001:db8::/32'] });
  });

  test('--require-header and --bearer-token both become required headers', () => {
    const c = http(['--require-header', 'X-Api-Key: k3y', '--bearer-token', 't0ken', '--bearer-token', 'other']);
    expect(c.access).toStrictEqual(accessRulesFrom({ headers: ['x-api-key: k3y'], bearerTokens: ['t0ken', 'other'] }));
    expect(c.access?.headers?.map((h) => h.name)).toStrictEqual(['x-api-key', 'authorization', 'authorization']);
  });

  test('all together', () => {
    const c = http(['--basic-auth', 'a:b', '--allow-cidr', '::1', '--require-header', 'X-K: v', '--bearer-token', 't']);
    expect(c.access).toStrictEqual(accessRulesFrom({ basicAuth: ['a:b'], allowCidrs: ['::1'], headers: ['X-K: v'], bearerTokens: ['t'] }));
  });

  test.each([
    [['--basic-auth', 'alice'], '--basic-auth: basic auth must be user:password'],
    [['--basic-auth', ':pw'], '--basic-auth: basic auth needs a user name'],
    [['--basic-auth', 'alice:'], '--basic-auth: basic auth for "alice" needs a password'],
    [['--basic-auth'], '--basic-auth needs a value'],
    [['--allow-cidr', '10.0.0.0/33'], '--allow-cidr: "10.0.0.0/33": the prefix length must be at most 32'],
    [['--allow-cidr', 'localhost'], '--allow-cidr: "localhost" is not an IPv4/IPv6 address or CIDR'],
    [['--allow-cidr', ','], '--allow-cidr: give at least one address or CIDR'],
    [['--require-header', 'X-Key'], '--require-header: a required header must be "Name: value"'],
    [['--require-header', 'Host: x'], '--require-header: header "host" cannot carry a credential'],
    [['--require-header', 'X-Key: '], '--require-header: header "x-key" needs a value'],
    [['--bearer-token', 'a b'], '--bearer-token: a bearer token must be non-empty'],
  ])('%j is a usage error: %s', (args, message) => {
    expect(usageError(args)).toContain(message);
  });

  test('a password never appears in a usage error', () => {
    expect(usageError(['--basic-auth', 'hunter2'])).not.toContain('hunter2');
  });

  test('more than 16 entries in one list is a usage error, also when headers and bearer tokens add up', () => {
    const many = (flag: string, make: (i: number) => string, n: number): string[] => Array.from({ length: n }, (_, i) => [flag, make(i)]).flat();
    expect(http(many('--basic-auth', (i) => `u${i}:p`, 16)).access?.basicAuth).toHaveLength(16);
    expect(usageError(many('--basic-auth', (i) => `u${i}:p`, 17))).toContain('--basic-auth: basicAuth has 17 entries, at most 16');
    expect(usageError([...many('--require-header', (i) => `X-K${i}: v`, 9), ...many('--bearer-token', (i) => `t${i}`, 8)])).toContain(
      '--require-header/--bearer-token: headers has 17 entries',
    );
  });
});

describe('--token', () => {
  test('from the flag, else BURROW_TOKEN (an empty BURROW_TOKEN is unset)', () => {
    expect(http(['--token', 'burrow_id_secret']).token).toBe('burrow_id_secret');
    expect(http([], { BURROW_TOKEN: 'burrow_env' }).token).toBe('burrow_env');
    expect(http(['--token', 'burrow_flag'], { BURROW_TOKEN: 'burrow_env' }).token).toBe('burrow_flag');
    expect(http([], { BURROW_TOKEN: '' })).not.toHaveProperty('token');
  });

  test('longer than 200 characters is a usage error that does not echo the token', () => {
    expect(http(['--token', 't'.repeat(200)]).token).toHaveLength(200);
    const message = usageError([], { BURROW_TOKEN: 's'.repeat(201) });
    expect(message).toContain('--token (or BURROW_TOKEN): token must be a string of 1 to 200 characters');
    expect(message).not.toContain('sss');
  });
});

test('the usage text lists the new flags', () => {
  for (const flag of ['--basic-auth', '--allow-cidr', '--require-header', '--bearer-token', '--token', 'BURROW_TOKEN']) expect(USAGE).toContain(flag);
});
