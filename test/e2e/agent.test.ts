import net from 'node:net';
import { connect } from '@burrow/agent';
import { cleanup, hostOf, newKey, request, startApp, startRelay, startTunnel, waitFor } from '../kit';

afterEach(cleanup);

async function freePort(): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const port = (s.address() as net.AddressInfo).port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

describe('agent', () => {
  test('connect() resolves with the URL; close() ends the session', async () => {
    const { port: appPort } = await startApp((_req, res) => res.end('lib'));
    const relay = await startRelay();
    const tunnel = await connect({ relay: relay.url, to: appPort, keyPair: newKey() });
    expect(tunnel.url).toBe(`http://${tunnel.label}.localhost:${relay.port}`);
    expect((await request(relay.port, hostOf(tunnel.url))).text).toBe('lib');
    await tunnel.close();
    await waitFor(() => relay.relay.stats().sessions === 0, 3000, 'session closed');
  });

  test('reconnects with the same URL after the relay restarts', async () => {
    const { port: appPort } = await startApp((_req, res) => res.end('back'));
    const port = await freePort();
    const first = await startRelay({ port });
    const tunnel = await startTunnel(first.url, appPort, { reconnectInitialMs: 20, reconnectMaxMs: 100 });
    const events: string[] = [];
    tunnel.agent.on('reconnecting', () => events.push('reconnecting'));
    const backOnline = new Promise<{ url: string; reconnected: boolean }>((resolve) => tunnel.agent.once('online', resolve));
    await first.relay.close();
    const second = await startRelay({ port });
    const online = await backOnline;
    expect(online.reconnected).toBe(true);
    expect(online.url).toBe(tunnel.url);
    expect(events.length).toBeGreaterThan(0);
    expect((await request(second.port, hostOf(tunnel.url))).text).toBe('back');
  });

  test('reconnects when the relay goes silent', async () => {
    const { port: appPort } = await startApp((_req, res) => res.end('ok'));
    // The relay never pings within the test; the agent's watchdog must notice the silence.
    const relay = await startRelay({ pingIntervalMs: 600_000 });
    const tunnel = await startTunnel(relay.url, appPort, { deadAfterMs: 300, reconnectInitialMs: 20 });
    const reason = await new Promise<string>((resolve) => tunnel.agent.once('reconnecting', (e) => resolve(e.reason)));
    expect(reason).toContain('no frame from the relay');
    const online = await new Promise<{ url: string }>((resolve) => tunnel.agent.once('online', resolve));
    expect(online.url).toBe(tunnel.url);
  });

  test('backoff grows and is capped', async () => {
    const port = await freePort();
    const relay = await startRelay({ port });
    const { port: appPort } = await startApp((_req, res) => res.end('ok'));
    const tunnel = await startTunnel(relay.url, appPort, { reconnectInitialMs: 10, reconnectMaxMs: 80 });
    const delays: number[] = [];
    tunnel.agent.on('reconnecting', (e) => delays.push(e.delayMs));
    await relay.relay.close();
    await waitFor(() => delays.length >= 6, 5000, 'six reconnect attempts');
    // Jitter keeps each delay within [base/2, base]; the base doubles up to the cap.
    for (const d of delays) expect(d).toBeLessThanOrEqual(80);
    expect(Math.max(...delays.slice(3))).toBeGreaterThan(Math.max(...delays.slice(0, 2)));
  });

  test('requests in flight on a dropped session get 502 at once', async () => {
    let arrived = false;
    const { port: appPort } = await startApp(() => {
      arrived = true;
    });
    const relay = await startRelay({ requestTimeoutMs: 60_000 });
    const tunnel = await startTunnel(relay.url, appPort, { reconnectInitialMs: 5_000 });
    const pending = request(relay.port, hostOf(tunnel.url));
    await waitFor(() => arrived, 3000, 'request at the app');
    const started = Date.now();
    // Drop the agent's socket without a goodbye.
    const ws = (tunnel.agent as unknown as { ws: { terminate(): void } }).ws;
    ws.terminate();
    const r = await pending;
    expect(r.status).toBe(502);
    expect(r.headers['x-burrow-error']).toBe('BURROW_ERR_AGENT_DISCONNECTED');
    expect(Date.now() - started).toBeLessThan(5_000);
  });
});
