/** `burrow tcp` argument parsing and TCP targets. No processes, no sockets. */
import { parseAgentArgs, UsageError } from '../src/cli';
import { parseTcpTarget, TargetError } from '../src/localTarget';

function usageError(argv: string[]): string {
  try {
    parseAgentArgs(argv, {});
  } catch (err) {
    if (err instanceof UsageError) return err.message;
    throw err;
  }
  throw new Error('no usage error');
}

describe('burrow tcp', () => {
  test('a port or host:port; the shared options apply', () => {
    const c = parseAgentArgs(['tcp', '5432', '--relay', 'https://r.example', '--session', 'db', '--json', '--dead-after-ms', '5000'], {});
    expect(c).toMatchObject({
      kind: 'tcp',
      target: { protocol: 'tcp:', hostname: 'localhost', port: 5432, origin: 'tcp://localhost:5432' },
      relay: 'https://r.example',
      session: 'db',
      json: true,
      deadAfterMs: 5000,
    });
    expect(parseAgentArgs(['tcp', 'db.internal:6379'], {})).toMatchObject({ kind: 'tcp', target: { hostname: 'db.internal', port: 6379 } });
  });

  test('--allow-cidr is accepted: raw TCP visitors can be limited by address', () => {
    expect(parseAgentArgs(['tcp', '5432', '--allow-cidr', '10.0.0.0/8'], {})).toMatchObject({ kind: 'tcp', access: { allowCidrs: ['10.0.0.0/8'] } });
  });

  test.each([['--subdomain', 'x'], ['--host-header', 'rewrite'], ['--insecure'], ['--basic-auth', 'a:b'], ['--bearer-token', 't']])(
    'the HTTP-only option %s is refused',
    (...flag) => {
      expect(usageError(['tcp', '5432', ...flag])).toMatch(/is an option of burrow http/);
    },
  );

  test('a URL or a bad port is a usage error', () => {
    expect(usageError(['tcp', 'http://localhost:5432'])).toMatch(/not a port or host:port/);
    expect(usageError(['tcp', '70000'])).toMatch(/not a port or host:port/);
  });
});

describe('parseTcpTarget', () => {
  test('IPv6 in brackets', () => {
    expect(parseTcpTarget('[::1]:5432')).toEqual({ protocol: 'tcp:', hostname: '::1', port: 5432, origin: 'tcp://[::1]:5432' });
  });
  test.each(['', '0', 'localhost', 'a:b', 'localhost:65536'])('%p is refused', (spec) => {
    expect(() => parseTcpTarget(spec)).toThrow(TargetError);
  });
});
