/**
 * Minimal local app for the benchmark (run as its own process by bench/run.js).
 *   GET  /              -> 200 "ok"
 *   GET  /bytes?n=N     -> 200 with N bytes (application/octet-stream, Content-Length set)
 *   GET  /sse?ms=M      -> 200 text/event-stream: one event every M ms (default 10), each
 *                          "id: <seq>\ndata: <write time>\n\n", the write time being
 *                          performance.timeOrigin + performance.now() in ms (wall clock, shared
 *                          with the reading process), taken just before the write
 *   POST (any path)     -> reads the whole body, 200 "ok <bytes received>"
 *   WebSocket /ws       -> echoes every message back as it came (text or binary)
 * Prints {"port":N} on stdout once listening; exits when stdin closes (the harness died).
 */
const http = require('node:http');
const { performance } = require('node:perf_hooks');
const { WebSocketServer } = require('ws');

const MAX_BYTES = 64 * 1024 * 1024;
const bodies = new Map();
function bytesOf(n) {
  let b = bodies.get(n);
  if (b === undefined) {
    b = Buffer.alloc(n, 0x61);
    bodies.set(n, b);
  }
  return b;
}

const OK = Buffer.from('ok');

function sse(req, res) {
  const ms = Number(new URL(req.url, 'http://x').searchParams.get('ms') ?? '10');
  if (!Number.isFinite(ms) || ms < 1 || ms > 60_000) {
    res.writeHead(400, { 'content-type': 'text/plain' });
    res.end('bad ms');
    return;
  }
  res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
  res.flushHeaders();
  let seq = 0;
  const timer = setInterval(() => {
    seq++;
    res.write(`id: ${seq}\ndata: ${(performance.timeOrigin + performance.now()).toFixed(3)}\n\n`);
  }, ms);
  const stop = () => clearInterval(timer);
  req.on('close', stop);
  res.on('close', stop);
  res.on('error', stop);
}

const server = http.createServer((req, res) => {
  if (req.method === 'POST' || req.method === 'PUT') {
    let received = 0;
    req.on('data', (chunk) => {
      received += chunk.length;
    });
    req.on('end', () => {
      const body = Buffer.from(`ok ${received}`);
      res.writeHead(200, { 'content-type': 'text/plain', 'content-length': body.length });
      res.end(body);
    });
    return;
  }
  if (req.url.startsWith('/bytes')) {
    const n = Number(new URL(req.url, 'http://x').searchParams.get('n') ?? '1048576');
    if (!Number.isInteger(n) || n < 0 || n > MAX_BYTES) {
      res.writeHead(400, { 'content-type': 'text/plain' });
      res.end('bad n');
      return;
    }
    res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': n });
    res.end(bytesOf(n));
    return;
  }
  if (req.url === '/sse' || req.url.startsWith('/sse?')) {
    sse(req, res);
    return;
  }
  res.writeHead(200, { 'content-type': 'text/plain', 'content-length': OK.length });
  res.end(OK);
});
server.keepAliveTimeout = 65_000;

// WebSocket echo on the same server; upgrades on any other path are refused (400) by ws.
const wss = new WebSocketServer({ server, path: '/ws', perMessageDeflate: false });
wss.on('connection', (ws) => {
  ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary }));
  ws.on('error', () => {});
});

server.listen(Number(process.env.BENCH_APP_PORT ?? 0), '127.0.0.1', () => {
  process.stdout.write(`${JSON.stringify({ port: server.address().port })}\n`);
});

// Die with the harness: stdin is a pipe from it.
process.stdin.on('end', () => process.exit(0));
process.stdin.on('error', () => process.exit(0));
process.stdin.resume();
process.on('SIGTERM', () => process.exit(0));
process.on('SIGINT', () => process.exit(0));
