/**
 * Config file of `burrow start`: valid files (YAML and JSON), every validation error with its
 * file:line:column, environment fallbacks and `${VAR}` expansion, the forward kind hook. Pure
 * parsing except one read of a real file.
 */
// biome-ignore-all lint/suspicious/noTemplateCurlyInString: \${VAR} in plain strings is the syntax under test.
import { mkdtempSync, writeFileSync } from 'node:fs';
import { homedir, tmpdir } from 'node:os';
import { join } from 'node:path';
import { accessRulesFrom } from '@burrow/protocol';
import { parseAgentArgs, UsageError } from '../src/cli';
import { ConfigError, type ExtensionForward, type HttpForward, loadConfigFile, parseConfig, registerForwardKind } from '../src/configFile';

const FILE = '/etc/burrow/burrow.yml';
const ENV = { BURROW_HOME: '/home/me/.burrow' };

const parse = (text: string, env: Record<string, string | undefined> = ENV) => parseConfig(text, FILE, env);
const http = (text: string, env?: Record<string, string | undefined>): HttpForward[] => parse(text, env).forwards as HttpForward[];

function problem(text: string, env: Record<string, string | undefined> = ENV): string {
  try {
    parse(text, env);
  } catch (err) {
    if (err instanceof ConfigError) return err.message;
    throw err;
  }
  throw new Error('expected a ConfigError');
}

describe('valid config files', () => {
  test('the example from the README', () => {
    const [web, api] = http(`
relay: https://tunnel.example.com
token: t0ken
key: ~/.config/burrow/key.json
forwards:
  - name: web
    http: 3000
    subdomain: Shop
  - name: api
    http: localhost:8000
    session: api
`);
    expect(web).toEqual({
      name: 'web',
      kind: 'http',
      target: { protocol: 'http:', hostname: 'localhost', port: 3000, origin: 'http://localhost:3000' },
      relay: ['https://tunnel.example.com'],
      keyFile: join(homedir(), '.config/burrow/key.json'),
      token: 't0ken',
      deadAfterMs: 20_000,
      subdomain: 'shop',
      hostHeader: 'preserve',
      insecureLocalTls: false,
    });
    expect(api).toEqual(expect.objectContaining({ name: 'api', session: 'api', target: expect.objectContaining({ hostname: 'localhost', port: 8000 }) }));
    expect(api).not.toHaveProperty('subdomain');
  });

  test('defaults: relay from BURROW_RELAY, key from BURROW_HOME, no token, dead-after from the env', () => {
    const [f] = http('forwards: [{ name: web, http: 3000 }]', { ...ENV, BURROW_RELAY: 'http://a:1, http://b:2', BURROW_DEAD_AFTER_MS: '500' });
    expect(f?.relay).toEqual(['http://a:1', 'http://b:2']);
    expect(f?.keyFile).toBe('/home/me/.burrow/key.json');
    expect(f?.deadAfterMs).toBe(500);
    expect(f).not.toHaveProperty('token');
    expect(http('forwards: [{ name: web, http: 3000 }]', {})[0]?.relay).toEqual(['http://localhost:8080']);
    expect(http('forwards: [{ name: web, http: 3000 }]', { BURROW_RELAY: ' ' })[0]?.relay).toEqual(['http://localhost:8080']);
  });

  test('the token falls back to BURROW_TOKEN; a token in the file wins', () => {
    expect(http('forwards: [{ name: web, http: 3000 }]', { BURROW_TOKEN: 'from-env' })[0]?.token).toBe('from-env');
    expect(http('token: mine\nforwards: [{ name: web, http: 3000 }]', { BURROW_TOKEN: 'from-env' })[0]?.token).toBe('mine');
    expect(http('forwards: [{ name: web, http: 3000 }]', { BURROW_TOKEN: '' })[0]).not.toHaveProperty('token');
  });

  test('${VAR} is expanded in every string; $${ is a literal', () => {
    const [f] = http(
      `
relay: \${RELAY}
token: \${SECRET}
forwards:
  - name: web
    http: \${PORT}
    basicAuth: ["alice:\${PW}", "bob:$\${PW}"]
`,
      { RELAY: 'https://r.example.com', SECRET: 'xyz', PORT: '4000', PW: 'pw' },
    );
    expect(f?.relay).toEqual(['https://r.example.com']);
    expect(f?.token).toBe('xyz');
    expect(f?.target.port).toBe(4000);
    expect(f?.access).toEqual(accessRulesFrom({ basicAuth: ['alice:pw', 'bob:${PW}'] }));
  });

  test('every http option as a field; forward fields override the top level', () => {
    const [f] = http(`
relay: [http://a.example.com, http://b.example.com]
token: top
deadAfterMs: 1000
forwards:
  - name: full
    http: https://127.0.0.1:8443
    relay: http://c.example.com
    token: own
    key: keys/full.json
    deadAfterMs: 2000
    session: s1
    hostHeader: rewrite
    insecure: true
    basicAuth: [alice:s3cret]
    allowCidrs: [10.0.0.0/8, "192.0.2.1,192.0.2.2"]
    bearerTokens: tok
    requireHeaders: ["X-Key: v"]
`);
    expect(f).toEqual(
      expect.objectContaining({
        relay: ['http://c.example.com'],
        token: 'own',
        keyFile: '/etc/burrow/keys/full.json',
        deadAfterMs: 2000,
        session: 's1',
        hostHeader: 'rewrite',
        insecureLocalTls: true,
        access: accessRulesFrom({
          basicAuth: ['alice:s3cret'],
          allowCidrs: ['10.0.0.0/8', '192.0.2.1', '192.0.2.2'],
          headers: ['X-Key: v'],
          bearerTokens: ['tok'],
        }),
      }),
    );
    expect(f?.target.origin).toBe('https://127.0.0.1:8443');
  });

  test('JSON works too', () => {
    const c = parse('{"relay": "http://r:1", "forwards": [{"name": "a", "http": 3000}, {"name": "b", "http": "3001", "session": "b"}]}');
    expect(c.forwards.map((f) => f.name)).toEqual(['a', 'b']);
  });

  test('forwards of different keys may both go without a session; YAML anchors are followed', () => {
    const c = parse('forwards:\n  - { name: a, http: 3000, key: a.json }\n  - { name: b, http: 3001, key: b.json }\n');
    expect(c.forwards).toHaveLength(2);
    const anchored = parse('relay: &r http://r.example.com\nforwards:\n  - { name: a, http: 3000, relay: *r }\n');
    expect(anchored.forwards[0]?.relay).toEqual(['http://r.example.com']);
  });

  test('loadConfigFile reads a file; relative key paths are from its folder', () => {
    const dir = mkdtempSync(join(tmpdir(), 'burrow-config-'));
    const file = join(dir, 'burrow.yml');
    writeFileSync(file, 'key: k.json\nforwards: [{ name: web, http: 3000 }]\n');
    expect(loadConfigFile(file, {}).forwards[0]?.keyFile).toBe(join(dir, 'k.json'));
    expect(() => loadConfigFile(join(dir, 'nope.yml'), {})).toThrow(/cannot read config file .*nope\.yml/);
  });
});

describe('validation errors name the place', () => {
  test.each([
    ['', `${FILE}: the file is empty`],
    ['forwards: [', `${FILE}:1:12: Flow sequence`],
    ['a: 1\na: 2\nforwards: []', `${FILE}:2:1: Map keys must be unique`],
    ['- 1\n- 2', `${FILE}:1:1: the file must be a map of key: value`],
    ['relay: http://r', `${FILE}:1:1: no "forwards": list at least one`],
    ['forwards: {}', `${FILE}:1:11: "forwards" must be a list`],
    ['forwards: []', `${FILE}:1:11: "forwards" is empty`],
    ['forwards:\n  - 3000', `${FILE}:2:5: a forward must be a map`],
    ['forwards:\n  - http: 3000', `${FILE}:2:5: this forward has no "name"`],
    ['forwards:\n  - name: 7\n    http: 1', `${FILE}:2:11: "name" must be a string`],
    ['forwards:\n  - name: "a b"\n    http: 1', `${FILE}:2:11: forward name "a b" must be 1-63 letters`],
    ['forwards:\n  - name: web\n    subdomain: x', `${FILE}:2:5: forward "web" says nothing to forward: add "http: <port | host:port | url>"`],
    ['forwards:\n  - name: web\n    http: 1\n    tcp: 2', `forward "web" has both "http" and "tcp": one kind per forward`],
    ['forwards:\n  - name: db\n    tcp: 5432', `${FILE}:2:5: forward "db": tcp forwards are not supported yet`],
    ['forwards:\n  - name: web\n    http: 3000\n    subdomian: x', `${FILE}:4:5: unknown key "subdomian" in forward "web"; known keys:`],
    ['forwards:\n  - name: web\n    http: 3000\n    host-header: x', `unknown key "host-header" in forward "web"; did you mean "hostHeader"?`],
    ['relays: x\nforwards: [{ name: a, http: 1 }]', `${FILE}:1:1: unknown key "relays" in the top level`],
    ['forwards:\n  - name: web\n    http: 99999', `${FILE}:3:11: forward "web": http: port 99999 must be 1-65535`],
    ['forwards:\n  - name: web\n    http: ftp://x', 'http: target must be http or https'],
    ['forwards:\n  - name: web\n    http: [1]', `${FILE}:3:11: "http" must be a string`],
    ['forwards:\n  - name: web\n    http:', `${FILE}:3:5: "http" has no value`],
    ['relay: "not a url"\nforwards: [{ name: a, http: 1 }]', `${FILE}:1:8: "relay": "not a url" is not an http(s) URL`],
    ['relay: []\nforwards: [{ name: a, http: 1 }]', `${FILE}:1:8: "relay" is an empty list`],
    ['token: ""\nforwards: [{ name: a, http: 1 }]', `${FILE}:1:8: token: token must be a string`],
    ['deadAfterMs: 50\nforwards: [{ name: a, http: 1 }]', `${FILE}:1:14: "deadAfterMs": "50" must be a whole number of at least 100`],
    ['forwards: [{ name: a, http: 1, subdomain: bad_name }]', 'subdomain: subdomain "bad_name" is not a DNS label'],
    ['forwards: [{ name: a, http: 1, session: "no spaces" }]', 'session: session name "no spaces" must be'],
    ['forwards: [{ name: a, http: 1, insecure: yes }]', '"insecure" must be true or false'],
    ['forwards: [{ name: a, http: 1, basicAuth: alice }]', 'forward "a": basicAuth: basic auth must be user:password'],
    ['forwards: [{ name: a, http: 1, allowCidrs: "10.0.0.0/33" }]', 'allowCidrs: "10.0.0.0/33": the prefix length must be at most 32'],
    ['forwards: [{ name: a, http: 1, allowCidrs: "," }]', 'allowCidrs: give at least one address or CIDR'],
    ['forwards: [{ name: a, http: 1, requireHeaders: ["Host: x"] }]', 'requireHeaders: header "host" cannot carry a credential'],
    ['forwards: [{ name: a, http: 1, bearerTokens: ["a b"] }]', 'bearerTokens: a bearer token must be non-empty'],
    ['forwards: [{ name: a, http: 1, hostHeader: 3 }]', '"hostHeader" must be a string'],
    ['forwards: [{ name: a, http: "${NOPE}" }]', `${FILE}:1:29: environment variable NOPE is not set`],
    ['forwards: [{ name: a, http: "${1X}" }]', '"${1X}" is not an environment variable name'],
    ['x: !!foo 1\nforwards: [{ name: a, http: 1 }]', `${FILE}:1:4: Unresolved tag`],
  ])('%j → %s', (text, message) => {
    expect(problem(text)).toContain(message);
  });

  test('a password is never echoed', () => {
    expect(problem('forwards: [{ name: a, http: 1, basicAuth: hunter2 }]')).not.toContain('hunter2');
  });

  test('duplicate forward names point at both', () => {
    expect(problem('forwards:\n  - { name: web, http: 1 }\n  - { name: web, http: 2, session: b }')).toBe(
      `${FILE}:3:5: forward name "web" is used twice (also at ${FILE}:2:5)`,
    );
  });

  test('two forwards of one key without sessions, or with the same session, would share a URL', () => {
    expect(problem('forwards:\n  - { name: web, http: 1 }\n  - { name: api, http: 2 }')).toBe(
      `${FILE}:3:5: forwards "web" and "api" would share one URL: both use key /home/me/.burrow/key.json with no session. ` +
        'A key has one URL per session name, so give each forward of a key its own "session" (one of them may have none).',
    );
    expect(problem('forwards:\n  - { name: web, http: 1, session: s }\n  - { name: api, http: 2, session: s }')).toContain('with the same session "s"');
    expect(problem('key: k.json\nforwards:\n  - { name: web, http: 1 }\n  - { name: api, http: 2, key: ./k.json }')).toContain('would share one URL');
  });

  test('one subdomain for two forwards is refused, whatever the keys', () => {
    expect(problem('forwards:\n  - { name: a, http: 1, subdomain: Shop }\n  - { name: b, http: 2, key: b.json, subdomain: shop }')).toContain(
      'subdomain "shop" is asked for by forwards "a" and "b"',
    );
  });

  test('a bad BURROW_TOKEN, BURROW_RELAY or BURROW_DEAD_AFTER_MS used as a default is named', () => {
    const text = 'forwards: [{ name: a, http: 1 }]';
    expect(problem(text, { BURROW_TOKEN: 'x'.repeat(500) })).toContain('BURROW_TOKEN:');
    expect(problem(text, { BURROW_RELAY: 'nope' })).toContain('BURROW_RELAY');
    expect(problem(text, { BURROW_DEAD_AFTER_MS: '5' })).toContain('BURROW_DEAD_AFTER_MS');
  });
});

describe('the forward kind hook', () => {
  afterEach(() => registerForwardKind('tcp', undefined));

  test('a registered tcp kind gets its value and fields; other fields are still refused', () => {
    const seen: unknown[] = [];
    registerForwardKind('tcp', {
      fields: ['remotePort'],
      parse: (value, fields) => {
        seen.push(value, fields);
        if (value === 0) throw new Error('port 0 is not a port');
        return { port: value };
      },
      createWorker: () => {
        throw new Error('not in this test');
      },
    });
    const [db] = parse('forwards: [{ name: db, tcp: 5432, remotePort: 40000, session: db }]').forwards as ExtensionForward[];
    expect(db).toEqual(expect.objectContaining({ kind: 'tcp', name: 'db', session: 'db', options: { port: 5432 } }));
    expect(seen).toEqual([5432, { remotePort: 40000 }]);
    expect(problem('forwards: [{ name: db, tcp: 0 }]')).toContain(`${FILE}:1:29: forward "db": port 0 is not a port`);
    expect(problem('forwards: [{ name: db, tcp: 1, hostHeader: x }]')).toContain('unknown key "hostHeader" in forward "db"');
  });
});

describe('burrow start (arguments)', () => {
  test('--config or BURROW_CONFIG, and --json', () => {
    expect(parseAgentArgs(['start', '--config', 'b.yml'], {})).toEqual({ kind: 'start', configFile: 'b.yml', json: false });
    expect(parseAgentArgs(['start', '--json'], { BURROW_CONFIG: 'env.yml' })).toEqual({ kind: 'start', configFile: 'env.yml', json: true });
    expect(parseAgentArgs(['start', '--config=x.yml'], { BURROW_CONFIG: 'env.yml' })).toEqual(expect.objectContaining({ configFile: 'x.yml' }));
  });

  test.each([
    [['start'], 'start needs a config file'],
    [['start', 'b.yml'], 'unexpected argument "b.yml"'],
    [['start', '--config', 'b.yml', '--relay', 'http://x'], '--relay is not an option of start'],
    [['start', '--config', 'b.yml', '--insecure'], '--insecure is not an option of start'],
    [['http', '3000', '--config', 'b.yml'], '--config belongs to start'],
  ])('%j is a usage error: %s', (args, message) => {
    expect(() => parseAgentArgs(args, {})).toThrow(UsageError);
    expect(() => parseAgentArgs(args, {})).toThrow(message);
  });
});
