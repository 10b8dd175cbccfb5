/**
 * A relay under a path prefix (--base-path) and tunnels reachable by path on the apex host
 * (--path-routing on): real relays, real agents, real local apps on loopback.
 */
import http from 'node:http';
import { connectUrl } from '@burrow/agent';
import { accessRulesFrom } from '@burrow/protocol';
import WebSocket, { WebSocketServer } from 'ws';
import { cleanup, cleanups, freePort, hostOf, request, startApp, startRelay, startTunnel } from '../kit';

afterEach(cleanup);

/** An app that answers every request with what it saw, and echoes WebSocket messages with the path it was opened at. */
async function echoApp() {
  const { server, port } = await startApp((req, res) => {
    req.resume();
    req.on('end', () => {
      res.setHeader('content-type', 'application/json');
      res.end(JSON.stringify({ url: req.url, method: req.method, host: req.headers.host, fhost: req.headers['x-forwarded-host'] }));
    });
  });
  const wss = new WebSocketServer({ server });
  wss.on('connection', (ws, req) => {
    ws.on('message', (data, isBinary) => ws.send(isBinary ? data : `${req.url} ${data.toString()}`, { binary: isBinary }));
  });
  cleanups.push(() => {
    for (const c of wss.clients) c.terminate();
    wss.close();
  });
  return port;
}

/** A relay at /unlynx on localhost:<port> serving tunnels by path, and a tunnel through it. */
async function setup(overrides: Parameters<typeof startRelay>[0] = {}) {
  const appPort = await echoApp();
  const relay = await startRelay({ basePath: '/unlynx', pathRouting: true, tunnelUrls: 'path', ...overrides });
  const tunnel = await startTunnel(relay.url, appPort);
  return { relay, tunnel, apex: `localhost:${relay.port}` };
}

function wsOpen(url: string, host: string): Promise<{ ws: WebSocket; next: () => Promise<string> }> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, { headers: { host } });
    cleanups.push(() => ws.terminate());
    const queue: string[] = [];
    const waiters: ((m: string) => void)[] = [];
    ws.on('message', (data: Buffer) => {
      const w = waiters.shift();
      if (w) w(data.toString());
      else queue.push(data.toString());
    });
    const next = (): Promise<string> => {
      const m = queue.shift();
      return m !== undefined ? Promise.resolve(m) : new Promise((r) => waiters.push(r));
    };
    ws.once('open', () => resolve({ ws, next }));
    ws.once('error', reject);
    ws.once('unexpected-response', (_req, res) => reject(new Error(`HTTP ${res.statusCode} ${res.headers['x-burrow-error'] ?? ''}`)));
  });
}

describe('agent URL with a base path', () => {
  test.each([
    ['https://example.org/unlynx', 'wss://example.org/unlynx/_burrow/connect'],
    ['https://example.org/unlynx/', 'wss://example.org/unlynx/_burrow/connect'],
    ['http://127.0.0.1:8080/r2', 'ws://127.0.0.1:8080/r2/_burrow/connect'],
    ['wss://example.org/a/b?x=1', 'wss://example.org/a/b/_burrow/connect'],
    ['https://example.org', 'wss://example.org/_burrow/connect'],
  ])('--relay %s dials %s', (relay, dialled) => {
    expect(connectUrl(relay)).toBe(dialled);
  });
});

describe('relay under a base path', () => {
  test('an agent connects through the base path and is given the path URL; relay routes live under it', async () => {
    const { relay, tunnel, apex } = await setup();
    expect(relay.url).toBe(`http://localhost:${relay.port}/unlynx`);
    expect(tunnel.url).toBe(`http://localhost:${relay.port}/unlynx/t/${tunnel.label}/`);
    const health = await request(relay.port, apex, { path: '/unlynx/healthz' });
    expect(JSON.parse(health.text)).toMatchObject({ status: 'ok', sessions: 1 });
    // As a proxy that maps /unlynx to / passes it on (//x), and as one that strips it (/x).
    expect((await request(relay.port, apex, { path: '//healthz' })).status).toBe(200);
    expect((await request(relay.port, apex, { path: '/healthz' })).status).toBe(200);
    const home = await request(relay.port, apex, { path: '/unlynx/' });
    expect(home.text).toContain(`--relay http://localhost:${relay.port}/unlynx`);
    expect(home.text).toContain(`http://localhost:${relay.port}/unlynx/t/<label>/`);
    expect((await request(relay.port, apex, { path: '/unlynx/nope' })).headers['x-burrow-error']).toBe('BURROW_ERR_NOT_FOUND');
  });

  test('the same request by host and by /t/<label>/ reaches the app as /x?y=1', async () => {
    const { relay, tunnel, apex } = await setup();
    const byHost = await request(relay.port, `${tunnel.label}.localhost:${relay.port}`, { path: '/x?y=1' });
    const byPath = await request(relay.port, apex, { path: `/unlynx/t/${tunnel.label}/x?y=1` });
    const byRewrittenPath = await request(relay.port, apex, { path: `//t/${tunnel.label}/x?y=1` });
    for (const r of [byHost, byPath, byRewrittenPath]) {
      expect(r.status).toBe(200);
      expect(JSON.parse(r.text)).toMatchObject({ url: '/x?y=1', method: 'GET' });
    }
    // By path the app sees the apex host, as the visitor sent it.
    expect(JSON.parse(byPath.text)).toMatchObject({ host: apex, fhost: apex });
    const post = await request(relay.port, apex, { method: 'POST', path: `/unlynx/t/${tunnel.label}/`, body: 'hello' });
    expect(JSON.parse(post.text)).toMatchObject({ url: '/', method: 'POST' });
  });

  test('<base>/t/<label> redirects (308) to the slashed URL, query kept', async () => {
    const { relay, tunnel, apex } = await setup();
    const r = await request(relay.port, apex, { path: `/unlynx/t/${tunnel.label}?a=1` });
    expect(r.status).toBe(308);
    expect(r.headers.location).toBe(`/unlynx/t/${tunnel.label}/?a=1`);
    // Through a //-rewriting proxy the redirect still names the public path.
    expect((await request(relay.port, apex, { path: `//t/${tunnel.label}` })).headers.location).toBe(`/unlynx/t/${tunnel.label}/`);
  });

  test('bad names and unknown tunnels by path are answered like by host', async () => {
    const { relay, apex } = await setup();
    const bad = await request(relay.port, apex, { path: '/unlynx/t/not_a_label/x', headers: { accept: 'application/json' } });
    expect([bad.status, bad.headers['x-burrow-error']]).toEqual([404, 'BURROW_ERR_UNKNOWN_TUNNEL']);
    const label = 'a'.repeat(52);
    const byPath = await request(relay.port, apex, { path: `/unlynx/t/${label}/` });
    const byHost = await request(relay.port, `${label}.localhost:${relay.port}`, { path: '/' });
    expect([byPath.status, byPath.headers['x-burrow-error']]).toEqual([byHost.status, byHost.headers['x-burrow-error']]);
  });

  test('a WebSocket through /t/<label>/ws reaches the app at /ws, as by host', async () => {
    const { relay, tunnel, apex } = await setup();
    const byPath = await wsOpen(`ws://127.0.0.1:${relay.port}/unlynx/t/${tunnel.label}/ws?room=1`, apex);
    byPath.ws.send('hi');
    expect(await byPath.next()).toBe('/ws?room=1 hi');
    const byHost = await wsOpen(`ws://127.0.0.1:${relay.port}/ws`, hostOf(`http://${tunnel.label}.localhost:${relay.port}`));
    byHost.ws.send('there');
    expect(await byHost.next()).toBe('/ws there');
    // Without the slash: WebSocket clients do not follow redirects, so it opens at /.
    const bare = await wsOpen(`ws://127.0.0.1:${relay.port}/unlynx/t/${tunnel.label}`, apex);
    bare.ws.send('x');
    expect(await bare.next()).toBe('/ x');
    await expect(wsOpen(`ws://127.0.0.1:${relay.port}/unlynx/t/bad_name/ws`, apex)).rejects.toThrow('HTTP 404 BURROW_ERR_UNKNOWN_TUNNEL');
  });

  test('by path, the tunnel’s access rules apply as by host', async () => {
    const appPort = await echoApp();
    const relay = await startRelay({ basePath: '/unlynx', pathRouting: true });
    const tunnel = await startTunnel(relay.url, appPort, { access: accessRulesFrom({ basicAuth: ['ann:s3cret'] }) });
    const apex = `localhost:${relay.port}`;
    const path = `/unlynx/t/${tunnel.label}/x`;
    expect((await request(relay.port, apex, { path })).status).toBe(401);
    const ok = await request(relay.port, apex, { path, headers: { authorization: `Basic ${Buffer.from('ann:s3cret').toString('base64')}` } });
    expect([ok.status, JSON.parse(ok.text).url]).toEqual([200, '/x']);
  });

  test('path routing off (the default): /t/<label>/ is no tunnel, agents get host URLs', async () => {
    const appPort = await echoApp();
    const relay = await startRelay({ basePath: '/unlynx' });
    const tunnel = await startTunnel(relay.url, appPort);
    expect(tunnel.url).toBe(`http://${tunnel.label}.localhost:${relay.port}`);
    const r = await request(relay.port, `localhost:${relay.port}`, { path: `/unlynx/t/${tunnel.label}/x` });
    expect([r.status, r.headers['x-burrow-error']]).toEqual([404, 'BURROW_ERR_NOT_FOUND']);
    expect(JSON.parse((await request(relay.port, hostOf(tunnel.url), { path: '/unlynx/x' })).text).url).toBe('/unlynx/x');
  });

  test('--public-url with the base path: tunnel URLs from it, the agent dials another name', async () => {
    const appPort = await echoApp();
    const port = await freePort();
    const relay = await startRelay({
      port,
      domain: 'example.org',
      publicUrl: 'https://example.org/unlynx',
      basePath: '/unlynx',
      pathRouting: true,
      tunnelUrls: 'path',
      extraAudiences: [`127.0.0.1:${port}`],
    });
    expect(relay.url).toBe('https://example.org/unlynx');
    const tunnel = await startTunnel(`http://127.0.0.1:${port}/unlynx`, appPort);
    expect(tunnel.url).toBe(`https://example.org/unlynx/t/${tunnel.label}/`);
    const r = await request(port, 'example.org', { path: `/unlynx/t/${tunnel.label}/deep/path` });
    expect(JSON.parse(r.text).url).toBe('/deep/path');
  });

  test('a relay with no base path still serves /t/<label>/ when path routing is on', async () => {
    const appPort = await echoApp();
    const relay = await startRelay({ pathRouting: true });
    const tunnel = await startTunnel(relay.url, appPort);
    const r = await new Promise<http.IncomingMessage>((resolve, reject) =>
      http
        .get({ host: '127.0.0.1', port: relay.port, path: `/t/${tunnel.label}/a?b=c`, headers: { host: `localhost:${relay.port}` } }, resolve)
        .on('error', reject),
    );
    let body = '';
    for await (const c of r) body += c;
    expect(JSON.parse(body).url).toBe('/a?b=c');
  });
});
