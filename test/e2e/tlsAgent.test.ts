/**
 * The agent dialing its relay over TLS (wss://), as in production behind a TLS terminator:
 * bodies both ways arrive byte for byte. Batches carrying body bytes are written to the
 * agent's socket as their parts in one corked writev (sendVectored), which on a TLS socket
 * goes through the TLS layer rather than straight to the kernel.
 */
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import net, { type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import tls from 'node:tls';
import { selfSignedCert } from '../certs';
import { cleanup, cleanups, freePort, hostOf, request, runNode, startApp, startRelay, waitFor } from '../kit';

const AGENT_BIN = join(__dirname, '..', '..', 'apps/agent/dist/bin.js');

afterEach(cleanup);

const sha256 = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

/** Deterministic, incompressible-looking bytes. */
function bytes(n: number, seed: number): Buffer {
  const b = Buffer.allocUnsafe(n);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < n; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    b[i] = x & 0xff;
  }
  return b;
}

/** A TLS terminator on loopback in front of `port`: what it decrypted, in bytes, each way. */
async function tlsTerminator(
  listenPort: number,
  port: number,
  cert: string,
  key: string,
): Promise<{ port: number; counts: { up: number; down: number; connections: number } }> {
  const counts = { up: 0, down: 0, connections: 0 };
  const server = tls.createServer({ cert: readFileSync(cert), key: readFileSync(key) }, (client) => {
    counts.connections++;
    const upstream = net.connect(port, '127.0.0.1');
    client.on('data', (c: Buffer) => {
      counts.up += c.length;
    });
    upstream.on('data', (c: Buffer) => {
      counts.down += c.length;
    });
    client.pipe(upstream).on('error', () => client.destroy());
    upstream.pipe(client).on('error', () => upstream.destroy());
    client.on('error', () => upstream.destroy());
    upstream.on('error', () => client.destroy());
    client.on('close', () => upstream.destroy());
    upstream.on('close', () => client.destroy());
  });
  await new Promise<void>((resolve) => server.listen(listenPort, '127.0.0.1', resolve));
  cleanups.push(() => new Promise<void>((resolve) => server.close(() => resolve())));
  return { port: (server.address() as AddressInfo).port, counts };
}

describe('agent over TLS (wss://)', () => {
  test('3 MiB download and 2 MiB upload through a TLS-terminated relay arrive intact', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'burrow-tls-'));
    cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
    const { cert, key } = selfSignedCert(dir, 'localhost');
    const download = bytes(3 * 1024 * 1024 + 17, 7);
    const { port: appPort } = await startApp((req, res) => {
      if (req.method === 'POST') {
        const parts: Buffer[] = [];
        req.on('data', (c: Buffer) => parts.push(c));
        req.on('end', () => {
          const body = Buffer.concat(parts);
          res.setHeader('x-sha256', sha256(body));
          res.end(String(body.length));
        });
        return;
      }
      res.setHeader('content-length', String(download.length));
      res.end(download);
    });
    // The agent signs its registration for the name it dials: the terminator's.
    const tlsPort = await freePort();
    const relay = await startRelay({ maxBodyBytes: 8 * 1024 * 1024, extraAudiences: [`localhost:${tlsPort}`] });
    const terminator = await tlsTerminator(tlsPort, relay.port, cert, key);
    const agent = runNode(AGENT_BIN, ['http', String(appPort), '--relay', `https://localhost:${terminator.port}`, '--json'], {
      BURROW_HOME: join(dir, 'home'),
      NODE_EXTRA_CA_CERTS: cert,
    });
    await waitFor(() => agent.lines.some((l) => l.includes('"online"')), 8000, 'the agent online over TLS').catch((err: Error) => {
      throw new Error(`${err.message}; agent said: ${agent.lines.join('\n')} ${agent.stderr()}`);
    });
    const online = JSON.parse(agent.lines.find((l) => l.includes('"online"')) as string) as { url: string };
    expect(terminator.counts.connections).toBe(1);

    const host = hostOf(online.url);
    const got = await request(relay.port, host, { path: '/big' });
    expect(got.status).toBe(200);
    expect(got.body.length).toBe(download.length);
    expect(sha256(got.body)).toBe(sha256(download));

    const upload = bytes(2 * 1024 * 1024 + 5, 11);
    const posted = await request(relay.port, host, { method: 'POST', path: '/up', body: upload });
    expect(posted.status).toBe(200);
    expect(posted.text).toBe(String(upload.length));
    expect(posted.headers['x-sha256']).toBe(sha256(upload));

    // Both bodies crossed the TLS connection (plus frame and WebSocket headers).
    expect(terminator.counts.up).toBeGreaterThan(download.length);
    expect(terminator.counts.down).toBeGreaterThan(upload.length);
    agent.child.kill('SIGTERM');
    expect(await agent.exit).toBe(0);
  });
});
