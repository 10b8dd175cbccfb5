import type http from 'node:http';
import WebSocket, { WebSocketServer } from 'ws';
import { cleanup, cleanups, hostOf, startApp, startRelay, startTunnel, waitFor } from '../kit';

afterEach(cleanup);

async function wsApp(onConnection: (ws: WebSocket, req: http.IncomingMessage) => void, options: ConstructorParameters<typeof WebSocketServer>[0] = {}) {
  const { server, port } = await startApp((_req, res) => {
    res.statusCode = 426;
    res.end('websocket only');
  });
  const wss = new WebSocketServer({ server, ...options });
  wss.on('connection', onConnection);
  cleanups.push(() => {
    for (const c of wss.clients) c.terminate();
    wss.close();
  });
  return port;
}

function openClient(relayPort: number, host: string, path = '/', protocols?: string[]): Promise<WebSocket> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(`ws://127.0.0.1:${relayPort}${path}`, protocols, { headers: { host } });
    cleanups.push(() => ws.terminate());
    ws.once('open', () => resolve(ws));
    ws.once('error', reject);
  });
}

describe('WebSocket passthrough', () => {
  test('text and binary messages both ways, in order and byte-exact', async () => {
    const appPort = await wsApp((ws) => {
      ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary }));
    });
    const relay = await startRelay();
    const tunnel = await startTunnel(relay.url, appPort);
    const client = await openClient(relay.port, hostOf(tunnel.url), '/echo');
    const sent: { data: Buffer | string; binary: boolean }[] = [];
    for (let i = 0; i < 50; i++) sent.push({ data: `text ${i} ✓`, binary: false });
    const big = Buffer.alloc(300_000);
    for (let i = 0; i < big.length; i++) big[i] = (i * 31) & 0xff;
    sent.push({ data: big, binary: true });
    sent.push({ data: Buffer.from([0, 255, 1, 254]), binary: true });
    sent.push({ data: '', binary: false });
    const received: { data: Buffer; binary: boolean }[] = [];
    const done = new Promise<void>((resolve) => {
      client.on('message', (data: Buffer, isBinary) => {
        received.push({ data, binary: isBinary });
        if (received.length === sent.length) resolve();
      });
    });
    for (const m of sent) client.send(m.data, { binary: m.binary });
    await done;
    received.forEach((m, i) => {
      const expected = sent[i] as { data: Buffer | string; binary: boolean };
      expect(m.binary).toBe(expected.binary);
      expect(m.data.equals(Buffer.from(expected.data))).toBe(true);
    });
  });

  test('subprotocol is negotiated with the local app', async () => {
    let appProtocol = '';
    const appPort = await wsApp(
      (ws) => {
        appProtocol = ws.protocol;
      },
      { handleProtocols: (protocols) => (protocols.has('v2.chat') ? 'v2.chat' : false) },
    );
    const relay = await startRelay();
    const tunnel = await startTunnel(relay.url, appPort);
    const client = await openClient(relay.port, hostOf(tunnel.url), '/', ['v1.chat', 'v2.chat']);
    expect(client.protocol).toBe('v2.chat');
    await waitFor(() => appProtocol !== '', 2000, 'app connection');
    expect(appProtocol).toBe('v2.chat');
  });

  test('close codes and reasons pass through both ways', async () => {
    let appSide: WebSocket | undefined;
    let appClose: { code: number; reason: string } | undefined;
    const appPort = await wsApp((ws) => {
      appSide = ws;
      ws.on('close', (code, reason) => {
        appClose = { code, reason: reason.toString() };
      });
    });
    const relay = await startRelay();
    const tunnel = await startTunnel(relay.url, appPort);
    const host = hostOf(tunnel.url);

    const c1 = await openClient(relay.port, host);
    const closedByApp = new Promise<{ code: number; reason: string }>((resolve) =>
      c1.on('close', (code, reason) => resolve({ code, reason: reason.toString() })),
    );
    await waitFor(() => appSide !== undefined, 2000, 'app connection');
    appSide?.close(4001, 'server says bye');
    expect(await closedByApp).toEqual({ code: 4001, reason: 'server says bye' });

    appSide = undefined;
    const c2 = await openClient(relay.port, host);
    await waitFor(() => appSide !== undefined, 2000, 'app connection');
    c2.close(4002, 'client says later');
    await waitFor(() => appClose?.code === 4002, 2000, 'close at the app');
    expect(appClose).toEqual({ code: 4002, reason: 'client says later' });
    await waitFor(() => relay.relay.stats().ingressStreams === 0 && relay.relay.stats().agentStreams === 0, 3000, 'streams released');
  });

  test.each([
    ['its agent stops', 1011, 'BURROW_ERR_AGENT_DISCONNECTED'],
    ['the relay shuts down', 1001, 'BURROW_ERR_RELAY_SHUTTING_DOWN'],
  ] as const)('a WebSocket whose tunnel ends under it because %s is closed by the relay with %d and the code as reason', async (what, code, reason) => {
    const appPort = await wsApp((ws) => {
      ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary }));
    });
    const relay = await startRelay();
    const tunnel = await startTunnel(relay.url, appPort);
    const client = await openClient(relay.port, hostOf(tunnel.url));
    const closed = new Promise<{ code: number; reason: string }>((resolve) => client.on('close', (c, r) => resolve({ code: c, reason: r.toString() })));
    const echoed = new Promise((r) => client.once('message', r));
    client.send('hello');
    await echoed;
    if (what === 'its agent stops') await tunnel.close();
    else await relay.relay.close();
    expect(await closed).toEqual({ code, reason });
  });

  test('a local app that refuses the upgrade is answered with its status and body', async () => {
    const { server, port: appPort } = await startApp((_req, res) => res.end());
    server.on('upgrade', (_req, socket) => {
      socket.end('HTTP/1.1 403 Forbidden\r\nContent-Type: text/plain\r\nContent-Length: 9\r\nX-Why: not-you\r\n\r\nforbidden');
    });
    const relay = await startRelay();
    const tunnel = await startTunnel(relay.url, appPort);
    const refused = await new Promise<{ status: number; why: unknown; body: string }>((resolve, reject) => {
      const ws = new WebSocket(`ws://127.0.0.1:${relay.port}/`, { headers: { host: hostOf(tunnel.url) } });
      ws.on('unexpected-response', (_req, res) => {
        let body = '';
        res.on('data', (c: Buffer) => {
          body += c.toString();
        });
        res.on('end', () => resolve({ status: res.statusCode ?? 0, why: res.headers['x-why'], body }));
      });
      ws.on('open', () => reject(new Error('upgrade should have been refused')));
      ws.on('error', () => {});
    });
    expect(refused).toEqual({ status: 403, why: 'not-you', body: 'forbidden' });
    await waitFor(() => relay.relay.stats().ingressStreams === 0 && relay.relay.stats().agentStreams === 0, 3000, 'streams released');
  });

  test('an upgrade for an unknown tunnel gets a coded 404', async () => {
    const relay = await startRelay();
    const status = await new Promise<{ status: number; code: unknown }>((resolve) => {
      const ws = new WebSocket(`ws://127.0.0.1:${relay.port}/`, { headers: { host: `nobody.localhost:${relay.port}` } });
      ws.on('unexpected-response', (_req, res) => {
        res.resume();
        resolve({ status: res.statusCode ?? 0, code: res.headers['x-burrow-error'] });
      });
      ws.on('error', () => {});
    });
    expect(status).toEqual({ status: 404, code: 'BURROW_ERR_UNKNOWN_TUNNEL' });
  });

  test('a local app that is down answers the upgrade with 502', async () => {
    const relay = await startRelay();
    const tunnel = await startTunnel(relay.url, '127.0.0.1:1');
    const status = await new Promise<{ status: number; code: unknown }>((resolve) => {
      const ws = new WebSocket(`ws://127.0.0.1:${relay.port}/`, { headers: { host: hostOf(tunnel.url) } });
      ws.on('unexpected-response', (_req, res) => {
        res.resume();
        resolve({ status: res.statusCode ?? 0, code: res.headers['x-burrow-error'] });
      });
      ws.on('error', () => {});
    });
    expect(status).toEqual({ status: 502, code: 'BURROW_ERR_LOCAL_UNREACHABLE' });
  });
});
