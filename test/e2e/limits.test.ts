import http from 'node:http';
import net from 'node:net';
import { cleanup, hostOf, request, startApp, startRelay, startTunnel, waitFor } from '../kit';

afterEach(cleanup);

describe('limits, timeouts and relay-made errors', () => {
  test('a request body declared over the limit is answered 413 at once, without reaching the app', async () => {
    let reached = 0;
    const { port: appPort } = await startApp((_req, res) => {
      reached++;
      res.end('ok');
    });
    const relay = await startRelay({ maxBodyBytes: 1000 });
    const tunnel = await startTunnel(relay.url, appPort);
    const r = await request(relay.port, hostOf(tunnel.url), { method: 'POST', body: Buffer.alloc(1001), headers: { accept: 'application/json' } });
    expect(r.status).toBe(413);
    expect(r.headers['x-burrow-error']).toBe('BURROW_ERR_REQUEST_TOO_LARGE');
    expect(JSON.parse(r.text).error.code).toBe('BURROW_ERR_REQUEST_TOO_LARGE');
    const ok = await request(relay.port, hostOf(tunnel.url), { method: 'POST', body: Buffer.alloc(1000) });
    expect(ok.status).toBe(200);
    expect(reached).toBe(1);
  });

  test('a chunked request body that grows over the limit gets 413 and the stream is reset at the agent', async () => {
    let appSawAbort = false;
    let appBytes = 0;
    const { port: appPort } = await startApp((req, res) => {
      req.on('data', (c: Buffer) => {
        appBytes += c.length;
      });
      req.on('close', () => {
        if (!req.complete) appSawAbort = true;
      });
      req.on('end', () => res.end('should not happen'));
    });
    const relay = await startRelay({ maxBodyBytes: 100_000 });
    const tunnel = await startTunnel(relay.url, appPort);
    const result = new Promise<{ status: number; code: unknown }>((resolve, reject) => {
      const req = http.request(
        { host: '127.0.0.1', port: relay.port, method: 'POST', headers: { host: hostOf(tunnel.url), 'transfer-encoding': 'chunked' } },
        (res) => {
          res.resume();
          resolve({ status: res.statusCode ?? 0, code: res.headers['x-burrow-error'] });
        },
      );
      req.on('error', reject);
      req.write(Buffer.alloc(20_000, 1));
      // Once the app is receiving, push the body over the limit.
      waitFor(() => appBytes > 0, 3000, 'first bytes at the app')
        .then(() => {
          for (let i = 0; i < 5; i++) req.write(Buffer.alloc(20_000, 1));
          req.end();
        })
        .catch(reject);
    });
    const r = await result;
    expect(r.status).toBe(413);
    expect(r.code).toBe('BURROW_ERR_REQUEST_TOO_LARGE');
    await waitFor(() => appSawAbort, 3000, 'the app to see the request aborted');
    expect(appBytes).toBeLessThanOrEqual(100_000);
    await waitFor(() => relay.relay.stats().agentStreams === 0 && relay.relay.stats().ingressStreams === 0, 3000, 'streams released');
  });

  test('a response declared over the limit gives 502 before any byte is sent', async () => {
    const { port: appPort } = await startApp((_req, res) => {
      res.setHeader('content-length', '2000');
      res.end(Buffer.alloc(2000));
    });
    const relay = await startRelay({ maxBodyBytes: 1000 });
    const tunnel = await startTunnel(relay.url, appPort);
    const r = await request(relay.port, hostOf(tunnel.url));
    expect(r.status).toBe(502);
    expect(r.headers['x-burrow-error']).toBe('BURROW_ERR_RESPONSE_TOO_LARGE');
    // A HEAD states the GET's length and carries no body: nothing over the limit crosses.
    const head = await request(relay.port, hostOf(tunnel.url), { method: 'HEAD' });
    expect(head.status).toBe(200);
    expect(head.headers['content-length']).toBe('2000');
    expect(head.body.length).toBe(0);
  });

  test('a streamed response that grows over the limit after its head is cut off', async () => {
    const { port: appPort } = await startApp((_req, res) => {
      res.writeHead(200, { 'content-type': 'application/octet-stream' });
      let n = 0;
      const timer = setInterval(() => {
        if (res.destroyed || n++ > 50) {
          clearInterval(timer);
          res.end();
          return;
        }
        res.write(Buffer.alloc(10_000, 2));
      }, 1);
    });
    const relay = await startRelay({ maxBodyBytes: 50_000 });
    const tunnel = await startTunnel(relay.url, appPort);
    const outcome = await new Promise<{ status: number; bytes: number; aborted: boolean }>((resolve) => {
      const req = http.request({ host: '127.0.0.1', port: relay.port, headers: { host: hostOf(tunnel.url) } }, (res) => {
        let bytes = 0;
        res.on('data', (c: Buffer) => {
          bytes += c.length;
        });
        res.on('error', () => {});
        res.on('close', () => resolve({ status: res.statusCode ?? 0, bytes, aborted: !res.complete }));
      });
      req.on('error', () => {});
      req.end();
    });
    expect(outcome.status).toBe(200);
    expect(outcome.aborted).toBe(true);
    expect(outcome.bytes).toBeLessThanOrEqual(50_000);
    await waitFor(() => relay.relay.stats().agentStreams === 0 && relay.relay.stats().ingressStreams === 0, 3000, 'streams released');
  });

  test('no response head within the timeout gives 504 and the agent cancels the local request', async () => {
    let appSawClose = false;
    const { port: appPort } = await startApp((_req, res) => {
      res.on('close', () => {
        appSawClose = true;
      });
    });
    const relay = await startRelay({ requestTimeoutMs: 200 });
    const tunnel = await startTunnel(relay.url, appPort);
    const r = await request(relay.port, hostOf(tunnel.url), { headers: { accept: 'application/json' } });
    expect(r.status).toBe(504);
    expect(r.headers['x-burrow-error']).toBe('BURROW_ERR_TIMEOUT');
    expect(JSON.parse(r.text).error.message).toContain('200 ms');
    await waitFor(() => appSawClose, 3000, 'the local request to be cancelled');
  });

  test('unknown label: 404 page for browsers, JSON on request, with x-burrow-error', async () => {
    const relay = await startRelay();
    const html = await request(relay.port, `nosuchtunnel.localhost:${relay.port}`, { headers: { accept: 'text/html' } });
    expect(html.status).toBe(404);
    expect(html.headers['x-burrow-error']).toBe('BURROW_ERR_UNKNOWN_TUNNEL');
    expect(html.headers['content-type']).toContain('text/html');
    expect(html.text).toContain('nosuchtunnel');
    const json = await request(relay.port, `nosuchtunnel.localhost:${relay.port}`, { headers: { accept: 'application/json' } });
    expect(json.status).toBe(404);
    expect(JSON.parse(json.text)).toEqual({ error: expect.objectContaining({ code: 'BURROW_ERR_UNKNOWN_TUNNEL', status: 404 }) });
    const nested = await request(relay.port, `a.b.localhost:${relay.port}`);
    expect(nested.status).toBe(404);
    expect(nested.headers['x-burrow-error']).toBe('BURROW_ERR_UNKNOWN_TUNNEL');
  });

  test('a known tunnel whose agent is offline gives 502', async () => {
    const { port: appPort } = await startApp((_req, res) => res.end('ok'));
    const relay = await startRelay();
    const tunnel = await startTunnel(relay.url, appPort);
    await tunnel.close();
    await waitFor(() => relay.relay.stats().sessions === 0, 3000, 'session gone');
    const r = await request(relay.port, hostOf(tunnel.url));
    expect(r.status).toBe(502);
    expect(r.headers['x-burrow-error']).toBe('BURROW_ERR_TUNNEL_OFFLINE');
  });

  test('a local app that is down gives 502 with the reason', async () => {
    const probe = net.createServer();
    await new Promise<void>((r) => probe.listen(0, '127.0.0.1', r));
    const deadPort = (probe.address() as net.AddressInfo).port;
    await new Promise<void>((r) => probe.close(() => r()));
    const relay = await startRelay();
    const tunnel = await startTunnel(relay.url, `127.0.0.1:${deadPort}`);
    const r = await request(relay.port, hostOf(tunnel.url), { headers: { accept: 'application/json' } });
    expect(r.status).toBe(502);
    expect(r.headers['x-burrow-error']).toBe('BURROW_ERR_LOCAL_UNREACHABLE');
    expect(JSON.parse(r.text).error.message).toContain('ECONNREFUSED');
  });

  test('too many concurrent requests on one tunnel gives 503', async () => {
    const pending: http.ServerResponse[] = [];
    const { port: appPort } = await startApp((_req, res) => {
      pending.push(res);
    });
    const relay = await startRelay({ maxStreamsPerTunnel: 2 });
    const tunnel = await startTunnel(relay.url, appPort);
    const host = hostOf(tunnel.url);
    const first = request(relay.port, host);
    const second = request(relay.port, host);
    await waitFor(() => pending.length === 2, 3000, 'two requests in flight');
    const third = await request(relay.port, host);
    expect(third.status).toBe(503);
    expect(third.headers['x-burrow-error']).toBe('BURROW_ERR_TOO_MANY_STREAMS');
    for (const res of pending) res.end('done');
    expect((await first).status).toBe(200);
    expect((await second).status).toBe(200);
  });

  test('a local app that answers with something other than HTTP gives 502 LOCAL_ERROR', async () => {
    const garbage = net.createServer((socket) => socket.on('data', () => socket.end('SSH-2.0-OpenSSH_9.2\r\n\r\n')));
    await new Promise<void>((r) => garbage.listen(0, '127.0.0.1', r));
    const garbagePort = (garbage.address() as net.AddressInfo).port;
    const relay = await startRelay();
    const tunnel = await startTunnel(relay.url, garbagePort);
    const r = await request(relay.port, hostOf(tunnel.url), { headers: { accept: 'application/json' } });
    garbage.close();
    expect(r.status).toBe(502);
    expect(r.headers['x-burrow-error']).toBe('BURROW_ERR_LOCAL_ERROR');
    expect(JSON.parse(r.text).error.message).toContain('invalid HTTP response');
  });

  test('malformed and oversized request heads get coded answers from the relay', async () => {
    const relay = await startRelay();
    const raw = (bytes: string): Promise<string> =>
      new Promise((resolve) => {
        const socket = net.connect(relay.port, '127.0.0.1', () => socket.write(bytes));
        let out = '';
        socket.on('data', (c: Buffer) => {
          out += c.toString('latin1');
        });
        socket.on('close', () => resolve(out));
        socket.on('error', () => {});
      });
    const huge = await raw(`GET / HTTP/1.1\r\nHost: x.localhost\r\nX-Big: ${'a'.repeat(20_000)}\r\n\r\n`);
    expect(huge).toMatch(/^HTTP\/1\.1 431 /);
    expect(huge).toContain('x-burrow-error: BURROW_ERR_HEADERS_TOO_LARGE');
    const bad = await raw('GET / HTTP/1.1\r\nHost: x.localhost\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n');
    expect(bad).toMatch(/^HTTP\/1\.1 400 /);
    expect(bad).toContain('x-burrow-error: BURROW_ERR_BAD_REQUEST');
  });

  test('clients vanishing mid-upload and mid-download leave nothing behind and the tunnel keeps serving', async () => {
    let seen = 0;
    const { port: appPort } = await startApp((req, res) => {
      seen++;
      req.on('data', () => {});
      if (req.url === '/down') res.write(Buffer.alloc(100_000));
      else if (req.url === '/after') res.end('ok');
    });
    const relay = await startRelay();
    const tunnel = await startTunnel(relay.url, appPort);
    for (const [path, expected] of [
      ['/up', 1],
      ['/down', 2],
    ] as const) {
      const socket = net.connect(relay.port, '127.0.0.1');
      socket.on('error', () => {});
      await new Promise((r) => socket.once('connect', r));
      socket.write(`POST ${path} HTTP/1.1\r\nHost: ${hostOf(tunnel.url)}\r\nContent-Length: 100000\r\n\r\n${'x'.repeat(5000)}`);
      await waitFor(() => seen >= expected, 3000, `${path} at the app`);
      socket.destroy();
    }
    await waitFor(() => relay.relay.stats().ingressStreams === 0 && relay.relay.stats().agentStreams === 0, 3000, 'streams released');
    expect((await request(relay.port, hostOf(tunnel.url), { path: '/after' })).text).toBe('ok');
  });

  test('apex: health and version routes, and a coded 404 for anything else', async () => {
    const relay = await startRelay();
    const apex = `localhost:${relay.port}`;
    expect(JSON.parse((await request(relay.port, apex, { path: '/healthz' })).text)).toEqual(expect.objectContaining({ status: 'ok' }));
    expect(JSON.parse((await request(relay.port, apex, { path: '/version' })).text)).toEqual(expect.objectContaining({ name: 'burrow-relay', protocol: 1 }));
    const missing = await request(relay.port, apex, { path: '/nope', headers: { accept: 'application/json' } });
    expect(missing.status).toBe(404);
    expect(missing.headers['x-burrow-error']).toBe('BURROW_ERR_NOT_FOUND');
  });
});
