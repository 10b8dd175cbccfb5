/**
 * Minimal local app for the benchmark (run as its own process by bench/run.js).
 *   GET  /              -> 200 "ok"
 *   GET  /bytes?n=N     -> 200 with N bytes (application/octet-stream, Content-Length set)
 *   POST (any path)     -> reads the whole body, 200 "ok <bytes received>"
 * Prints {"port":N} on stdout once listening; exits when stdin closes (the harness died).
 */
const http = require('node:http');

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
  res.writeHead(200, { 'content-type': 'text/plain', 'content-length': OK.length });
  res.end(OK);
});
server.keepAliveTimeout = 65_000;
server.listen(Number(process.env.BENCH_APP_PORT ?? 0), '127.0.0.1', () => {
  process.stdout.write(`${JSON.stringify({ port: server.address().port })}\n`);
});

// Die with the harness: stdin is a pipe from it.
process.stdin.on('end', () => process.exit(0));
process.stdin.on('error', () => process.exit(0));
process.stdin.resume();
process.on('SIGTERM', () => process.exit(0));
process.on('SIGINT', () => process.exit(0));
