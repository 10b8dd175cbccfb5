#!/usr/bin/env node
/**
 * A tiny local app to put behind a tunnel: an HTML page that shows what it received,
 * /events (server-sent events, one per second) and /echo (POST body echoed back).
 * Usage: node examples/hello-app.js [port]   (default 3000, or $PORT)
 */

const http = require('node:http');

const port = Number(process.argv[2] ?? process.env.PORT ?? 3000);
const esc = (s) => String(s).replace(/[&<>"]/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;' })[c]);

const server = http.createServer((req, res) => {
  if (req.url === '/events') {
    res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
    res.flushHeaders();
    let n = 0;
    const timer = setInterval(() => res.write(`data: tick ${++n} at ${new Date().toISOString()}\n\n`), 1000);
    res.on('close', () => clearInterval(timer));
    return;
  }
  if (req.url === '/echo' && req.method === 'POST') {
    res.setHeader('content-type', req.headers['content-type'] ?? 'application/octet-stream');
    req.pipe(res);
    return;
  }
  const rows = Object.entries(req.headers)
    .map(([k, v]) => `<tr><td>${esc(k)}</td><td>${esc(v)}</td></tr>`)
    .join('');
  res.setHeader('content-type', 'text/html; charset=utf-8');
  res.end(`<!doctype html><title>hello from burrow</title><h1>Hello through burrow</h1>
<p>${esc(req.method)} <code>${esc(req.url)}</code></p><table>${rows}</table>
<p>Try <a href="/events">/events</a> (server-sent events) or <code>curl -d hi …/echo</code>.</p>\n`);
});

server.listen(port, '127.0.0.1', () => {
  process.stdout.write(`hello-app listening on http://127.0.0.1:${server.address().port}\n`);
});
for (const sig of ['SIGINT', 'SIGTERM']) process.on(sig, () => server.close(() => process.exit(0)));
