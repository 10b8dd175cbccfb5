/** `burrow share tcp` and `burrow connect` argument parsing. No processes, no sockets. */
import { parseAgentArgs, UsageError } from '../src/cli';

function usageError(argv: string[], env: Record<string, string> = {}): string {
  try {
    parseAgentArgs(argv, env);
  } catch (err) {
    if (err instanceof UsageError) return err.message;
    throw err;
  }
  throw new Error('no usage error');
}

describe('burrow share tcp', () => {
  test('target, name, allow-list and secret (flag or env)', () => {
    expect(parseAgentArgs(['share', 'tcp', '5432', '--name', 'Prod-DB', '--allow', 'replica:5432,10.0.0.9:5432', '--allow', '6379'], {})).toMatchObject({
      kind: 'share',
      target: { hostname: 'localhost', port: 5432 },
      name: 'prod-db',
      allow: [
        { hostname: 'replica', port: 5432 },
        { hostname: '10.0.0.9', port: 5432 },
        { hostname: 'localhost', port: 6379 },
      ],
    });
    expect(parseAgentArgs(['share', 'tcp', 'db:5432', '--name', 'db', '--secret', 's'], {})).toMatchObject({ secret: 's' });
    expect(parseAgentArgs(['share', 'tcp', 'db:5432', '--name', 'db'], { BURROW_SHARE_SECRET: 'e' })).toMatchObject({ secret: 'e' });
    expect(parseAgentArgs(['share', 'tcp', 'db:5432', '--name', 'db'], {})).not.toHaveProperty('secret');
  });

  test.each([
    [['share', 'http', '80', '--name', 'x'], 'burrow share shares TCP services'],
    [['share', 'tcp', '--name', 'x'], 'missing target'],
    [['share', 'tcp', '5432'], 'share needs --name'],
    [['share', 'tcp', '5432', '--name', 'a:b'], '--name: share name "a:b"'],
    [['share', 'tcp', '5432', '--name', 'x', '--allow', 'nope:'], '--allow:'],
    [['share', 'tcp', '5432', '--name', 'x', '--subdomain', 'y'], '--subdomain is not an option of burrow share'],
    [['share', 'tcp', '5432', '--name', 'x', '--listen', '7000'], '--listen is not an option of burrow share'],
    [['tcp', '5432', '--secret', 'x'], '--secret is an option of burrow share and burrow connect'],
  ])('%j is a usage error: %s', (argv, message) => {
    expect(usageError(argv)).toContain(message);
  });
});

describe('burrow connect', () => {
  test('name, listen (a bare port is loopback), secret, target', () => {
    expect(parseAgentArgs(['connect', 'db', '--listen', '7000', '--secret', 's', '--target', 'replica:5432'], {})).toMatchObject({
      kind: 'connect',
      share: 'db',
      listen: { host: '127.0.0.1', port: 7000 },
      secret: 's',
      target: 'replica:5432',
    });
    expect(parseAgentArgs(['connect', 'db', '--listen', '0.0.0.0:7000', '--token', 'tok'], {})).toMatchObject({
      listen: { host: '0.0.0.0', port: 7000 },
      token: 'tok',
    });
  });

  test.each([
    [['connect', '--listen', '7000'], 'missing share name'],
    [['connect', 'db'], 'connect needs --listen'],
    [['connect', 'db', '--listen', 'x:y'], '--listen:'],
    [['connect', 'db', '--listen', '7000', '--target', 'nope'], '--target:'],
    [['connect', 'db', '--listen', '7000', '--allow', 'x:1'], '--allow is not an option of burrow connect'],
    [['connect', 'db', 'extra', '--listen', '7000'], 'unexpected argument "extra"'],
  ])('%j is a usage error: %s', (argv, message) => {
    expect(usageError(argv)).toContain(message);
  });
});
