import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import type { Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import tls from 'node:tls';
import type { ConnectionEvent } from '@burrow/agent';
import { RedisBus } from '@burrow/bus';
import { selfSignedCert } from '../certs';
import { cleanup, cleanups, newKey, startRelay, startTunnel, waitFor } from '../kit';
import { startRedis } from '../redis';
import { dial, freeRange, hashAll, loggedRelay, pump, readAll, readExactly, startTcpServer } from '../tcpKit';

afterEach(cleanup);

const portOf = (tcpUrl: string | undefined): number => Number(new URL(tcpUrl as string).port);

describe('byte-exact TCP', () => {
  let certDir: string;
  let key: Buffer;
  let cert: Buffer;
  beforeAll(() => {
    certDir = mkdtempSync(join(tmpdir(), 'burrow-tcp-'));
    const files = selfSignedCert(certDir, 'localhost');
    key = readFileSync(files.key);
    cert = readFileSync(files.cert);
  });
  afterAll(() => rmSync(certDir, { recursive: true, force: true }));

  test('Postgres-style: an 8-byte SSLRequest, exactly one byte back, then TLS on the same connection', async () => {
    const SSL_REQUEST = Buffer.from('0000000804d2162f', 'hex');
    let serverSaw: Buffer | undefined;
    const localPort = await startTcpServer((socket) => {
      void readExactly(socket, 8).then((req) => {
        serverSaw = req;
        socket.write('S');
        const secure = new tls.TLSSocket(socket, { isServer: true, key, cert });
        secure.on('error', () => {});
        secure.on('data', (d: Buffer) => secure.write(d));
        secure.on('end', () => secure.end());
      });
    });
    const relay = await startRelay({ tcpPorts: await freeRange(2) });
    const tunnel = await startTunnel(relay.url, localPort, { tcp: true });
    expect(tunnel.tcpUrl).toMatch(/^tcp:\/\/localhost:\d+$/);
    const socket = await dial(portOf(tunnel.tcpUrl));
    socket.write(SSL_REQUEST);
    const answer = await readExactly(socket, 1);
    expect(answer.toString('latin1')).toBe('S');
    expect(serverSaw?.equals(SSL_REQUEST)).toBe(true);
    const secure = tls.connect({ socket, rejectUnauthorized: false, servername: 'localhost' });
    await new Promise<void>((resolve, reject) => {
      secure.once('secureConnect', () => resolve());
      secure.once('error', reject);
    });
    const payload = randomBytes(1_000_000);
    const echoed = new Promise<Buffer>((resolve) => {
      const parts: Buffer[] = [];
      let n = 0;
      secure.on('data', (c: Buffer) => {
        parts.push(c);
        n += c.length;
        if (n >= payload.length) resolve(Buffer.concat(parts));
      });
    });
    secure.write(Buffer.from('startup message'));
    secure.write(payload.subarray(15));
    const got = await echoed;
    expect(got.length).toBe(payload.length);
    expect(got.subarray(0, 15).toString()).toBe('startup message');
    expect(got.subarray(15).equals(payload.subarray(15))).toBe(true);
    secure.end();
  });

  test('100 MB each way at once: SHA-256 equal on both ends', async () => {
    const MB = 1024 * 1024;
    const serverBlock = randomBytes(MB + 8192);
    const clientBlock = randomBytes(MB + 8192);
    let serverSent: Promise<string> | undefined;
    let serverGot: Promise<{ hash: string; bytes: number }> | undefined;
    const localPort = await startTcpServer((socket) => {
      serverGot = hashAll(socket);
      serverSent = pump(socket, serverBlock, 64 * 1024, 1600);
    });
    const relay = await startRelay({ tcpPorts: await freeRange(1) });
    const tunnel = await startTunnel(relay.url, localPort, { tcp: true });
    const started = Date.now();
    const socket = await dial(portOf(tunnel.tcpUrl));
    const clientGot = hashAll(socket);
    const clientSent = await pump(socket, clientBlock, 64 * 1024, 1600);
    const got = await clientGot;
    await waitFor(() => serverGot !== undefined, 1000, 'server side');
    const atServer = await (serverGot as Promise<{ hash: string; bytes: number }>);
    expect(atServer.bytes).toBe(100 * MB);
    expect(atServer.hash).toBe(clientSent);
    expect(got.bytes).toBe(100 * MB);
    expect(got.hash).toBe(await (serverSent as Promise<string>));
    const seconds = (Date.now() - started) / 1000;
    process.stdout.write(`tcp tunnel: 2 × 100 MB in ${seconds.toFixed(2)} s (${((200 / seconds) | 0).toString()} MB/s total)\n`);
  }, 30_000);
});

describe('half-close', () => {
  test('the client shuts down writing; the server answers in full after EOF; the client gets all of it', async () => {
    const answer = randomBytes(700_000);
    let serverGot = '';
    const localPort = await startTcpServer((socket) => {
      socket.on('data', (c: Buffer) => {
        serverGot += c.toString();
      });
      socket.on('end', () => {
        // Well after EOF: the way back must still be open.
        setTimeout(() => socket.end(answer), 50);
      });
    });
    const relay = await startRelay({ tcpPorts: await freeRange(1) });
    const tunnel = await startTunnel(relay.url, localPort, { tcp: true });
    const socket = await dial(portOf(tunnel.tcpUrl));
    const reply = readAll(socket);
    socket.end('question, then EOF');
    const r = await reply;
    expect(serverGot).toBe('question, then EOF');
    expect(r.ended).toBe('end');
    expect(r.data.equals(answer)).toBe(true);
  });

  test('the server shuts down writing first; the client still sends everything, the server reads it all', async () => {
    const upload = randomBytes(700_000);
    const serverGot = new Promise<Buffer>((resolve) => {
      void startTcpServer((socket) => {
        socket.end('bye from the server');
        const parts: Buffer[] = [];
        socket.on('data', (c: Buffer) => parts.push(c));
        socket.on('end', () => resolve(Buffer.concat(parts)));
      }).then((port) => {
        localPort = port;
      });
    });
    let localPort = 0;
    await waitFor(() => localPort !== 0, 1000, 'local server');
    const relay = await startRelay({ tcpPorts: await freeRange(1) });
    const tunnel = await startTunnel(relay.url, localPort, { tcp: true });
    const socket = await dial(portOf(tunnel.tcpUrl));
    const fromServer = readAll(socket);
    await new Promise<void>((resolve) => socket.once('end', () => resolve()));
    // The server's FIN arrived; the client's direction is still open.
    socket.end(upload);
    expect((await fromServer).data.toString()).toBe('bye from the server');
    expect((await serverGot).equals(upload)).toBe(true);
  });
});

describe('ports', () => {
  const echo = (socket: Socket): void => {
    socket.pipe(socket);
  };
  async function roundTrip(port: number, host = '127.0.0.1'): Promise<string> {
    const socket = await dial(port, host);
    const reply = readAll(socket);
    socket.end('ping');
    return (await reply).data.toString();
  }

  test('the same key gets the same port after a reconnect; another key gets the next free one; a full range is a coded error', async () => {
    const localPort = await startTcpServer(echo);
    const range = await freeRange(2);
    const relay = await startRelay({ tcpPorts: range });
    const keyPair = newKey();
    const t1 = await startTunnel(relay.url, localPort, { tcp: true, keyPair });
    expect(portOf(t1.tcpUrl)).toBe(range.first);
    expect(await roundTrip(range.first)).toBe('ping');
    const back = new Promise<{ tcpUrl?: string; reconnected: boolean }>((resolve) => t1.agent.once('online', resolve));
    t1.agent.dropConnection();
    const again = await back;
    expect(again.reconnected).toBe(true);
    expect(again.tcpUrl).toBe(t1.tcpUrl);
    expect(await roundTrip(range.first)).toBe('ping');
    const t2 = await startTunnel(relay.url, localPort, { tcp: true });
    expect(portOf(t2.tcpUrl)).toBe(range.last);
    await expect(startTunnel(relay.url, localPort, { tcp: true, timeoutMs: 1500 })).rejects.toThrow(/BURROW_ERR_TCP_PORTS_EXHAUSTED/);
  });

  test('a relay without --tcp-ports refuses with BURROW_ERR_TCP_DISABLED; a port nobody holds closes cleanly', async () => {
    const relay = await startRelay();
    await expect(startTunnel(relay.url, 5432, { tcp: true })).rejects.toMatchObject({ code: 'BURROW_ERR_TCP_DISABLED' });
    const range = await freeRange(1);
    const withPorts = await loggedRelay({ tcpPorts: range });
    const socket = await dial(range.first);
    const r = await readAll(socket);
    expect(r).toEqual({ data: Buffer.alloc(0), ended: 'end' });
    await waitFor(() => withPorts.lines.some((l) => l.code === 'BURROW_ERR_UNKNOWN_TUNNEL'), 2000, 'log line');
  });

  test('a local target that refuses: the client gets a clean close, relay and agent each log the reason', async () => {
    const closedPort = await startTcpServer(() => {});
    await cleanup(); // the server is gone: its port refuses
    const range = await freeRange(1);
    const relay = await loggedRelay({ tcpPorts: range });
    const tunnel = await startTunnel(relay.url, closedPort, { tcp: true });
    const events: ConnectionEvent[] = [];
    tunnel.agent.on('connection', (e) => events.push(e));
    const r = await readAll(await dial(range.first));
    expect(r.ended).toBe('end');
    await waitFor(() => events.length > 0, 2000, 'agent event');
    expect(events[0]?.error).toBe('BURROW_ERR_LOCAL_UNREACHABLE');
    await waitFor(() => relay.lines.some((l) => l.code === 'BURROW_ERR_LOCAL_UNREACHABLE'), 2000, 'relay log line');
  });

  test('two relay nodes on Redis: a connection to the port on the node without the agent reaches it', async () => {
    const redis = await startRedis();
    cleanups.push(() => redis.stop());
    const localPort = await startTcpServer(echo);
    const range = await freeRange(2, ['127.0.0.1', '127.0.0.2']);
    const node = async (id: string, host: string) => {
      const nodeId = `${id}-${process.pid}-${randomBytes(3).toString('hex')}`;
      return startRelay({ nodeId, host, tcpPorts: range, leaseTtlMs: 1500 }, new RedisBus({ nodeId, url: redis.url, leaseTtlMs: 1500 }));
    };
    const a = await node('a', '127.0.0.1');
    await node('b', '127.0.0.2');
    const tunnel = await startTunnel(a.url, localPort, { tcp: true });
    const port = portOf(tunnel.tcpUrl);
    expect(await roundTrip(port, '127.0.0.2')).toBe('ping');
    expect(await roundTrip(port, '127.0.0.1')).toBe('ping');
    // Renewed with the leases: still there after more than a lease period.
    await new Promise((r) => setTimeout(r, 1800));
    expect(await roundTrip(port, '127.0.0.2')).toBe('ping');
  });
});

describe('limits', () => {
  test('--allow-cidr on a TCP tunnel: a visitor outside gets a clean close and a relay log line; credentials are refused at registration', async () => {
    let reached = 0;
    const localPort = await startTcpServer((socket) => {
      reached++;
      socket.pipe(socket);
    });
    const range = await freeRange(2);
    const relay = await loggedRelay({ tcpPorts: range });
    const outside = await startTunnel(relay.url, localPort, { tcp: true, access: { allowCidrs: ['10.0.0.0/8'] } });
    const inside = await startTunnel(relay.url, localPort, { tcp: true, access: { allowCidrs: ['127.0.0.0/8'] } });
    const portOf = (url: string | undefined): number => Number(new URL(String(url)).port);
    const refused = await readAll(await dial(portOf(outside.tcpUrl)));
    expect(refused).toEqual({ data: Buffer.alloc(0), ended: 'end' });
    await waitFor(() => relay.lines.some((l) => l.code === 'BURROW_ERR_VISITOR_FORBIDDEN'), 2000, 'relay log line');
    expect(reached).toBe(0);
    const s = await dial(portOf(inside.tcpUrl));
    const reply = readAll(s);
    s.end('in');
    expect((await reply).data.toString()).toBe('in');
    expect(reached).toBe(1);
    await expect(
      startTunnel(relay.url, localPort, { tcp: true, access: { basicAuth: [{ user: 'u', sha256: 'A'.repeat(43) }] }, timeoutMs: 2000 }),
    ).rejects.toMatchObject({ code: 'BURROW_ERR_BAD_REGISTRATION' });
  });

  test('--tcp-max-connections: the extra client gets a clean close and the relay a log line; a freed slot is usable again', async () => {
    const localPort = await startTcpServer((socket) => socket.pipe(socket));
    const range = await freeRange(1);
    const relay = await loggedRelay({ tcpPorts: range, tcpMaxConnections: 2 });
    await startTunnel(relay.url, localPort, { tcp: true });
    const open: Socket[] = [];
    for (let i = 0; i < 2; i++) {
      const s = await dial(range.first);
      s.write('x');
      await readExactly(s, 1);
      open.push(s);
    }
    const third = await readAll(await dial(range.first));
    expect(third).toEqual({ data: Buffer.alloc(0), ended: 'end' });
    const refused = relay.lines.filter((l) => l.code === 'BURROW_ERR_TCP_CONNECTION_LIMIT');
    expect(refused.length).toBeGreaterThanOrEqual(1);
    expect(String(refused[0]?.msg)).toMatch(/tcp connection refused/);
    (open[0] as Socket).end();
    await waitFor(
      async () => {
        const s = await dial(range.first);
        const reply = readAll(s);
        s.end('y');
        return (await reply).data.toString() === 'y';
      },
      3000,
      'a free slot',
    );
  });

  test('--tcp-idle-timeout-ms: no byte either way closes both sides, with a log line on relay and agent', async () => {
    let localClosed = false;
    const localPort = await startTcpServer((socket) => {
      socket.on('data', (d: Buffer) => socket.write(d));
      socket.on('end', () => {
        // The agent closed the local connection (a FIN: this server is allowHalfOpen).
        localClosed = true;
        socket.end();
      });
    });
    const range = await freeRange(1);
    const relay = await loggedRelay({ tcpPorts: range, tcpIdleTimeoutMs: 300 });
    const tunnel = await startTunnel(relay.url, localPort, { tcp: true });
    const events: ConnectionEvent[] = [];
    tunnel.agent.on('connection', (e) => events.push(e));
    const socket = await dial(range.first);
    const started = Date.now();
    const r = readAll(socket);
    socket.write('a');
    const result = await r;
    expect(result).toEqual({ data: Buffer.from('a'), ended: 'end' });
    expect(Date.now() - started).toBeGreaterThanOrEqual(250);
    await waitFor(() => localClosed && events.length > 0, 2000, 'local side closed');
    expect(events[0]?.error).toBe('BURROW_ERR_TCP_IDLE');
    expect(relay.lines.some((l) => l.code === 'BURROW_ERR_TCP_IDLE')).toBe(true);
  });
});
