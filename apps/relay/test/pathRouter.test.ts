import { ConfigError, parseRelayConfig, type RelayConfig } from '../src/config';
import { makePathRouter, stripBasePath } from '../src/pathRouter';
import { tunnelUrl } from '../src/relayContext';

const LABEL = 'abcdefghijklmnopqrstuvwxyz234567abcdefghijklmnopqrst';

describe('stripBasePath', () => {
  test.each([
    ['/unlynx/x', '/x'],
    ['/unlynx/', '/'],
    ['/unlynx', '/'],
    ['/unlynx/t/a/b', '/t/a/b'],
    // A proxy that maps /unlynx to / (proxy_pass http://relay/ in `location /unlynx`).
    ['//x', '/x'],
    ['//', '/'],
    ['//_burrow/connect', '/_burrow/connect'],
    // A proxy that strips the prefix and its slash.
    ['/x', '/x'],
    ['/', '/'],
    // Not the base path: only a whole segment matches.
    ['/unlynxx/y', '/unlynxx/y'],
  ])('base /unlynx: %s → %s', (path, expected) => {
    expect(stripBasePath(path, '/unlynx')).toBe(expected);
  });

  test('a nested base path', () => {
    expect(stripBasePath('/a/b/c', '/a/b')).toBe('/c');
    expect(stripBasePath('/a/bc', '/a/b')).toBe('/a/bc');
  });

  test('no base path: unchanged, even //x', () => {
    expect(stripBasePath('//x', '')).toBe('//x');
    expect(stripBasePath('/x', '')).toBe('/x');
  });
});

describe('makePathRouter', () => {
  const route = makePathRouter({ basePath: '/unlynx', pathRouting: true });

  test('relay routes lose the base path and keep the query', () => {
    expect(route('/unlynx/healthz')).toEqual({ kind: 'relay', url: '/healthz' });
    expect(route('/unlynx/_burrow/connect?x=1')).toEqual({ kind: 'relay', url: '/_burrow/connect?x=1' });
    expect(route('//_burrow/connect')).toEqual({ kind: 'relay', url: '/_burrow/connect' });
    expect(route('/unlynx')).toEqual({ kind: 'relay', url: '/' });
    expect(route('/unlynx?a=b')).toEqual({ kind: 'relay', url: '/?a=b' });
    expect(route(undefined)).toEqual({ kind: 'relay', url: '/' });
  });

  test('<base>/t/<label>/rest is the tunnel, rest and query kept as sent', () => {
    expect(route(`/unlynx/t/${LABEL}/x?y=1`)).toEqual({ kind: 'tunnel', label: LABEL, url: '/x?y=1' });
    expect(route(`/unlynx/t/${LABEL}/`)).toEqual({ kind: 'tunnel', label: LABEL, url: '/' });
    expect(route(`/unlynx/t/${LABEL}/a%20b//c/?q=%2F&q=2`)).toEqual({ kind: 'tunnel', label: LABEL, url: '/a%20b//c/?q=%2F&q=2' });
    expect(route('/unlynx/t/my-app/ws')).toEqual({ kind: 'tunnel', label: 'my-app', url: '/ws' });
    // A query that looks like a path does not count.
    expect(route(`/unlynx/t/${LABEL}?next=/x/y`)).toMatchObject({ kind: 'redirect', label: LABEL });
  });

  test('the same through a //-rewriting proxy and a stripping one', () => {
    expect(route(`//t/${LABEL}/x?y=1`)).toEqual({ kind: 'tunnel', label: LABEL, url: '/x?y=1' });
    expect(route(`/t/${LABEL}/x?y=1`)).toEqual({ kind: 'tunnel', label: LABEL, url: '/x?y=1' });
  });

  test('labels are case-insensitive, as in host names', () => {
    expect(route('/unlynx/t/My-App/x')).toEqual({ kind: 'tunnel', label: 'my-app', url: '/x' });
  });

  test('<base>/t/<label> without the slash redirects to it with the slash (the base path as the public sees it)', () => {
    expect(route(`/unlynx/t/${LABEL}`)).toEqual({ kind: 'redirect', label: LABEL, location: `/unlynx/t/${LABEL}/`, url: '/' });
    expect(route(`/unlynx/t/${LABEL}?a=1&b`)).toEqual({ kind: 'redirect', label: LABEL, location: `/unlynx/t/${LABEL}/?a=1&b`, url: '/?a=1&b' });
    expect(route(`//t/${LABEL}`)).toMatchObject({ kind: 'redirect', location: `/unlynx/t/${LABEL}/` });
    expect(route('/unlynx/t/App')).toMatchObject({ kind: 'redirect', location: '/unlynx/t/app/' });
  });

  test.each(['a.b', '-x', 'x-', 'UNDER_score', 'a%2Fb', `${'a'.repeat(64)}`, 'ü'])('/t/%s/ is not a tunnel name', (name) => {
    expect(route(`/unlynx/t/${name}/x`)).toEqual({ kind: 'invalid', name });
  });

  test('/t and /t/ alone are relay routes (answered 404 by the relay)', () => {
    expect(route('/unlynx/t')).toEqual({ kind: 'relay', url: '/t' });
    expect(route('/unlynx/t/')).toEqual({ kind: 'relay', url: '/t/' });
    expect(route('/unlynx/t//x')).toEqual({ kind: 'relay', url: '/t//x' });
    expect(route('/unlynx/tx/abc/')).toEqual({ kind: 'relay', url: '/tx/abc/' });
  });

  test('path routing off: /t/<label>/ is a relay route like any other', () => {
    const off = makePathRouter({ basePath: '/unlynx', pathRouting: false });
    expect(off(`/unlynx/t/${LABEL}/x`)).toEqual({ kind: 'relay', url: `/t/${LABEL}/x` });
    expect(off('//healthz')).toEqual({ kind: 'relay', url: '/healthz' });
  });

  test('no base path, path routing on', () => {
    const root = makePathRouter({ basePath: '', pathRouting: true });
    expect(root(`/t/${LABEL}/x?y=1`)).toEqual({ kind: 'tunnel', label: LABEL, url: '/x?y=1' });
    expect(root(`/t/${LABEL}`)).toMatchObject({ kind: 'redirect', location: `/t/${LABEL}/` });
    expect(root('/healthz')).toEqual({ kind: 'relay', url: '/healthz' });
  });

  test('neither: every target passes unchanged', () => {
    const plain = makePathRouter({ basePath: '', pathRouting: false });
    for (const url of ['/', '//x', `/t/${LABEL}/x`, 'http://h/x']) expect(plain(url)).toEqual({ kind: 'relay', url });
  });

  test('absolute-form targets are left alone', () => {
    expect(route('http://example.org/unlynx/t/abc/')).toEqual({ kind: 'relay', url: 'http://example.org/unlynx/t/abc/' });
  });
});

describe('base path and path routing options', () => {
  const parse = (argv: string[], env: Record<string, string> = {}): RelayConfig => {
    const r = parseRelayConfig(argv, env);
    if (r.kind !== 'config') throw new Error('expected a configuration');
    return r.config;
  };

  test('defaults: no base path, path routing off, host URLs', () => {
    const c = parse([]);
    expect([c.basePath, c.pathRouting, c.tunnelUrls, c.publicUrl]).toEqual(['', false, 'host', undefined]);
  });

  test('flags and environment', () => {
    const c = parse(['--base-path', '/unlynx', '--path-routing', 'on', '--tunnel-urls', 'path']);
    expect([c.basePath, c.pathRouting, c.tunnelUrls]).toEqual(['/unlynx', true, 'path']);
    const e = parse([], { BURROW_BASE_PATH: '/a/b-c_d.e~f', BURROW_PATH_ROUTING: 'on', BURROW_TUNNEL_URLS: 'host' });
    expect([e.basePath, e.pathRouting, e.tunnelUrls]).toEqual(['/a/b-c_d.e~f', true, 'host']);
    expect(parse(['--base-path', '/']).basePath).toBe('');
  });

  test.each(['unlynx', '/unlynx/', '//x', '/a//b', '/a b', '/a?b', '/a#b', '/a/../b', '/.', '/%2e', ''])('--base-path %j is refused', (value) => {
    expect(() => parse(['--base-path', value])).toThrow(ConfigError);
  });

  test('--tunnel-urls: host or path; path needs path routing', () => {
    expect(() => parse(['--tunnel-urls', 'both'])).toThrow(/not host or path/);
    expect(() => parse(['--tunnel-urls', 'path'])).toThrow(/--path-routing on/);
  });

  test('--public-url may carry the base path, and sets it when --base-path is not given', () => {
    const c = parse(['--domain', 'example.org', '--public-url', 'https://example.org/unlynx/']);
    expect([c.publicUrl, c.basePath]).toEqual(['https://example.org/unlynx', '/unlynx']);
    const both = parse(['--domain', 'example.org', '--public-url', 'https://example.org/unlynx', '--base-path', '/unlynx']);
    expect(both.publicUrl).toBe('https://example.org/unlynx');
  });

  test('--public-url without a path gets the base path', () => {
    const c = parse(['--domain', 'example.org', '--public-url', 'https://example.org:8443', '--base-path', '/r1']);
    expect([c.publicUrl, c.basePath]).toEqual(['https://example.org:8443/r1', '/r1']);
    expect(parse(['--domain', 'example.org', '--public-url', 'https://example.org/']).publicUrl).toBe('https://example.org');
  });

  test('--public-url with another path than --base-path, or a query, is refused', () => {
    expect(() => parse(['--domain', 'example.org', '--public-url', 'https://example.org/a', '--base-path', '/b'])).toThrow(/must be the --base-path/);
    expect(() => parse(['--domain', 'example.org', '--public-url', 'https://example.org/a?x=1'])).toThrow(/no query/);
    expect(() => parse(['--domain', 'example.org', '--public-url', 'https://example.org/a b'])).toThrow(ConfigError);
  });
});

describe('tunnelUrl', () => {
  test('host form ignores the base path (tunnel hosts have none)', () => {
    expect(tunnelUrl('https://example.org/unlynx', 'abc')).toBe('https://abc.example.org');
    expect(tunnelUrl('http://localhost:8080', 'abc', 'host')).toBe('http://abc.localhost:8080');
  });

  test('path form: <public url>/t/<label>/', () => {
    expect(tunnelUrl('https://example.org/unlynx', 'abc', 'path')).toBe('https://example.org/unlynx/t/abc/');
    expect(tunnelUrl('http://localhost:8080', 'abc', 'path')).toBe('http://localhost:8080/t/abc/');
  });
});
