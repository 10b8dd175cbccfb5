/**
 * Two relay nodes in one process on a shared MemoryHub: the agent holds its socket on node A,
 * the public request arrives at node B. Everything travels as bus messages between the nodes,
 * which is the path a Redis bus will take; these tests pin that the seam carries it all.
 */
import { createHash } from 'node:crypto';
import { MemoryBus, MemoryHub } from '@burrow/bus';
import WebSocket, { WebSocketServer } from 'ws';
import { cleanup, cleanups, hostOf, request, startApp, startRelay, startTunnel, waitFor } from '../kit';

afterEach(cleanup);

async function twoNodes(overrides: Parameters<typeof startRelay>[0] = {}) {
  const hub = new MemoryHub();
  const a = await startRelay({ nodeId: 'node-a', ...overrides }, new MemoryBus('node-a', hub));
  const b = await startRelay({ nodeId: 'node-b', ...overrides }, new MemoryBus('node-b', hub));
  return { a, b };
}

describe('two relay nodes joined by a bus', () => {
  test('a request on node B reaches the agent held by node A, bodies byte-exact both ways', async () => {
    const { port: appPort } = await startApp((req, res) => {
      const h = createHash('sha256');
      let n = 0;
      req.on('data', (c: Buffer) => {
        h.update(c);
        n += c.length;
      });
      req.on('end', () => res.end(JSON.stringify({ n, sha: h.digest('hex'), node: req.headers['x-forwarded-host'] })));
    });
    const { a, b } = await twoNodes();
    const tunnel = await startTunnel(a.url, appPort);
    const body = Buffer.alloc(400_000, 9);
    const r = await request(b.port, hostOf(tunnel.url).replace(String(a.port), String(b.port)), { method: 'POST', body });
    expect(r.status).toBe(200);
    expect(JSON.parse(r.text)).toEqual(expect.objectContaining({ n: body.length, sha: createHash('sha256').update(body).digest('hex') }));
    expect(a.relay.stats().sessions).toBe(1);
    expect(b.relay.stats().sessions).toBe(0);
    await waitFor(() => a.relay.stats().agentStreams === 0 && b.relay.stats().ingressStreams === 0, 3000, 'streams released on both nodes');
  });

  test('server-sent events and a WebSocket cross nodes unchanged', async () => {
    const { server, port: appPort } = await startApp((_req, res) => {
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      res.flushHeaders();
      res.write('data: one\n\n');
      setTimeout(() => res.end('data: two\n\n'), 20);
    });
    const wss = new WebSocketServer({ server });
    wss.on('connection', (ws) => ws.on('message', (d, bin) => ws.send(d, { binary: bin })));
    cleanups.push(() => wss.close());
    const { a, b } = await twoNodes();
    const tunnel = await startTunnel(a.url, appPort);
    const host = `${tunnel.label}.localhost:${b.port}`;
    const sse = await request(b.port, host);
    expect(sse.text).toBe('data: one\n\ndata: two\n\n');
    const ws = new WebSocket(`ws://127.0.0.1:${b.port}/`, { headers: { host } });
    cleanups.push(() => ws.terminate());
    await new Promise((r) => ws.once('open', r));
    const echoed = new Promise<Buffer>((r) => ws.once('message', (d: Buffer) => r(d)));
    ws.send(Buffer.from([1, 2, 3, 250]));
    expect([...(await echoed)]).toEqual([1, 2, 3, 250]);
  });

  test('limits and errors hold across nodes: 413, 504, 404, and 502 at once when the agent drops', async () => {
    let arrived = false;
    const { port: appPort } = await startApp((req, res) => {
      if (req.url === '/hang') {
        arrived = true;
        return;
      }
      res.end('ok');
    });
    const { a, b } = await twoNodes({ maxBodyBytes: 1000, requestTimeoutMs: 300 });
    const tunnel = await startTunnel(a.url, appPort, { reconnectInitialMs: 5000 });
    const host = `${tunnel.label}.localhost:${b.port}`;
    expect((await request(b.port, host, { method: 'POST', body: Buffer.alloc(2000) })).status).toBe(413);
    const timedOut = await request(b.port, host, { path: '/hang' });
    expect(timedOut.status).toBe(504);
    expect((await request(b.port, `nobody.localhost:${b.port}`)).status).toBe(404);
    arrived = false;
    const pending = request(b.port, host, { path: '/hang', headers: { 'x-wait': '1' } });
    await waitFor(() => arrived, 3000, 'request at the app');
    // The 504 above ends at 300 ms; this one must end sooner than that, because the agent goes.
    tunnel.agent.dropConnection();
    const dropped = await pending;
    expect(dropped.headers['x-burrow-error']).toBe('BURROW_ERR_AGENT_DISCONNECTED');
    expect(dropped.status).toBe(502);
  });

  test('a newer session on node B replaces the one on node A', async () => {
    const { port: appPort } = await startApp((_req, res) => res.end('hi'));
    const { a, b } = await twoNodes();
    const key = (await import('../kit')).newKey();
    const first = await startTunnel(a.url, appPort, { keyPair: key });
    const replaced = new Promise<{ code: string }>((r) => first.agent.once('fatal', r));
    await startTunnel(b.url, appPort, { keyPair: key });
    expect((await replaced).code).toBe('BURROW_ERR_SESSION_REPLACED');
    await waitFor(() => a.relay.stats().sessions === 0 && b.relay.stats().sessions === 1, 3000, 'session moved to node B');
    expect((await request(a.port, `${first.label}.localhost:${a.port}`)).text).toBe('hi');
  });
});
