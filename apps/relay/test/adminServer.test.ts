/**
 * The admin listener on port 0: /metrics, /readyz in each state, /healthz, 404s, HEAD, and a
 * clear error when the address is taken.
 */
import http from 'node:http';
import net, { type AddressInfo } from 'node:net';
import { AdminListenError, type AdminServer, parseListen, type ReadinessState, readiness, startAdminServer } from '../src/adminServer';
import { RelayMetrics } from '../src/metrics';

const metrics = new RelayMetrics({
  nodeId: 'n1',
  version: 'v',
  processMetrics: false,
  sources: {
    relayStats: () => ({ sessions: 0, activeSessions: 0, tunnels: 0, ingressStreams: 0, agentStreams: 0 }),
    busStats: () => ({ published: 0, publishedBytes: 0, received: 0, receivedBytes: 0, undelivered: 0, errors: 0 }),
    busUp: () => true,
    draining: () => false,
  },
});

function get(url: string, method = 'GET'): Promise<{ status: number; type: string | undefined; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method, agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => {
        body += c;
      });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, type: res.headers['content-type'], body }));
    });
    req.on('error', reject);
    req.end();
  });
}

const servers: AdminServer[] = [];
afterEach(async () => {
  for (const s of servers.splice(0)) await s.close();
});

async function start(state: () => ReadinessState): Promise<AdminServer> {
  const s = await startAdminServer({ listen: '127.0.0.1:0', nodeId: 'n1', metrics, readiness: state });
  servers.push(s);
  return s;
}

const READY: ReadinessState = { listening: true, busUp: true, draining: false, closing: false };

describe('readiness', () => {
  test('ready only when listening, bus up, not draining and not closing; the most decisive reason wins', () => {
    expect(readiness(READY)).toEqual({ ready: true });
    expect(readiness({ ...READY, busUp: false })).toMatchObject({ ready: true, degraded: { reason: 'bus-down' } });
    expect(readiness({ ...READY, listening: false, busUp: false })).toMatchObject({ ready: false, reason: 'not-listening' });
    expect(readiness({ ...READY, draining: true, listening: false })).toMatchObject({ ready: false, reason: 'draining' });
    expect(readiness({ ...READY, draining: true, closing: true })).toMatchObject({ ready: false, reason: 'closing' });
  });
});

describe('admin server', () => {
  test('serves /metrics as Prometheus text', async () => {
    const s = await start(() => READY);
    expect(s.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    const r = await get(`${s.url}/metrics`);
    expect(r.status).toBe(200);
    expect(r.type).toMatch(/^text\/plain; version=0\.0\.4/);
    expect(r.body).toContain('burrow_relay_info{node="n1",version="v"} 1');
  });

  test('/readyz follows the readiness state; /healthz is always 200', async () => {
    let state: ReadinessState = READY;
    const s = await start(() => state);
    let r = await get(`${s.url}/readyz`);
    expect(r.status).toBe(200);
    expect(JSON.parse(r.body)).toEqual({ status: 'ready', node: 'n1' });
    state = { ...READY, draining: true };
    r = await get(`${s.url}/readyz`);
    expect(r.status).toBe(503);
    expect(JSON.parse(r.body)).toMatchObject({ status: 'not ready', node: 'n1', reason: 'draining' });
    expect((await get(`${s.url}/healthz`)).status).toBe(200);
    expect(JSON.parse((await get(`${s.url}/healthz`)).body)).toEqual({ status: 'ok', node: 'n1' });
  });

  test('HEAD answers without a body; other paths and methods are 404 JSON; queries are ignored', async () => {
    const s = await start(() => READY);
    const head = await get(`${s.url}/readyz`, 'HEAD');
    expect(head.status).toBe(200);
    expect(head.body).toBe('');
    const missing = await get(`${s.url}/nope`);
    expect(missing.status).toBe(404);
    expect(JSON.parse(missing.body).error).toBe('not found');
    expect((await get(`${s.url}/metrics`, 'POST')).status).toBe(404);
    expect((await get(`${s.url}/readyz?verbose=1`)).status).toBe(200);
  });

  test('a taken address fails with AdminListenError naming it', async () => {
    const blocker = net.createServer();
    await new Promise<void>((r) => blocker.listen(0, '127.0.0.1', r));
    const port = (blocker.address() as AddressInfo).port;
    try {
      const attempt = startAdminServer({ listen: `127.0.0.1:${port}`, nodeId: 'n1', metrics, readiness: () => READY });
      await expect(attempt).rejects.toThrow(AdminListenError);
      await expect(attempt).rejects.toThrow(`127.0.0.1:${port}: EADDRINUSE`);
    } finally {
      await new Promise<void>((r) => blocker.close(() => r()));
    }
  });

  test('close is idempotent', async () => {
    const s = await startAdminServer({ listen: '127.0.0.1:0', nodeId: 'n1', metrics, readiness: () => READY });
    await Promise.all([s.close(), s.close()]);
    await s.close();
    await expect(get(`${s.url}/healthz`)).rejects.toThrow();
  });

  test('parseListen takes host:port and bracketed IPv6', () => {
    expect(parseListen('127.0.0.1:9091')).toEqual({ host: '127.0.0.1', port: 9091 });
    expect(parseListen('[::1]:0')).toEqual({ host: '::1', port: 0 });
    expect(() => parseListen('9091')).toThrow(AdminListenError);
  });
});
