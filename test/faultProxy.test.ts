/** The fault proxy itself: each fault does what it says on a plain TCP echo target. */
import net, { type AddressInfo, type Socket } from 'node:net';
import { FaultProxy } from './faultProxy';
import { cleanup, cleanups, waitFor } from './kit';
import { startTcpServer } from './tcpKit';

afterEach(cleanup);

/** A TCP echo server: what a connection sends comes back, and its end ends the echo. */
function echoTarget(): Promise<number> {
  return startTcpServer((s) => s.pipe(s));
}

async function proxied(): Promise<FaultProxy> {
  const proxy = await FaultProxy.start({ targetPort: await echoTarget() });
  cleanups.push(() => proxy.close());
  return proxy;
}

interface Client {
  readonly socket: Socket;
  received(): number;
  readonly ended: Promise<string>;
}

async function client(port: number): Promise<Client> {
  const socket = net.connect(port, '127.0.0.1');
  cleanups.push(() => void socket.destroy());
  let bytes = 0;
  socket.on('data', (c: Buffer) => {
    bytes += c.length;
  });
  const ended = new Promise<string>((resolve) => {
    socket.on('end', () => resolve('end'));
    socket.on('error', (e: NodeJS.ErrnoException) => resolve(e.code ?? 'error'));
  });
  await new Promise<void>((r) => socket.once('connect', () => r()));
  return { socket, received: () => bytes, ended };
}

describe('fault proxy', () => {
  test('passes bytes both ways untouched, then cut() ends the connection with a FIN', async () => {
    const proxy = await proxied();
    const c = await client(proxy.port);
    c.socket.write(Buffer.alloc(100_000, 7));
    await waitFor(() => c.received() === 100_000, 3000, 'echo');
    expect(proxy.totals).toEqual({ connections: 1, up: 100_000, down: 100_000 });
    proxy.cut();
    expect(await c.ended).toBe('end');
    await waitFor(() => proxy.open === 0, 3000, 'link gone');
  });

  test('reset() gives the client ECONNRESET', async () => {
    const proxy = await proxied();
    const c = await client(proxy.port);
    proxy.reset();
    expect(await c.ended).toBe('ECONNRESET');
  });

  test('reset() of a connection already ending (cut, with bytes still queued) frees it: no socket left half-closed', async () => {
    // A target that never reads: bytes pile up in the proxy, so cut()'s FIN waits behind them.
    const held: Socket[] = [];
    const server = net.createServer((s) => {
      s.pause();
      held.push(s);
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    cleanups.push(() => {
      for (const s of held) s.destroy();
      return new Promise<void>((r) => server.close(() => r()));
    });
    const proxy = await FaultProxy.start({ targetPort: (server.address() as AddressInfo).port });
    cleanups.push(() => proxy.close());
    const c = await client(proxy.port);
    c.socket.write(Buffer.alloc(8 * 1024 * 1024));
    await waitFor(() => proxy.totals.up > 0, 3000, 'bytes through the proxy');
    proxy.cut();
    proxy.reset();
    await waitFor(() => proxy.open === 0, 3000, 'the link closed');
  });

  test('stall() drops bytes both ways without closing; heal() lets new bytes through', async () => {
    const proxy = await proxied();
    const c = await client(proxy.port);
    proxy.stall();
    c.socket.write('lost');
    await new Promise((r) => setTimeout(r, 100));
    expect(c.received()).toBe(0);
    expect(proxy.open).toBe(1);
    proxy.heal();
    c.socket.write('found');
    await waitFor(() => c.received() === 5, 3000, 'echo after heal');
  });

  test('after(n) breaks a connection after exactly n bytes in one direction', async () => {
    const proxy = await proxied();
    proxy.after(1000, 'down', 'cut');
    const c = await client(proxy.port);
    c.socket.write(Buffer.alloc(5000, 1));
    expect(await c.ended).toBe('end');
    expect(c.received()).toBe(1000);
    // The trigger fired once: the next connection is a plain pipe.
    const d = await client(proxy.port);
    d.socket.write(Buffer.alloc(5000, 1));
    await waitFor(() => d.received() === 5000, 3000, 'second connection echo');
  });

  test('refuse() resets new connections until accept()', async () => {
    const proxy = await proxied();
    proxy.refuse();
    const refused = await new Promise<string>((resolve) => {
      const s = net.connect(proxy.port, '127.0.0.1');
      s.on('error', (e: NodeJS.ErrnoException) => resolve(e.code ?? 'error'));
      s.on('close', () => resolve('closed'));
    });
    expect(['ECONNRESET', 'closed']).toContain(refused);
    proxy.accept();
    const c = await client(proxy.port);
    c.socket.write('x');
    await waitFor(() => c.received() === 1, 3000, 'echo after accept');
  });

  test('slow() holds a connection to the given rate, and clear() lifts it', async () => {
    const proxy = await proxied();
    proxy.slow(20_000);
    const c = await client(proxy.port);
    const started = Date.now();
    c.socket.write(Buffer.alloc(10_000, 1));
    await waitFor(() => c.received() === 10_000, 5000, 'slow echo');
    // 10 kB up and 10 kB down at 20 kB/s each way: at least ~0.5 s, not instant.
    expect(Date.now() - started).toBeGreaterThanOrEqual(400);
    proxy.clear();
    c.socket.write(Buffer.alloc(10_000, 1));
    await waitFor(() => c.received() === 20_000, 3000, 'fast echo');
  });
});
