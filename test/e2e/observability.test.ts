/**
 * Observability end to end: a real relay with its admin listener on port 0, a real agent and
 * local app. Requests of each outcome, then /metrics scraped over HTTP; /readyz through bus loss,
 * draining and close; access-log lines from a logger passed to buildRelay, with the visitor's
 * address believed only from a trusted proxy.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { MemoryBus } from '@burrow/bus';
import { buildRelay, type RelayConfig, relayConfig } from '@burrow/relay';
import Fastify from 'fastify';
import WebSocket, { WebSocketServer } from 'ws';
import { cleanup, cleanups, hostOf, request, startApp, startTunnel, waitFor } from '../kit';

afterEach(cleanup);

type Line = Record<string, unknown>;

async function startObservedRelay(overrides: Partial<RelayConfig> = {}, bus?: MemoryBus) {
  const lines: Line[] = [];
  const logger = Fastify({ logger: { level: 'info', stream: { write: (l: string) => lines.push(JSON.parse(l)) } } }).log;
  const config = relayConfig({ host: '127.0.0.1', port: 0, adminListen: '127.0.0.1:0', ...overrides });
  const relay = await buildRelay(config, { logger, ...(bus === undefined ? {} : { bus }) });
  const url = await relay.listen();
  cleanups.push(() => relay.close());
  const admin = relay.adminUrl();
  if (admin === undefined) throw new Error('no admin listener');
  const port = (relay.app.server.address() as AddressInfo).port;
  return { relay, url, port, admin, lines, access: () => lines.filter((l) => l.msg === 'access') };
}

function get(url: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    http
      .get(url, { agent: false }, (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => {
          body += c;
        });
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      })
      .on('error', reject);
  });
}

/** Samples of a scrape, by series as printed (`name{labels}`). */
async function scrape(admin: string): Promise<Map<string, number>> {
  const r = await get(`${admin}/metrics`);
  expect(r.status).toBe(200);
  const out = new Map<string, number>();
  for (const line of r.body.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const i = line.lastIndexOf(' ');
    out.set(line.slice(0, i), Number(line.slice(i + 1)));
  }
  return out;
}

async function appWithWebSocket(): Promise<number> {
  const { server, port } = await startApp((req, res) => {
    if (req.url === '/missing') {
      res.writeHead(404, { 'content-type': 'text/plain' });
      res.end('nope');
    } else if (req.method === 'POST') {
      req.pipe(res);
    } else if (req.url === '/hang') {
      // Never answers: the client gives up.
    } else res.end('hello');
  });
  const wss = new WebSocketServer({ server });
  wss.on('connection', (ws) => ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary })));
  cleanups.push(() => {
    for (const c of wss.clients) c.terminate();
    wss.close();
  });
  return port;
}

const REQ = (kind: string, cls: string): string => `burrow_requests_total{kind="${kind}",status_class="${cls}"}`;

describe('observability', () => {
  test('/metrics counts each request once by status class, with bytes, latency, tunnels and registrations', async () => {
    const appPort = await appWithWebSocket();
    const r = await startObservedRelay({ maxBodyBytes: 1000, accessLog: false });
    const tunnel = await startTunnel(r.url, appPort);
    const host = hostOf(tunnel.url);

    expect((await request(r.port, host)).status).toBe(200); // 5 bytes out
    expect((await request(r.port, host, { path: '/missing' })).status).toBe(404); // 4 bytes out
    expect((await request(r.port, host, { method: 'POST', body: Buffer.alloc(100, 1) })).status).toBe(200); // 100 in, 100 out
    expect((await request(r.port, `nosuchtunnel.${new URL(r.url).host}`)).status).toBe(404);
    expect((await request(r.port, host, { method: 'POST', body: Buffer.alloc(1001) })).status).toBe(413);

    // One WebSocket: 4 bytes of payload each way plus framing (client frames are masked).
    const ws = new WebSocket(`ws://127.0.0.1:${r.port}/`, { headers: { host } });
    cleanups.push(() => ws.terminate());
    await new Promise<void>((resolve, reject) => {
      ws.once('open', () => ws.send('ping'));
      ws.once('message', () => {
        ws.close(1000);
        resolve();
      });
      ws.once('error', reject);
    });

    let m = new Map<string, number>();
    await waitFor(
      async () => {
        m = await scrape(r.admin);
        return m.get(REQ('websocket', '1xx')) === 1;
      },
      5000,
      'the WebSocket to be counted',
    );
    expect(m.get(REQ('http', '2xx'))).toBe(2);
    expect(m.get(REQ('http', '4xx'))).toBe(3);
    expect(m.get(REQ('http', '5xx'))).toBe(0);
    expect(m.get(REQ('http', '1xx'))).toBe(0);
    expect(m.get('burrow_received_bytes_total{kind="http"}')).toBe(100);
    expect(m.get('burrow_sent_bytes_total{kind="http"}')).toBe(109);
    expect(m.get('burrow_request_head_seconds_count{kind="http"}')).toBe(5);
    expect(m.get('burrow_request_duration_seconds_count{kind="http"}')).toBe(5);
    expect(m.get('burrow_request_head_seconds_count{kind="websocket"}')).toBe(1);
    // "ping" masked: 2 header + 4 mask + 4 payload; close frame 2 + 4 + 2.
    expect(m.get('burrow_received_bytes_total{kind="websocket"}')).toBeGreaterThanOrEqual(10);
    expect(m.get('burrow_sent_bytes_total{kind="websocket"}')).toBeGreaterThanOrEqual(6);
    expect(m.get('burrow_tunnels')).toBe(1);
    expect(m.get('burrow_agent_sessions{state="registered"}')).toBe(1);
    expect(m.get('burrow_agent_registrations_total{kind="new"}')).toBe(1);
    expect(m.get('burrow_streams_open{side="ingress"}')).toBe(0);
    expect(m.get('burrow_bus_up')).toBe(1);
    expect(m.get('burrow_draining')).toBe(0);
    expect(m.get('burrow_bus_published_messages_total')).toBeGreaterThan(0);
    expect(m.get(`burrow_relay_info{node="${r.relay.nodeId}",version="0.1.0"}`)).toBe(1);
    expect(m.get('burrow_process_resident_memory_bytes')).toBeGreaterThan(0);

    // Scraping again counts nothing new.
    const again = await scrape(r.admin);
    expect(again.get(REQ('http', '2xx'))).toBe(2);

    await tunnel.close();
    await waitFor(async () => ((await scrape(r.admin)).get('burrow_tunnels') ?? -1) === 0, 5000, 'the tunnel gone from the gauge');
    const after = await scrape(r.admin);
    const disconnects = [...after].filter(([k]) => k.startsWith('burrow_agent_disconnects_total{')).reduce((n, [, v]) => n + v, 0);
    expect(disconnects).toBe(1);
  });

  test('/readyz: 200 when serving, 503 while the bus is down and while draining; gone after close', async () => {
    class SwitchableBus extends MemoryBus {
      up = true;
      override isUp(): boolean {
        return this.up;
      }
    }
    const bus = new SwitchableBus('ready-node');
    const r = await startObservedRelay({}, bus);
    let ready = await get(`${r.admin}/readyz`);
    expect(ready.status).toBe(200);
    expect(JSON.parse(ready.body)).toEqual({ status: 'ready', node: 'ready-node' });
    expect((await get(`${r.admin}/healthz`)).status).toBe(200);

    bus.up = false;
    ready = await get(`${r.admin}/readyz`);
    // Still ready (it serves the tunnels it holds), flagged degraded.
    expect(ready.status).toBe(200);
    expect(JSON.parse(ready.body)).toMatchObject({ status: 'degraded', reason: 'bus-down' });
    expect((await scrape(r.admin)).get('burrow_bus_up')).toBe(0);
    bus.up = true;
    expect((await get(`${r.admin}/readyz`)).status).toBe(200);

    const drained = r.relay.drain();
    ready = await get(`${r.admin}/readyz`);
    expect(ready.status).toBe(503);
    expect(JSON.parse(ready.body)).toMatchObject({ reason: 'draining' });
    expect((await scrape(r.admin)).get('burrow_draining')).toBe(1);
    await drained;

    await r.relay.close();
    await expect(get(`${r.admin}/readyz`)).rejects.toThrow(/ECONNREFUSED/);
  });

  test('no admin listener unless asked', async () => {
    const config = relayConfig({ host: '127.0.0.1', port: 0, logLevel: 'silent' });
    const relay = await buildRelay(config);
    cleanups.push(() => relay.close());
    await relay.listen();
    expect(relay.adminUrl()).toBeUndefined();
  });

  test('access log: one line per request, path without query, the visitor from a trusted proxy only', async () => {
    const appPort = await appWithWebSocket();
    const trusting = await startObservedRelay({ trustedProxies: ['127.0.0.1'] });
    const tunnel = await startTunnel(trusting.url, appPort);
    const label = new URL(tunnel.url).hostname.split('.')[0];
    const host = hostOf(tunnel.url);
    await request(trusting.port, host, {
      path: '/page?token=secret',
      headers: { 'x-forwarded-for': '6.6.6.6, 198.51.100.7', 'user-agent': 'observability-test/1' },
    });
    await request(trusting.port, `nosuchtunnel.${new URL(trusting.url).host}`, { path: '/x?y=1' });
    await waitFor(() => trusting.access().length === 2, 3000, 'two access lines');
    const [ok, unknown] = trusting.access() as [Line, Line];
    expect(ok).toMatchObject({
      level: 30,
      node: trusting.relay.nodeId,
      kind: 'http',
      label,
      method: 'GET',
      path: '/page',
      status: 200,
      bytesIn: 0,
      bytesOut: 5,
      visitor: '198.51.100.7',
      peer: '127.0.0.1',
      userAgent: 'observability-test/1',
    });
    expect(ok.code).toBeUndefined();
    expect(typeof ok.headMs).toBe('number');
    expect(typeof ok.totalMs).toBe('number');
    expect(JSON.stringify(trusting.lines)).not.toContain('secret');
    expect(unknown).toMatchObject({ label: 'nosuchtunnel', path: '/x', status: 404, code: 'BURROW_ERR_UNKNOWN_TUNNEL', visitor: '127.0.0.1' });

    // A peer outside the trusted list cannot choose its address.
    const wary = await startObservedRelay({ trustedProxies: ['10.0.0.0/8'] });
    const tunnel2 = await startTunnel(wary.url, appPort);
    await request(wary.port, hostOf(tunnel2.url), { headers: { 'x-forwarded-for': '198.51.100.7' } });
    await waitFor(() => wary.access().length === 1, 3000, 'one access line');
    expect(wary.access()[0]).toMatchObject({ status: 200, visitor: '127.0.0.1' });
    expect(wary.access()[0]?.peer).toBeUndefined();
  });

  test('a client that leaves before the answer is logged and counted once, as 499', async () => {
    const appPort = await appWithWebSocket();
    const r = await startObservedRelay();
    const tunnel = await startTunnel(r.url, appPort);
    await new Promise<void>((resolve) => {
      const req = http.request({ host: '127.0.0.1', port: r.port, path: '/hang', headers: { host: hostOf(tunnel.url) }, agent: false });
      req.on('error', () => resolve());
      req.end();
      setTimeout(() => req.destroy(), 100);
    });
    await waitFor(() => r.access().length === 1, 3000, 'the access line');
    expect(r.access()[0]).toMatchObject({ status: 499, code: 'BURROW_ERR_CANCELLED', path: '/hang' });
    expect(r.access()[0]?.headMs).toBeUndefined();
    const m = await scrape(r.admin);
    expect(m.get(REQ('http', '4xx'))).toBe(1);
    expect(m.get('burrow_request_head_seconds_count{kind="http"}')).toBe(0);
    await waitFor(async () => (await scrape(r.admin)).get('burrow_streams_open{side="ingress"}') === 0, 3000, 'the stream released');
    expect(r.access()).toHaveLength(1);
  });

  test('with the access log off, no access lines', async () => {
    const appPort = await appWithWebSocket();
    const r = await startObservedRelay({ accessLog: false });
    const tunnel = await startTunnel(r.url, appPort);
    expect((await request(r.port, hostOf(tunnel.url))).status).toBe(200);
    await waitFor(async () => (await scrape(r.admin)).get(REQ('http', '2xx')) === 1, 3000, 'the request counted');
    expect(r.access()).toEqual([]);
  });
});
