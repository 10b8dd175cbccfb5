/**
 * The local app every soak tunnel forwards to: one node:http server with a WebSocket echo.
 *   GET  /hello?i=N          -> 200 "hello N", header x-soak-i: N
 *   POST /echo               -> 200, the request body streamed back as it arrives
 *   GET  /bytes?off=K        -> 200, DOWNLOAD_BYTES bytes: the reference buffer rotated by K (Content-Length set)
 *   GET  /sse?n=N&ms=M&tag=T -> text/event-stream, N events "id: i\ndata: T-i\n\n" M ms apart, then the end
 *   WebSocket /ws            -> every message echoed back as it came (text or binary)
 * It checks nothing; the traffic side knows what each answer must be (sseText, rotated).
 */
import { randomBytes } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { WebSocketServer } from 'ws';
import { cleanups, startApp } from '../../test/kit';

export const DOWNLOAD_BYTES = 1024 * 1024;
/** Random, so a shifted, dropped or repeated chunk cannot match by accident. */
export const REFERENCE = randomBytes(DOWNLOAD_BYTES);

/** The body of GET /bytes?off=K. */
export function rotated(off: number): Buffer {
  return Buffer.concat([REFERENCE.subarray(off), REFERENCE.subarray(0, off)]);
}

/** The whole body of GET /sse?n=N&tag=T. */
export function sseText(n: number, tag: string): string {
  let s = '';
  for (let i = 1; i <= n; i++) s += `id: ${i}\ndata: ${tag}-${i}\n\n`;
  return s;
}

function sse(url: URL, res: ServerResponse): void {
  const n = Number(url.searchParams.get('n'));
  const ms = Number(url.searchParams.get('ms'));
  const tag = url.searchParams.get('tag') ?? '';
  res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
  res.flushHeaders();
  let i = 0;
  const timer = setInterval(() => {
    i++;
    res.write(`id: ${i}\ndata: ${tag}-${i}\n\n`);
    if (i >= n) {
      clearInterval(timer);
      res.end();
    }
  }, ms);
  res.on('close', () => clearInterval(timer));
}

function handle(req: IncomingMessage, res: ServerResponse): void {
  const url = new URL(req.url ?? '/', 'http://app');
  if (req.method === 'GET' && url.pathname === '/hello') {
    const i = url.searchParams.get('i') ?? '';
    res.writeHead(200, { 'content-type': 'text/plain', 'x-soak-i': i });
    res.end(`hello ${i}`);
  } else if (req.method === 'POST' && url.pathname === '/echo') {
    res.writeHead(200, { 'content-type': 'application/octet-stream' });
    req.pipe(res);
  } else if (req.method === 'GET' && url.pathname === '/bytes') {
    const off = Number(url.searchParams.get('off')) % DOWNLOAD_BYTES;
    res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': DOWNLOAD_BYTES });
    res.write(REFERENCE.subarray(off));
    res.end(REFERENCE.subarray(0, off));
  } else if (req.method === 'GET' && url.pathname === '/sse') {
    sse(url, res);
  } else {
    res.writeHead(404, { 'content-type': 'text/plain' });
    res.end('no such route');
  }
}

/** Starts the app on a loopback port; stopped by the kit's cleanup(). */
export async function startLocalApp(): Promise<{ port: number }> {
  const { server, port } = await startApp(handle);
  const wss = new WebSocketServer({ server, path: '/ws', perMessageDeflate: false, maxPayload: 1024 * 1024 });
  wss.on('connection', (ws) => {
    ws.on('error', () => {});
    ws.on('message', (data, isBinary) => ws.send(data as Buffer, { binary: isBinary }));
  });
  cleanups.push(() => {
    // Upgraded sockets are no longer the HTTP server's: end them here.
    for (const ws of wss.clients) ws.terminate();
    wss.close();
  });
  return { port };
}
