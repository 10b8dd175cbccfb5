import type { AddressInfo } from 'node:net';
import { connect } from '@burrow/agent';
import { encodeFrame, encodeJson, FrameType } from '@burrow/protocol';
import { WebSocketServer } from 'ws';
import { cleanup, cleanups, freePort, hostOf, newKey, request, startApp, startRelay, startTunnel, waitFor } from '../kit';

afterEach(cleanup);

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
    // Told by the closing relay (GOAWAY), or finding the socket gone, the agent goes offline first.
    tunnel.agent.on('offline', () => events.push('offline'));
    const backOnline = new Promise<{ url: string; reconnected: boolean }>((resolve) => tunnel.agent.once('online', resolve));
    await first.relay.close();
    const second = await startRelay({ port });
    const online = await backOnline;
    expect(online.reconnected).toBe(true);
    expect(online.url).toBe(tunnel.url);
    expect(events.length).toBeGreaterThan(0);
    expect((await request(second.port, hostOf(tunnel.url))).text).toBe('back');
  });

  test('reconnects when the relay goes silent, and never sooner than twice its ping interval', async () => {
    // A fake relay: greets, accepts the registration, then says nothing at all.
    const wss = new WebSocketServer({ host: '127.0.0.1', port: 0, path: '/_burrow/connect' });
    await new Promise<void>((r) => wss.once('listening', () => r()));
    cleanups.push(() => {
      for (const c of wss.clients) c.terminate();
      wss.close();
    });
    const port = (wss.address() as AddressInfo).port;
    let connections = 0;
    wss.on('connection', (ws) => {
      connections++;
      ws.send(
        encodeFrame(
          FrameType.HELLO,
          0,
          0,
          encodeJson({ v: 1, nonce: 'n', relay: `http://localhost:${port}`, windowBytes: 65536, maxBodyBytes: 1000, pingIntervalMs: 150 }),
        ),
      );
      ws.on('message', () => {
        ws.send(encodeFrame(FrameType.REGISTERED, 0, 0, encodeJson({ label: 'x', url: 'http://x.localhost', sessionId: `s${connections}` })));
      });
    });
    const tunnel = await startTunnel(`http://localhost:${port}`, 1, { deadAfterMs: 100, reconnectInitialMs: 20 });
    const started = Date.now();
    const reason = await new Promise<string>((resolve) => tunnel.agent.once('reconnecting', (e) => resolve(e.reason)));
    expect(reason).toContain('no frame from the relay');
    // deadAfterMs was 100 but the relay said it pings every 150 ms: the agent waited for 300.
    expect(Date.now() - started).toBeGreaterThanOrEqual(300);
    const online = await new Promise<{ reconnected: boolean }>((resolve) => tunnel.agent.once('online', resolve));
    expect(online.reconnected).toBe(true);
    expect(connections).toBe(2);
  });

  test('a relay speaking another protocol version is a fatal error, not a retry loop', async () => {
    const wss = new WebSocketServer({ host: '127.0.0.1', port: 0, path: '/_burrow/connect' });
    await new Promise<void>((r) => wss.once('listening', () => r()));
    cleanups.push(() => wss.close());
    let connections = 0;
    wss.on('connection', (ws) => {
      connections++;
      ws.send(encodeFrame(FrameType.HELLO, 0, 0, encodeJson({ v: 2, nonce: 'n', relay: 'x', windowBytes: 65536, maxBodyBytes: 1000, pingIntervalMs: 1000 })));
    });
    const port = (wss.address() as AddressInfo).port;
    await expect(startTunnel(`http://localhost:${port}`, 1, { reconnectInitialMs: 10 })).rejects.toMatchObject({ code: 'BURROW_ERR_UNSUPPORTED_VERSION' });
    expect(connections).toBe(1);
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
    tunnel.agent.dropConnection();
    const r = await pending;
    expect(r.status).toBe(502);
    expect(r.headers['x-burrow-error']).toBe('BURROW_ERR_AGENT_DISCONNECTED');
    expect(Date.now() - started).toBeLessThan(5_000);
  });
});
