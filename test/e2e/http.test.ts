import { createHash } from 'node:crypto';
import http from 'node:http';
import { cleanup, freePort, hostOf, request, startApp, startRelay, startTunnel, waitFor, waitUntilSteady } from '../kit';

afterEach(cleanup);

async function echoSetup() {
  const { port: appPort } = await startApp((req, res) => {
    const parts: Buffer[] = [];
    req.on('data', (c: Buffer) => parts.push(c));
    req.on('end', () => {
      const body = Buffer.concat(parts);
      res.setHeader('content-type', 'application/json');
      res.end(
        JSON.stringify({
          url: req.url,
          method: req.method,
          headers: req.headers,
          rawHeaders: req.rawHeaders,
          bodyLength: body.length,
          bodySha: createHash('sha256').update(body).digest('hex'),
        }),
      );
    });
  });
  const relay = await startRelay();
  const tunnel = await startTunnel(relay.url, appPort);
  return { relay, tunnel, host: hostOf(tunnel.url) };
}

describe('HTTP through a tunnel', () => {
  test('path, raw query and forwarded headers reach the local app', async () => {
    const { relay, host } = await echoSetup();
    const r = await request(relay.port, host, { path: '/a/b%20c?x=1&y=%2F&x=2', headers: { 'x-forwarded-for': '10.1.2.3' } });
    expect(r.status).toBe(200);
    const seen = JSON.parse(r.text);
    expect(seen.url).toBe('/a/b%20c?x=1&y=%2F&x=2');
    expect(seen.headers['x-forwarded-for']).toBe('10.1.2.3, 127.0.0.1');
    expect(seen.headers['x-forwarded-proto']).toBe('http');
    expect(seen.headers['x-forwarded-host']).toBe(host);
    expect(seen.headers.host).toBe(host);
  });

  test.each(['GET', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS', 'PROPFIND'])('method %s is forwarded', async (method) => {
    const { relay, host } = await echoSetup();
    const body = method === 'GET' || method === 'OPTIONS' ? undefined : `body for ${method}`;
    const r = await request(relay.port, host, { method, path: '/m', ...(body !== undefined ? { body } : {}) });
    expect(r.status).toBe(200);
    const seen = JSON.parse(r.text);
    expect(seen.method).toBe(method);
    expect(seen.bodyLength).toBe(body === undefined ? 0 : Buffer.byteLength(body));
  });

  test('repeated request headers stay repeated and in order; hop-by-hop headers are removed', async () => {
    const { relay, host } = await echoSetup();
    const r = await request(relay.port, host, {
      headers: {
        'x-multi': ['one', 'two'],
        connection: 'keep-alive, x-secret-hop',
        'x-secret-hop': 'drop me',
        'keep-alive': 'timeout=5',
        te: 'trailers',
        'proxy-authorization': 'Basic abc',
      },
    });
    const seen = JSON.parse(r.text);
    const raw: string[] = seen.rawHeaders;
    const multi = raw.filter((_, i) => i % 2 === 1 && raw[i - 1]?.toLowerCase() === 'x-multi');
    expect(multi).toEqual(['one', 'two']);
    expect(seen.headers['x-secret-hop']).toBeUndefined();
    expect(seen.headers['keep-alive']).toBeUndefined();
    expect(seen.headers.te).toBeUndefined();
    expect(seen.headers['proxy-authorization']).toBeUndefined();
  });

  test('response status, reason, repeated Set-Cookie and headers pass back; hop-by-hop ones do not', async () => {
    const { port: appPort } = await startApp((_req, res) => {
      res.writeHead(418, "I'm a teapot", [
        ['Set-Cookie', 'a=1; Path=/'],
        ['Set-Cookie', 'b=2; HttpOnly'],
        ['X-Custom', 'yes'],
        ['Connection', 'x-private'],
        ['X-Private', 'hop'],
        ['Content-Length', '5'],
      ] as unknown as http.OutgoingHttpHeaders);
      res.end('short');
    });
    const relay = await startRelay();
    const tunnel = await startTunnel(relay.url, appPort);
    const r = await request(relay.port, hostOf(tunnel.url));
    expect(r.status).toBe(418);
    expect(r.headers['set-cookie']).toEqual(['a=1; Path=/', 'b=2; HttpOnly']);
    expect(r.headers['x-custom']).toBe('yes');
    expect(r.headers['x-private']).toBeUndefined();
    expect(r.text).toBe('short');
  });

  test.each([200, 201, 202, 301, 302, 400, 401, 403, 404, 409, 422, 500, 503, 599])('status %i is exact', async (status) => {
    const { port: appPort } = await startApp((_req, res) => {
      res.statusCode = status;
      if (status === 301 || status === 302) res.setHeader('location', '/elsewhere');
      res.end(`status ${status}`);
    });
    const relay = await startRelay();
    const tunnel = await startTunnel(relay.url, appPort);
    const r = await request(relay.port, hostOf(tunnel.url));
    expect(r.status).toBe(status);
    expect(r.text).toBe(`status ${status}`);
  });

  test('HEAD, 204 and 304 carry no body; HEAD keeps Content-Length', async () => {
    const { port: appPort } = await startApp((req, res) => {
      if (req.url === '/204') {
        res.statusCode = 204;
        res.end();
      } else if (req.url === '/304') {
        res.statusCode = 304;
        res.setHeader('etag', '"v1"');
        res.end();
      } else {
        res.setHeader('content-length', '11');
        res.end(req.method === 'HEAD' ? undefined : 'hello world');
      }
    });
    const relay = await startRelay();
    const tunnel = await startTunnel(relay.url, appPort);
    const host = hostOf(tunnel.url);
    const head = await request(relay.port, host, { method: 'HEAD', path: '/' });
    expect(head.status).toBe(200);
    expect(head.headers['content-length']).toBe('11');
    expect(head.body.length).toBe(0);
    const r204 = await request(relay.port, host, { path: '/204' });
    expect(r204.status).toBe(204);
    expect(r204.body.length).toBe(0);
    const r304 = await request(relay.port, host, { path: '/304' });
    expect(r304.status).toBe(304);
    expect(r304.headers.etag).toBe('"v1"');
    expect(r304.body.length).toBe(0);
  });

  test('fixed-length and chunked request bodies arrive byte-exact', async () => {
    const { relay, host } = await echoSetup();
    const body = Buffer.alloc(300_000);
    for (let i = 0; i < body.length; i++) body[i] = (i * 7) & 0xff;
    const sha = createHash('sha256').update(body).digest('hex');
    const fixed = JSON.parse((await request(relay.port, host, { method: 'POST', body })).text);
    expect(fixed.bodyLength).toBe(body.length);
    expect(fixed.bodySha).toBe(sha);
    expect(fixed.headers['content-length']).toBe(String(body.length));
    const chunks = [body.subarray(0, 1), body.subarray(1, 70_000), body.subarray(70_000, 250_000), body.subarray(250_000)];
    const chunked = JSON.parse((await request(relay.port, host, { method: 'POST', chunks })).text);
    expect(chunked.bodyLength).toBe(body.length);
    expect(chunked.bodySha).toBe(sha);
    expect(chunked.headers['transfer-encoding']).toBe('chunked');
  });

  test('fixed-length and chunked response bodies arrive byte-exact', async () => {
    const body = Buffer.alloc(450_000);
    for (let i = 0; i < body.length; i++) body[i] = (i * 13) & 0xff;
    const { port: appPort } = await startApp((req, res) => {
      if (req.url === '/fixed') {
        res.setHeader('content-length', String(body.length));
        res.end(body);
      } else {
        res.write(body.subarray(0, 10));
        res.write(body.subarray(10, 200_000));
        res.end(body.subarray(200_000));
      }
    });
    const relay = await startRelay();
    const tunnel = await startTunnel(relay.url, appPort);
    const fixed = await request(relay.port, hostOf(tunnel.url), { path: '/fixed' });
    expect(fixed.headers['content-length']).toBe(String(body.length));
    expect(fixed.body.equals(body)).toBe(true);
    const chunked = await request(relay.port, hostOf(tunnel.url), { path: '/chunked' });
    expect(chunked.headers['transfer-encoding']).toBe('chunked');
    expect(chunked.body.equals(body)).toBe(true);
  });

  test('server-sent events arrive one by one as they are written', async () => {
    let sendNext: ((i: number) => void) | undefined;
    const { port: appPort } = await startApp((_req, res) => {
      res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
      res.flushHeaders();
      sendNext = (i) => {
        if (i < 3) res.write(`data: event ${i}\n\n`);
        else res.end();
      };
    });
    const relay = await startRelay();
    const tunnel = await startTunnel(relay.url, appPort);
    const received: string[] = [];
    await new Promise<void>((resolve, reject) => {
      const req = http.request({ host: '127.0.0.1', port: relay.port, headers: { host: hostOf(tunnel.url) } }, (res) => {
        expect(res.headers['content-type']).toBe('text/event-stream');
        // The head arrives before any event is written.
        expect(received).toEqual([]);
        sendNext?.(0);
        res.on('data', (c: Buffer) => {
          received.push(c.toString());
          // The next event is only written once this one has been read: no buffering can hide.
          sendNext?.(received.length);
        });
        res.on('end', resolve);
      });
      req.on('error', reject);
      req.end();
    });
    expect(received).toEqual(['data: event 0\n\n', 'data: event 1\n\n', 'data: event 2\n\n']);
  });

  test('a slow public reader holds the local app back (credit windows), then gets every byte', async () => {
    const total = 48 * 1024 * 1024;
    let written = 0;
    const chunk = Buffer.alloc(64 * 1024, 7);
    const { port: appPort } = await startApp((_req, res) => {
      res.setHeader('content-length', String(total));
      const pump = (): void => {
        while (written < total) {
          written += chunk.length;
          if (!res.write(chunk)) {
            res.once('drain', pump);
            return;
          }
        }
        res.end();
      };
      pump();
    });
    const relay = await startRelay({ maxBodyBytes: 2 * total });
    const tunnel = await startTunnel(relay.url, appPort);
    let received = 0;
    await new Promise<void>((resolve, reject) => {
      const req = http.request({ host: '127.0.0.1', port: relay.port, headers: { host: hostOf(tunnel.url) } }, (res) => {
        res.on('data', (c: Buffer) => {
          received += c.length;
        });
        res.pause();
        // While the client reads nothing, the app's writes must stall well short of the body.
        waitFor(() => written > 0, 3000)
          .then(async () => {
            await waitUntilSteady(() => written, 'writes to stall');
            expect(written).toBeLessThan(total / 2);
            res.resume();
          })
          .catch(reject);
        res.on('end', resolve);
      });
      req.on('error', reject);
      req.end();
    });
    expect(received).toBe(total);
  }, 30_000);

  test('apex routes never shadow tunnel paths, and tunnel hosts match case-insensitively with any port', async () => {
    const { relay, host } = await echoSetup();
    const onTunnel = await request(relay.port, host, { path: '/healthz' });
    expect(JSON.parse(onTunnel.text).url).toBe('/healthz');
    const connectOnTunnel = await request(relay.port, host, { path: '/_burrow/connect' });
    expect(JSON.parse(connectOnTunnel.text).url).toBe('/_burrow/connect');
    const apex = await request(relay.port, `localhost:${relay.port}`, { path: '/healthz' });
    expect(JSON.parse(apex.text).status).toBe('ok');
    const hostname = host.split(':')[0] as string;
    const upper = await request(relay.port, `${hostname.toUpperCase()}:1234`, { path: '/case' });
    expect(JSON.parse(upper.text).url).toBe('/case');
    const dotted = await request(relay.port, `${hostname}.`, { path: '/dot' });
    expect(JSON.parse(dotted.text).url).toBe('/dot');
  });

  test('a public client that goes away cancels the request at the local app', async () => {
    let appSawClose = false;
    let arrived = false;
    const { port: appPort } = await startApp((_req, res) => {
      arrived = true;
      res.on('close', () => {
        appSawClose = true;
      });
    });
    const relay = await startRelay();
    const tunnel = await startTunnel(relay.url, appPort);
    const req = http.request({ host: '127.0.0.1', port: relay.port, headers: { host: hostOf(tunnel.url) } });
    req.on('error', () => {});
    req.end();
    await waitFor(() => arrived, 3000, 'request at the app');
    req.destroy();
    await waitFor(() => appSawClose, 3000, 'the app to see the cancel');
    await waitFor(() => relay.relay.stats().ingressStreams === 0 && relay.relay.stats().agentStreams === 0, 3000, 'streams to be released');
  });
});

describe('relay behind TLS and agent options', () => {
  test('--public-url sets the printed URL and X-Forwarded-Proto; --host-header rewrite sends the target host', async () => {
    const { port: appPort } = await startApp((req, res) =>
      res.end(JSON.stringify({ host: req.headers.host, proto: req.headers['x-forwarded-proto'], fhost: req.headers['x-forwarded-host'] })),
    );
    const port = await freePort();
    const relay = await startRelay({ port, domain: 'tunnel.example.com', publicUrl: 'https://tunnel.example.com', extraAudiences: [`127.0.0.1:${port}`] });
    // The agent dials the relay directly (as behind a TLS terminator); its token names that address.
    const tunnel = await startTunnel(`http://127.0.0.1:${relay.port}`, appPort, { hostHeader: 'rewrite' });
    expect(tunnel.url).toBe(`https://${tunnel.label}.tunnel.example.com`);
    const r = await request(relay.port, `${tunnel.label}.tunnel.example.com`);
    expect(JSON.parse(r.text)).toEqual({ host: `localhost:${appPort}`, proto: 'https', fhost: `${tunnel.label}.tunnel.example.com` });
  });

  test('a local app that reads slowly holds the public upload back', async () => {
    const total = 48 * 1024 * 1024;
    let appReq: http.IncomingMessage | undefined;
    let appBytes = 0;
    const { port: appPort } = await startApp((req, res) => {
      appReq = req;
      req.pause();
      req.on('data', (c: Buffer) => {
        appBytes += c.length;
      });
      req.on('end', () => res.end(String(appBytes)));
    });
    const relay = await startRelay({ maxBodyBytes: 2 * total });
    const tunnel = await startTunnel(relay.url, appPort);
    let sent = 0;
    const chunk = Buffer.alloc(64 * 1024, 3);
    const done = new Promise<string>((resolve, reject) => {
      const req = http.request(
        { host: '127.0.0.1', port: relay.port, method: 'POST', headers: { host: hostOf(tunnel.url), 'content-length': String(total) } },
        (res) => {
          let body = '';
          res.on('data', (c: Buffer) => {
            body += c.toString();
          });
          res.on('end', () => resolve(body));
        },
      );
      req.on('error', reject);
      const pump = (): void => {
        while (sent < total) {
          sent += chunk.length;
          if (!req.write(chunk)) {
            req.once('drain', pump);
            return;
          }
        }
        req.end();
      };
      pump();
    });
    await waitFor(() => appReq !== undefined, 3000, 'request at the app');
    await waitUntilSteady(() => sent, 'the upload to stall');
    expect(sent).toBeLessThan(total / 2);
    appReq?.resume();
    expect(await done).toBe(String(total));
  }, 30_000);
});
