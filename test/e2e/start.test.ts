/**
 * `burrow start --config <file>`: the shipped binary (built by tsc -b) running several forwards
 * from one config file against a real relay and real local apps.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { cleanup, type NodeRun, newKey, request, runNode, startApp, startRelay, startTunnel, waitFor } from '../kit';

const AGENT_BIN = join(__dirname, '..', '..', 'apps/agent/dist/bin.js');

afterEach(cleanup);

interface Run extends NodeRun {
  events: () => Record<string, unknown>[];
}

function start(config: string, args: string[] = ['--json'], env: Record<string, string> = {}): Run {
  const dir = mkdtempSync(join(tmpdir(), 'burrow-start-'));
  const file = join(dir, 'burrow.yml');
  writeFileSync(file, config);
  const r = runNode(AGENT_BIN, ['start', '--config', file, ...args], { BURROW_HOME: dir, BURROW_TOKEN: '', BURROW_RELAY: '', ...env });
  return { ...r, events: () => r.lines.map((l) => JSON.parse(l)) };
}

const onlineOf = (run: Run, forward: string, event = 'online'): Record<string, unknown> | undefined =>
  run.events().find((e) => e.event === event && e.forward === forward);

describe('burrow start --config', () => {
  test('two forwards come online, each reachable at its URL; SIGTERM stops both at the relay and exits 0', async () => {
    const web = await startApp((req, res) => res.end(`web ${req.url}`));
    const api = await startApp((req, res) => res.end(`api ${req.url}`));
    const relay = await startRelay();
    const run = start(`
relay: ${relay.url}
forwards:
  - name: web
    http: ${web.port}
    subdomain: shop
  - name: api
    http: 127.0.0.1:${api.port}
    session: api
    basicAuth: [alice:s3cret]
`);
    await waitFor(() => onlineOf(run, 'web') !== undefined && onlineOf(run, 'api') !== undefined, 8000, 'both online');
    const webOnline = onlineOf(run, 'web') as { url: string; labelUrl: string; label: string };
    const apiOnline = onlineOf(run, 'api') as { url: string; label: string };
    expect(new URL(webOnline.url).hostname).toBe('shop.localhost');
    expect(webOnline.labelUrl).toMatch(/^http:\/\/[a-z2-7]{52}\.localhost:\d+$/);
    expect(apiOnline.label).not.toBe(webOnline.label);
    expect((await request(relay.port, new URL(webOnline.url).host, { path: '/a' })).text).toBe('web /a');
    expect((await request(relay.port, new URL(webOnline.labelUrl).host, { path: '/b' })).text).toBe('web /b');
    const apiHost = new URL(apiOnline.url).host;
    expect((await request(relay.port, apiHost, { path: '/c' })).status).toBe(401);
    const auth = `Basic ${Buffer.from('alice:s3cret').toString('base64')}`;
    expect((await request(relay.port, apiHost, { path: '/c', headers: { authorization: auth } })).text).toBe('api /c');
    await waitFor(() => run.events().some((e) => e.event === 'request' && e.forward === 'api' && e.path === '/c'), 3000, 'request line');
    expect(relay.relay.stats().sessions).toBe(2);
    run.child.kill('SIGTERM');
    expect(await run.exit).toBe(0);
    await waitFor(() => relay.relay.stats().sessions === 0, 3000, 'both sessions closed at the relay');
  });

  test('human output: one line per forward with its URL and target', async () => {
    const web = await startApp((_req, res) => res.end('w'));
    const relay = await startRelay();
    const run = start(`relay: ${relay.url}\nforwards:\n  - { name: website, http: ${web.port} }\n`, []);
    await waitFor(() => run.lines.some((l) => l.includes('→')), 8000, 'URL line');
    expect(run.lines.find((l) => l.includes('→'))).toMatch(
      new RegExp(`^website  online  http://[a-z2-7]{52}\\.localhost:${relay.port}  →  http://localhost:${web.port}$`),
    );
    run.child.kill('SIGINT');
    expect(await run.exit).toBe(0);
  });

  test('a subdomain bound to another key: exit 1 at once, naming the forward; the other forward is stopped', async () => {
    const app = await startApp((_req, res) => res.end('x'));
    const relay = await startRelay();
    await startTunnel(relay.url, app.port, { keyPair: newKey(), subdomain: 'taken' });
    const run = start(`
relay: ${relay.url}
forwards:
  - { name: fine, http: ${app.port} }
  - { name: clash, http: ${app.port}, session: clash, subdomain: taken }
`);
    expect(await run.exit).toBe(1);
    expect(run.events()).toContainEqual(expect.objectContaining({ event: 'error', forward: 'clash', code: 'BURROW_ERR_NAME_TAKEN', why: 'unfixable' }));
    expect(run.stderr()).toContain('forward "clash" cannot run: BURROW_ERR_NAME_TAKEN');
    await waitFor(() => relay.relay.stats().sessions === 1, 3000, 'only the other key left at the relay');
  });

  test('the relay restarting on the same port: every forward reconnects by itself', async () => {
    const app = await startApp((_req, res) => res.end('back'));
    const first = await startRelay();
    const run = start(`
relay: ${first.url}
forwards:
  - { name: a, http: ${app.port} }
  - { name: b, http: ${app.port}, session: b }
`);
    await waitFor(() => onlineOf(run, 'a') !== undefined && onlineOf(run, 'b') !== undefined, 8000, 'both online');
    await first.relay.close();
    const second = await startRelay({ port: first.port });
    await waitFor(() => onlineOf(run, 'a', 'reconnected') !== undefined && onlineOf(run, 'b', 'reconnected') !== undefined, 10_000, 'both reconnected');
    expect(onlineOf(run, 'a', 'reconnected')?.url).toBe(onlineOf(run, 'a')?.url);
    expect((await request(second.port, new URL(onlineOf(run, 'b')?.url as string).host)).text).toBe('back');
    expect(run.events().some((e) => e.event === 'restarting' || e.event === 'error')).toBe(false);
    run.child.kill('SIGTERM');
    expect(await run.exit).toBe(0);
  }, 30_000);

  test.each([
    ['forwards: []\n', [], /burrow\.yml:1:11: "forwards" is empty/],
    ['forwards:\n  - { name: a, http: 1 }\n  - { name: b, http: 2 }\n', [], /burrow\.yml:3:5: forwards "a" and "b" would share one URL/],
    ['forwards:\n  - { name: db, tcp: 0 }\n', [], /forward "db": tcp: port 0 must be 1-65535/],
    ['forwards: [{ name: a, http: 1 }]\n', ['--relay', 'http://x'], /--relay is not an option of start/],
  ])('bad config %j %j exits 2 with the problem', async (config, args, message) => {
    const run = start(config, args);
    expect(await run.exit).toBe(2);
    expect(run.stderr()).toMatch(message);
  });

  test('BURROW_CONFIG names the file when --config is not given', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'burrow-start-'));
    const file = join(dir, 'from-env.yml');
    writeFileSync(file, 'forwards: []\n');
    const child = spawn(process.execPath, [AGENT_BIN, 'start'], {
      env: { ...process.env, BURROW_CONFIG: file, BURROW_HOME: dir },
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    let err = '';
    child.stderr?.on('data', (c: Buffer) => {
      err += c.toString();
    });
    expect(await new Promise((resolve) => child.on('exit', resolve))).toBe(2);
    expect(err).toContain('from-env.yml:1:11');
  });
});
