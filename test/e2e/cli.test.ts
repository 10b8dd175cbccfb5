import { mkdtempSync, readFileSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { keyPairFromJwk, labelFor } from '@burrow/protocol';
import { RELAY_OPTIONS } from '@burrow/relay';
import { cleanup, freePort, request, runNode, startApp, startRelay, waitFor } from '../kit';

const ROOT = join(__dirname, '..', '..');
const AGENT_BIN = join(ROOT, 'apps/agent/dist/bin.js');
const RELAY_BIN = join(ROOT, 'apps/relay/dist/main.js');

afterEach(cleanup);

const home = (): string => mkdtempSync(join(tmpdir(), 'burrow-test-'));

describe('burrow (agent CLI)', () => {
  test('--json prints online first, then one line per request; SIGTERM tells the relay and exits 0', async () => {
    const { port: appPort } = await startApp((req, res) => res.end(`hi ${req.url}`));
    const relay = await startRelay();
    const dir = home();
    const agent = runNode(AGENT_BIN, ['http', String(appPort), '--relay', relay.url, '--json'], { BURROW_HOME: dir });
    await waitFor(() => agent.lines.length > 0, 8000, 'online line');
    const online = JSON.parse(agent.lines[0] as string);
    expect(online).toEqual({
      event: 'online',
      url: expect.stringMatching(/^http:\/\/[a-z2-7]{52}\.localhost:\d+$/),
      label: expect.stringMatching(/^[a-z2-7]{52}$/),
    });
    const r = await request(relay.port, new URL(online.url).host, { path: '/x?y=1' });
    expect(r.text).toBe('hi /x?y=1');
    await waitFor(() => agent.lines.length > 1, 3000, 'request line');
    expect(JSON.parse(agent.lines[1] as string)).toEqual(expect.objectContaining({ event: 'request', method: 'GET', path: '/x?y=1', status: 200 }));
    // The key was created 0600 and names the label.
    const keyPath = join(dir, 'key.json');
    expect(statSync(keyPath).mode & 0o777).toBe(0o600);
    expect(labelFor(keyPairFromJwk(JSON.parse(readFileSync(keyPath, 'utf8'))).publicKey)).toBe(online.label);
    agent.child.kill('SIGTERM');
    expect(await agent.exit).toBe(0);
    await waitFor(() => relay.relay.stats().sessions === 0, 3000, 'session closed at the relay');
  });

  test('human output shows the URL, the target and a line per request; the same key gets the same URL', async () => {
    const { port: appPort } = await startApp((_req, res) => {
      res.statusCode = 201;
      res.end('made');
    });
    const relay = await startRelay();
    const dir = home();
    const first = runNode(AGENT_BIN, ['http', `127.0.0.1:${appPort}`, '--relay', relay.url], { BURROW_HOME: dir });
    await waitFor(() => first.lines.some((l) => l.includes('→')), 8000, 'URL line');
    const urlLine = first.lines.find((l) => l.includes('→')) as string;
    const url = (urlLine.match(/http:\/\/\S+/) as RegExpMatchArray)[0];
    expect(urlLine).toContain(`http://127.0.0.1:${appPort}`);
    expect((await request(relay.port, new URL(url).host, { method: 'POST', path: '/items' })).status).toBe(201);
    await waitFor(() => first.lines.some((l) => l.startsWith('POST')), 3000, 'request line');
    expect(first.lines.find((l) => l.startsWith('POST'))).toMatch(/^POST\s+\/items\s+201 \d+(\.\d)? ms$/);
    first.child.kill('SIGINT');
    expect(await first.exit).toBe(0);
    const second = runNode(AGENT_BIN, ['http', `127.0.0.1:${appPort}`, '--relay', relay.url], { BURROW_HOME: dir });
    await waitFor(() => second.lines.some((l) => l.includes('→')), 8000, 'URL line');
    expect(second.lines.find((l) => l.includes('→'))).toContain(url);
  });

  test('a killed agent: a response in progress is cut, a request waiting for its head gets 502 at once', async () => {
    let partial: import('node:http').ServerResponse | undefined;
    let waiting = false;
    const { port: appPort } = await startApp((req, res) => {
      if (req.url === '/partial') {
        res.writeHead(200, { 'content-type': 'text/plain' });
        res.write('first half');
        partial = res;
      } else waiting = true;
    });
    const relay = await startRelay({ requestTimeoutMs: 60_000 });
    const agent = runNode(AGENT_BIN, ['http', String(appPort), '--relay', relay.url, '--json'], { BURROW_HOME: home() });
    await waitFor(() => agent.lines.length > 0, 8000, 'online line');
    const host = new URL(JSON.parse(agent.lines[0] as string).url).host;
    const http = await import('node:http');
    let gotFirstHalf = false;
    const cut = new Promise<{ status: number; complete: boolean; body: string }>((resolve) => {
      const req = http.request({ host: '127.0.0.1', port: relay.port, path: '/partial', headers: { host } }, (res) => {
        let body = '';
        res.on('data', (c: Buffer) => {
          body += c.toString();
          gotFirstHalf = body === 'first half';
        });
        res.on('error', () => {});
        res.on('close', () => resolve({ status: res.statusCode ?? 0, complete: res.complete, body }));
      });
      req.on('error', () => {});
      req.end();
    });
    const headless = request(relay.port, host, { path: '/wait' });
    await waitFor(() => partial !== undefined && gotFirstHalf && waiting, 3000, 'the first half through and the second request at the app');
    agent.child.kill('SIGKILL');
    const [a, b] = await Promise.all([cut, headless]);
    expect(a).toEqual({ status: 200, complete: false, body: 'first half' });
    expect(b.status).toBe(502);
    expect(b.headers['x-burrow-error']).toBe('BURROW_ERR_AGENT_DISCONNECTED');
    await waitFor(() => relay.relay.stats().ingressStreams === 0 && relay.relay.stats().sessions === 0, 3000, 'relay clean');
  });

  test.each([
    [['http'], 'missing target'],
    [['http', '99999'], 'port'],
    [['ftp', '3000'], 'unknown command'],
    [['http', '3000', '--nope'], 'unknown option'],
    [['http', '3000', '--relay', 'not a url'], '--relay'],
    [['http', '3000', '--subdomain', 'bad_name'], 'DNS label'],
    [[], 'missing command'],
  ])('bad arguments %j exit 2 with a clear message', async (args, message) => {
    const r = runNode(AGENT_BIN, args, { BURROW_HOME: home() });
    expect(await r.exit).toBe(2);
    expect(r.stderr()).toContain(message);
    expect(r.stderr()).toContain('Usage: burrow http');
  });

  test('--help lists the options and exits 0', async () => {
    const r = runNode(AGENT_BIN, ['--help']);
    expect(await r.exit).toBe(0);
    const text = r.lines.join('\n');
    for (const flag of ['--relay', '--subdomain', '--session', '--key', '--json', 'BURROW_RELAY']) expect(text).toContain(flag);
  });
});

describe('burrow-relay (relay CLI)', () => {
  test('--help lists every option with its env var and default', async () => {
    const r = runNode(RELAY_BIN, ['--help']);
    expect(await r.exit).toBe(0);
    const text = r.lines.join('\n');
    for (const o of RELAY_OPTIONS) {
      expect(text).toContain(o.flag);
      expect(text).toContain(`env ${o.env}, default ${o.defaultText}`);
    }
  });

  test.each([
    [['--port', 'abc'], {}, 'not a whole number'],
    [['--port', '70000'], {}, 'outside'],
    [['--bogus'], {}, 'unknown option'],
    [[], { BURROW_MAX_BODY_BYTES: '-5' }, 'BURROW_MAX_BODY_BYTES'],
    [['--public-url', 'https://other.example.com'], {}, '--public-url'],
    [['--log-level', 'loud'], {}, 'not one of'],
  ])('bad configuration %j %j exits 2', async (args, env, message) => {
    const r = runNode(RELAY_BIN, args, env as Record<string, string>);
    expect(await r.exit).toBe(2);
    expect(r.stderr()).toContain(message);
  });

  test('starts from env, serves /healthz, exits 0 on SIGTERM', async () => {
    const relay = runNode(RELAY_BIN, ['--host', '127.0.0.1', '--port', '0', '--log-level', 'info']);
    await waitFor(() => relay.lines.some((l) => l.includes('ready at')), 8000, 'ready line');
    const ready = JSON.parse(relay.lines.find((l) => l.includes('ready at')) as string);
    const listening = relay.lines.map((l) => JSON.parse(l)).find((l) => typeof l.msg === 'string' && l.msg.startsWith('Server listening at'));
    const port = Number(new URL(listening.msg.replace('Server listening at ', '')).port);
    expect(ready.node).toEqual(expect.any(String));
    const health = await request(port, `localhost:${port}`, { path: '/healthz' });
    expect(JSON.parse(health.text).status).toBe('ok');
    relay.child.kill('SIGTERM');
    expect(await relay.exit).toBe(0);
  });

  test('a Redis that does not answer at start: a clear message and exit 1 (bound: 8 s)', async () => {
    const deadPort = await freePort();
    const started = Date.now();
    const relay = runNode(RELAY_BIN, ['--host', '127.0.0.1', '--port', '0', '--redis', `redis://127.0.0.1:${deadPort}`, '--admin-listen', 'off']);
    expect(await relay.exit).toBe(1);
    expect(relay.stderr()).toMatch(/^burrow-relay: cannot reach Redis at redis:\/\/127\.0\.0\.1:\d+.*ECONNREFUSED/m);
    expect(relay.stderr()).not.toMatch(/\n\s+at /); // a message, not a stack trace
    expect(Date.now() - started).toBeLessThan(8000);
  }, 15_000);
});

describe('burrow --key', () => {
  test('uses the given key file, creating it 0600 in a new folder', async () => {
    const { port: appPort } = await startApp((_req, res) => res.end('k'));
    const relay = await startRelay();
    const keyPath = join(home(), 'nested', 'my-key.json');
    const agent = runNode(AGENT_BIN, ['http', String(appPort), '--relay', relay.url, '--json', '--key', keyPath], { BURROW_HOME: home() });
    await waitFor(() => agent.lines.length > 0, 8000, 'online line');
    const online = JSON.parse(agent.lines[0] as string);
    expect(statSync(keyPath).mode & 0o777).toBe(0o600);
    expect(online.label).toBe(labelFor(keyPairFromJwk(JSON.parse(readFileSync(keyPath, 'utf8'))).publicKey));
  });

  test('a corrupt key file is a clear error, exit 2', async () => {
    const dir = home();
    const keyPath = join(dir, 'key.json');
    require('node:fs').writeFileSync(keyPath, '{"kty":"OKP"}', { mode: 0o600 });
    const r = runNode(AGENT_BIN, ['http', '3000', '--key', keyPath]);
    expect(await r.exit).toBe(2);
    expect(r.stderr()).toContain('not a valid Ed25519 JWK');
  });
});

describe('npm run demo (the quickstart)', () => {
  test('starts relay, example app and agent, and the printed curl line reaches the app', async () => {
    const [relayPort, appPort] = [await freePort(), await freePort()];
    const demo = runNode(join(ROOT, 'examples/demo.js'), [], { BURROW_PORT: String(relayPort), DEMO_APP_PORT: String(appPort), BURROW_HOME: home() });
    await waitFor(() => demo.lines.some((l) => l.includes("curl -H 'Host: ")), 15_000, 'the curl line');
    const line = demo.lines.find((l) => l.includes("curl -H 'Host: ")) as string;
    const host = (line.match(/Host: ([^']+)'/) as RegExpMatchArray)[1] as string;
    expect(line).toContain(`http://127.0.0.1:${relayPort}/`);
    const r = await request(relayPort, host);
    expect(r.status).toBe(200);
    expect(r.text).toContain('Hello through burrow');
    demo.child.kill('SIGTERM');
    expect(await demo.exit).toBe(0);
  }, 30_000);
});
