/**
 * Several relay nodes on one bus: reconnect grace, draining, takeover between nodes and agents
 * with several relay URLs. Runs on the in-memory bus here; scaleOutRedis.test.ts runs the
 * Redis-only failures (SIGKILL, Redis restarts, lease expiry, cluster).
 * Every test states the bound it checks in its name.
 */
import { MemoryBus, MemoryHub } from '@burrow/bus';
import { FrameType } from '@burrow/protocol';
import WebSocket from 'ws';
import { cleanup, freePort, hostOf, newKey, RawAgent, request, startApp, startRelay, startTunnel, waitFor } from '../kit';

afterEach(cleanup);

async function nodes(count: number, overrides: Parameters<typeof startRelay>[0] = {}) {
  const hub = new MemoryHub();
  const out = [];
  for (let i = 0; i < count; i++) {
    const id = `node-${String.fromCharCode(97 + i)}`;
    out.push(await startRelay({ nodeId: id, ...overrides }, new MemoryBus(id, hub)));
  }
  return out;
}

/** The tunnel's host as served by another node (same label, that node's port). */
const hostOn = (label: string, port: number): string => `${label}.localhost:${port}`;

describe('reconnect grace', () => {
  test('a request arriving while the agent reconnects waits for it and succeeds, on the holder node and on another node', async () => {
    const { port: appPort } = await startApp((_req, res) => res.end('hello'));
    const [a, b] = await nodes(2, { reconnectGraceMs: 3000 });
    if (a === undefined || b === undefined) throw new Error('no nodes');
    // The agent comes back after 300-600 ms: requests sent meanwhile must wait, not fail.
    const tunnel = await startTunnel(a.url, appPort, { reconnectInitialMs: 1200, reconnectMaxMs: 1200 });
    const back = new Promise((r) => tunnel.agent.once('online', r));
    tunnel.agent.dropConnection();
    await waitFor(() => a.relay.stats().sessions === 0, 2000, 'session gone on node A');
    const started = Date.now();
    const [viaA, viaB] = await Promise.all([request(a.port, hostOn(tunnel.label, a.port)), request(b.port, hostOn(tunnel.label, b.port))]);
    await back;
    expect(viaA.status).toBe(200);
    expect(viaA.text).toBe('hello');
    expect(viaB.status).toBe(200);
    expect(viaB.text).toBe('hello');
    // They did wait for the agent (it was away for at least 300 ms) but no longer than the grace.
    expect(Date.now() - started).toBeLessThan(3000);
  });

  test('past the grace, waiting requests get 502 BURROW_ERR_TUNNEL_OFFLINE (bound: grace, then within 1 s)', async () => {
    const [a, b] = await nodes(2, { reconnectGraceMs: 400 });
    if (a === undefined || b === undefined) throw new Error('no nodes');
    const raw = await RawAgent.open(a.url);
    const key = newKey();
    await raw.register(key, a.url);
    const registered = JSON.parse((await raw.next(FrameType.REGISTERED)).payload.toString()) as { label: string };
    raw.ws.terminate(); // dropped, not left: the relay expects it back
    await waitFor(() => a.relay.stats().sessions === 0, 2000, 'session gone');
    const started = Date.now();
    const r = await request(b.port, hostOn(registered.label, b.port));
    const waited = Date.now() - started;
    expect(r.status).toBe(502);
    expect(r.headers['x-burrow-error']).toBe('BURROW_ERR_TUNNEL_OFFLINE');
    expect(waited).toBeGreaterThanOrEqual(250);
    expect(waited).toBeLessThan(1400);
  });

  test('an agent that says goodbye gets no grace: 502 at once (bound: 300 ms)', async () => {
    const { port: appPort } = await startApp((_req, res) => res.end('x'));
    const [a, b] = await nodes(2, { reconnectGraceMs: 5000 });
    if (a === undefined || b === undefined) throw new Error('no nodes');
    const tunnel = await startTunnel(a.url, appPort);
    await tunnel.close();
    await waitFor(() => a.relay.stats().sessions === 0, 2000, 'session gone');
    const started = Date.now();
    const r = await request(b.port, hostOn(tunnel.label, b.port));
    expect(r.status).toBe(502);
    expect(r.headers['x-burrow-error']).toBe('BURROW_ERR_TUNNEL_OFFLINE');
    expect(Date.now() - started).toBeLessThan(300);
  });
});

describe('drain (SIGTERM)', () => {
  test('the agent moves to the other node, the request in flight finishes, new agents are refused, drain resolves', async () => {
    let release: (() => void) | undefined;
    const { port: appPort } = await startApp((req, res) => {
      if (req.url === '/slow') release = () => res.end('slow done');
      else res.end('fast');
    });
    const [a, b] = await nodes(2, { drainTimeoutMs: 5000 });
    if (a === undefined || b === undefined) throw new Error('no nodes');
    const tunnel = await startTunnel(`${a.url},${b.url}`, appPort);
    expect(a.relay.stats().sessions).toBe(1);
    const slow = request(a.port, hostOn(tunnel.label, a.port), { path: '/slow' });
    await waitFor(() => release !== undefined, 3000, 'slow request at the app');
    const moved = new Promise<{ relay: string }>((r) => tunnel.agent.once('online', r));
    const drained = a.relay.drain();
    expect(a.relay.isDraining()).toBe(true);
    expect((await moved).relay).toBe(b.url);
    // New requests, on either node, reach the agent through its new session on B.
    expect((await request(a.port, hostOn(tunnel.label, a.port))).text).toBe('fast');
    expect((await request(b.port, hostOn(tunnel.label, b.port))).text).toBe('fast');
    // A new agent is refused by the draining node before the WebSocket handshake.
    const refused = await new Promise<number>((resolve, reject) => {
      const ws = new WebSocket(`${a.url.replace('http', 'ws')}/_burrow/connect`);
      ws.on('unexpected-response', (_req, res) => resolve(res.statusCode ?? 0));
      ws.on('open', () => reject(new Error('a draining relay accepted an agent')));
      ws.on('error', () => {});
    });
    expect(refused).toBe(503);
    // The old session still carries the request in flight; it finishes normally.
    release?.();
    const r = await slow;
    expect(r.status).toBe(200);
    expect(r.text).toBe('slow done');
    await drained;
    expect(a.relay.stats()).toEqual(expect.objectContaining({ sessions: 0, ingressStreams: 0, agentStreams: 0 }));
    expect(b.relay.stats().sessions).toBe(1);
  });

  test('a lone node drains once idle, well before its deadline (bound: 1.5 s with a 20 s deadline)', async () => {
    const { port: appPort } = await startApp((_req, res) => res.end('x'));
    const [a] = await nodes(1, { drainTimeoutMs: 20_000 });
    if (a === undefined) throw new Error('no node');
    await startTunnel(a.url, appPort, { reconnectInitialMs: 50, reconnectMaxMs: 100 });
    const started = Date.now();
    await a.relay.drain();
    expect(Date.now() - started).toBeLessThan(1500);
  });

  test('the drain deadline cuts a request that does not finish (bound: deadline + 500 ms)', async () => {
    const { port: appPort } = await startApp(() => {
      /* never answers */
    });
    const [a] = await nodes(1, { drainTimeoutMs: 300 });
    if (a === undefined) throw new Error('no node');
    const tunnel = await startTunnel(a.url, appPort, { reconnectInitialMs: 50, reconnectMaxMs: 100 });
    const pending = request(a.port, hostOf(tunnel.url));
    await waitFor(() => a.relay.stats().agentStreams === 1, 3000, 'request in flight');
    const started = Date.now();
    await a.relay.drain();
    expect(Date.now() - started).toBeGreaterThanOrEqual(250);
    expect(Date.now() - started).toBeLessThan(800);
    await a.relay.close();
    const r = await pending;
    expect(r.status).toBe(503);
    expect(r.headers['x-burrow-error']).toBe('BURROW_ERR_RELAY_SHUTTING_DOWN');
  });
});

describe('takeover between nodes', () => {
  test('the same key on another node takes the label; the old session finishes its request in flight, then closes', async () => {
    let release: (() => void) | undefined;
    const { port: appPort } = await startApp((req, res) => {
      if (req.url === '/slow') release = () => res.end('old session done');
      else res.end('new');
    });
    const [a, b] = await nodes(2);
    if (a === undefined || b === undefined) throw new Error('no nodes');
    const key = newKey();
    const first = await startTunnel(a.url, appPort, { keyPair: key });
    const fatal = new Promise<Error>((r) => first.agent.once('fatal', r));
    const slow = request(a.port, hostOn(first.label, a.port), { path: '/slow' });
    await waitFor(() => release !== undefined, 3000, 'slow request at the app');
    const second = await startTunnel(b.url, appPort, { keyPair: key });
    expect(second.label).toBe(first.label);
    // New requests go to the new session at once, on both nodes.
    expect((await request(a.port, hostOn(first.label, a.port))).text).toBe('new');
    expect(a.relay.stats().sessions).toBe(1); // the old one is still finishing
    release?.();
    expect((await slow).text).toBe('old session done');
    expect((await fatal).message).toMatch(/newer session/);
    await waitFor(() => a.relay.stats().sessions === 0, 3000, 'old session closed');
    expect(b.relay.stats().sessions).toBe(1);
  });
});

describe('agent with several relay URLs', () => {
  test('a relay that is down is skipped; the agent registers with the next one', async () => {
    const { port: appPort } = await startApp((_req, res) => res.end('ok'));
    const [b] = await nodes(1);
    if (b === undefined) throw new Error('no node');
    const dead = `http://localhost:${await freePort()}`;
    const tunnel = await startTunnel(`${dead},${b.url}`, appPort, { reconnectInitialMs: 20, reconnectMaxMs: 50 });
    expect((await request(b.port, hostOf(tunnel.url))).text).toBe('ok');
  });

  test('when its relay stops, the agent comes back through the other one with the same label', async () => {
    const { port: appPort } = await startApp((_req, res) => res.end('ok'));
    const [a, b] = await nodes(2);
    if (a === undefined || b === undefined) throw new Error('no nodes');
    const tunnel = await startTunnel(`${a.url},${b.url}`, appPort, { reconnectInitialMs: 20, reconnectMaxMs: 50 });
    const back = new Promise<{ relay: string; label: string }>((r) => tunnel.agent.once('online', r));
    await a.relay.close();
    const online = await back;
    expect(online.relay).toBe(b.url);
    expect(online.label).toBe(tunnel.label);
    expect((await request(b.port, hostOn(tunnel.label, b.port))).text).toBe('ok');
  });
});
