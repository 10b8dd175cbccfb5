/**
 * TCP test kit: local TCP servers, clients that read to the end or exactly n bytes, bulk
 * writers and hashers, free port ranges for --tcp-ports, and relays whose log lines are kept.
 * Everything started here is registered for cleanup in test/kit.ts's list.
 */
import { createHash } from 'node:crypto';
import net, { type AddressInfo, type Socket } from 'node:net';
import Fastify from 'fastify';
import { cleanups, startRelay } from './kit';

/** `n` consecutive ports free on every one of `hosts` a moment ago (below the ephemeral range). */
export async function freeRange(n: number, hosts: readonly string[] = ['127.0.0.1']): Promise<{ first: number; last: number }> {
  for (let attempt = 0; attempt < 50; attempt++) {
    const first = 20_000 + Math.floor(Math.random() * (12_000 - n));
    const servers: net.Server[] = [];
    let ok = true;
    for (let p = first; p < first + n && ok; p++) {
      for (const host of hosts) {
        const s = net.createServer();
        ok = await new Promise<boolean>((resolve) => {
          s.once('error', () => resolve(false));
          s.listen(p, host, () => resolve(true));
        });
        if (!ok) break;
        servers.push(s);
      }
    }
    await Promise.all(servers.map((s) => new Promise<void>((r) => s.close(() => r()))));
    if (ok) return { first, last: first + n - 1 };
  }
  throw new Error(`no ${n} consecutive free ports found`);
}

/** A local TCP server (allowHalfOpen unless told otherwise), closed at cleanup with every connection it accepted. */
export async function startTcpServer(onConnection: (socket: Socket) => void, options: { readonly allowHalfOpen?: boolean } = {}): Promise<number> {
  const sockets = new Set<Socket>();
  const server = net.createServer({ allowHalfOpen: options.allowHalfOpen ?? true }, (socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => {});
    onConnection(socket);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  cleanups.push(
    () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  );
  return (server.address() as AddressInfo).port;
}

/** A client connection to the tunnel's public port (allowHalfOpen), destroyed at cleanup. */
export function dial(port: number, host = '127.0.0.1'): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ port, host, allowHalfOpen: true });
    cleanups.push(() => {
      socket.destroy();
    });
    socket.once('connect', () => resolve(socket));
    socket.once('error', reject);
  });
}

/** Everything the socket sends until its FIN, and how it ended ('end' = clean FIN, else the error code). */
export function readAll(socket: Socket): Promise<{ data: Buffer; ended: string }> {
  return new Promise((resolve) => {
    const parts: Buffer[] = [];
    let ended = 'close';
    socket.on('data', (c: Buffer) => parts.push(c));
    socket.once('end', () => {
      ended = 'end';
      resolve({ data: Buffer.concat(parts), ended });
    });
    socket.once('error', (err: NodeJS.ErrnoException) => {
      ended = err.code ?? 'error';
    });
    socket.once('close', () => resolve({ data: Buffer.concat(parts), ended }));
  });
}

/** Reads exactly n bytes (no more) from a paused-mode socket. */
export function readExactly(socket: Socket, n: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const tryRead = (): void => {
      const b = socket.read(n) as Buffer | null;
      if (b === null) return;
      socket.off('readable', tryRead);
      socket.off('end', onEnd);
      resolve(b);
    };
    const onEnd = (): void => reject(new Error(`connection ended before ${n} bytes`));
    socket.on('readable', tryRead);
    socket.once('end', onEnd);
    tryRead();
  });
}

/** Writes `total` bytes of `block` views (each at another offset, so order matters) with backpressure, then ends. */
export async function pump(socket: Socket, block: Buffer, chunk: number, count: number): Promise<string> {
  const hash = createHash('sha256');
  for (let i = 0; i < count; i++) {
    const offset = (i * 4099) % (block.length - chunk);
    const view = block.subarray(offset, offset + chunk);
    hash.update(view);
    if (!socket.write(view)) await new Promise((r) => socket.once('drain', r));
  }
  socket.end();
  return hash.digest('hex');
}

/** SHA-256 and length of everything until FIN. */
export function hashAll(socket: Socket): Promise<{ hash: string; bytes: number }> {
  return new Promise((resolve, reject) => {
    const hash = createHash('sha256');
    let bytes = 0;
    socket.on('data', (c: Buffer) => {
      hash.update(c);
      bytes += c.length;
    });
    socket.once('end', () => resolve({ hash: hash.digest('hex'), bytes }));
    socket.once('error', reject);
  });
}

/** A relay whose log lines are kept (JSON objects, in order). */
export async function loggedRelay(
  overrides: Parameters<typeof startRelay>[0] = {},
  bus?: Parameters<typeof startRelay>[1],
  deps: Parameters<typeof startRelay>[2] = {},
) {
  const lines: Array<Record<string, unknown>> = [];
  const logger = Fastify({ logger: { level: 'info', stream: { write: (l: string) => lines.push(JSON.parse(l) as Record<string, unknown>) } } }).log;
  const started = await startRelay(overrides, bus, { ...deps, logger });
  return { ...started, lines };
}
