/**
 * Access-log lines: the fields, the query string left out, long values cut, nothing written when
 * off. A Fastify logger writes into an array (the relay's own logger kind).
 */
import Fastify, { type FastifyBaseLogger } from 'fastify';
import { AccessLog, loggedPath, loggedUserAgent, MAX_LOGGED_PATH_CHARS, MAX_LOGGED_USER_AGENT_CHARS } from '../src/accessLog';

function capture(): { log: FastifyBaseLogger; lines: Record<string, unknown>[] } {
  const lines: Record<string, unknown>[] = [];
  const app = Fastify({ logger: { level: 'info', stream: { write: (line: string) => lines.push(JSON.parse(line)) } } });
  return { log: app.log, lines };
}

const entry = {
  kind: 'http' as const,
  label: 'abc123',
  method: 'POST',
  path: '/upload',
  status: 413,
  code: 'BURROW_ERR_REQUEST_TOO_LARGE',
  bytesIn: 10,
  bytesOut: 0,
  headMs: 1.23456,
  totalMs: 2.5,
  visitor: '198.51.100.4',
  peer: '10.0.0.2',
  userAgent: 'curl/8.5.0',
};

describe('access log', () => {
  test('one info line with msg "access" and every field', () => {
    const { log, lines } = capture();
    new AccessLog(log, { enabled: true, nodeId: 'node-1', trustedProxies: [] }).write(entry);
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatchObject({
      level: 30,
      msg: 'access',
      node: 'node-1',
      kind: 'http',
      label: 'abc123',
      method: 'POST',
      path: '/upload',
      status: 413,
      code: 'BURROW_ERR_REQUEST_TOO_LARGE',
      bytesIn: 10,
      bytesOut: 0,
      headMs: 1.23,
      totalMs: 2.5,
      visitor: '198.51.100.4',
      peer: '10.0.0.2',
      userAgent: 'curl/8.5.0',
    });
  });

  test('absent fields are left out of the line', () => {
    const { log, lines } = capture();
    new AccessLog(log, { enabled: true, nodeId: 'n', trustedProxies: [] }).write({
      ...entry,
      code: undefined,
      headMs: undefined,
      peer: undefined,
      userAgent: undefined,
    });
    const line = lines[0] as Record<string, unknown>;
    for (const key of ['code', 'headMs', 'peer', 'userAgent']) expect(Object.hasOwn(line, key)).toBe(false);
  });

  test('nothing is written when the access log is off', () => {
    const { log, lines } = capture();
    new AccessLog(log, { enabled: false, nodeId: 'n', trustedProxies: [] }).write(entry);
    expect(lines).toHaveLength(0);
  });

  test('paths lose their query string and fragment, and are cut at the limit', () => {
    expect(loggedPath('/a/b?token=secret&x=1')).toBe('/a/b');
    expect(loggedPath('/a#frag?x')).toBe('/a');
    expect(loggedPath('/?')).toBe('/');
    expect(loggedPath('http://other.example/p?q')).toBe('http://other.example/p');
    expect(loggedPath(undefined)).toBe('');
    expect(loggedPath(`/${'x'.repeat(5000)}`)).toHaveLength(MAX_LOGGED_PATH_CHARS);
  });

  test('user agents are cut at the limit', () => {
    expect(loggedUserAgent('curl/8')).toBe('curl/8');
    expect(loggedUserAgent(undefined)).toBeUndefined();
    expect(loggedUserAgent('u'.repeat(2000))).toHaveLength(MAX_LOGGED_USER_AGENT_CHARS);
  });

  test('the visitor resolver honours the configured trusted proxies', () => {
    const { log } = capture();
    const a = new AccessLog(log, { enabled: true, nodeId: 'n', trustedProxies: ['127.0.0.1'] });
    const req = { socket: { remoteAddress: '127.0.0.1' }, headers: { 'x-forwarded-for': '198.51.100.4' } };
    expect(a.visitor(req as never)).toBe('198.51.100.4');
  });
});
