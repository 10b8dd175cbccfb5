/**
 * The tcp bench scenarios, run by bench/run.js (--only tcp): a relay with --tcp-ports, an agent
 * `burrow tcp` to bench/lib/tcp-server.js, then the same measurements directly and through the
 * tunnel's public port, in one run:
 *   - throughput: MB/s of one upload (client → server) and one download (server → client) of
 *     TCP_BYTES each, on one connection each;
 *   - connect latency: TCP connect, one byte written, first byte echoed back; sequential samples,
 *     p50 and p99 (through the tunnel this includes the relay → agent → local dial).
 * The client side runs in the harness process.
 */
const fs = require('node:fs');
const net = require('node:net');
const path = require('node:path');
const { performance } = require('node:perf_hooks');

const TCP_SERVER = path.join(__dirname, 'tcp-server.js');
const TCP_BYTES = 256 * 1024 * 1024;
const MB = 1024 * 1024;

function connect(port) {
  return new Promise((resolve, reject) => {
    const s = net.connect({ port, host: '127.0.0.1', allowHalfOpen: true, noDelay: true });
    s.once('connect', () => resolve(s));
    s.once('error', reject);
  });
}

/** Everything until EOF, counted (and the last 8 bytes kept). */
function drain(socket) {
  return new Promise((resolve, reject) => {
    let bytes = 0;
    let tail = Buffer.alloc(0);
    socket.on('data', (c) => {
      bytes += c.length;
      tail = c.length >= 8 ? c.subarray(c.length - 8) : Buffer.concat([tail, c]).subarray(-8);
    });
    socket.once('end', () => {
      socket.destroy();
      resolve({ bytes, tail });
    });
    socket.once('error', reject);
  });
}

async function upload(port, total) {
  const s = await connect(port);
  const block = Buffer.alloc(64 * 1024, 0x62);
  const started = performance.now();
  const answer = drain(s);
  s.write('U');
  let left = total;
  while (left > 0) {
    const n = Math.min(left, block.length);
    left -= n;
    if (!s.write(n === block.length ? block : block.subarray(0, n))) await new Promise((r) => s.once('drain', r));
  }
  s.end();
  const { tail } = await answer;
  const ms = performance.now() - started;
  const got = Number(tail.readBigUInt64BE(0));
  if (got !== total) throw new Error(`upload: the server counted ${got} bytes of ${total}`);
  return { mbPerS: total / MB / (ms / 1000), ms };
}

async function download(port, total) {
  const s = await connect(port);
  const started = performance.now();
  const got = drain(s);
  const req = Buffer.alloc(9);
  req[0] = 0x44;
  req.writeBigUInt64BE(BigInt(total), 1);
  s.end(req);
  const { bytes } = await got;
  const ms = performance.now() - started;
  if (bytes !== total) throw new Error(`download: got ${bytes} bytes of ${total}`);
  return { mbPerS: total / MB / (ms / 1000), ms };
}

/** connect → write 'E' and one byte → first byte back, sequentially. */
async function connectLatency(port, samples) {
  const ms = [];
  for (let i = 0; i < samples; i++) {
    const started = performance.now();
    const s = await connect(port);
    await new Promise((resolve, reject) => {
      s.once('data', resolve);
      s.once('error', reject);
      s.write('Ex');
    });
    ms.push(performance.now() - started);
    s.destroy();
  }
  ms.sort((a, b) => a - b);
  const at = (q) => ms[Math.min(ms.length - 1, Math.floor(q * ms.length))];
  return { samples, p50Ms: at(0.5), p99Ms: at(0.99), meanMs: ms.reduce((a, b) => a + b, 0) / ms.length };
}

/** ctx: the harness's startChild, startRelay, firstLine, waitFor, freePort, log, tmpDir, AGENT_BIN. */
async function measureTcp(ctx, { quick }) {
  const server = ctx.startChild('tcp-server', process.execPath, [TCP_SERVER], { stdio: ['pipe', 'pipe', 'inherit'] });
  const line = await ctx.firstLine(server.stdout, server, 10_000, 'tcp server');
  server.stdout.resume();
  const localPort = Number(line.split(' ')[1]);
  const publicPort = await ctx.freePort();
  const relay = await ctx.startRelay({ name: 'relay-tcp', logName: 'relay-tcp.log', args: ['--tcp-ports', `${publicPort}-${publicPort}`] });
  const home = fs.mkdtempSync(path.join(ctx.tmpDir, 'agent-tcp-home-'));
  const outFile = path.join(ctx.tmpDir, 'agent-tcp.out.jsonl');
  const out = fs.openSync(outFile, 'a');
  const agent = ctx.startChild('agent-tcp', process.execPath, [ctx.AGENT_BIN, 'tcp', String(localPort), '--relay', relay.url, '--json'], {
    env: { BURROW_HOME: home },
    stdio: ['ignore', out, 'inherit'],
  });
  fs.closeSync(out);
  const online = await ctx.waitFor(
    'tcp agent online',
    async () => {
      const text = fs.readFileSync(outFile, 'utf8');
      const l = text.split('\n').find((x) => x.includes('"online"'));
      return l === undefined ? undefined : JSON.parse(l);
    },
    { child: agent, timeoutMs: 15_000, intervalMs: 20 },
  );
  const tunnelPort = Number(new URL(online.tcpUrl).port);
  ctx.log(`tcp: agent online, ${online.tcpUrl} -> 127.0.0.1:${localPort}`);
  const bytes = quick ? TCP_BYTES / 4 : TCP_BYTES;
  const samples = quick ? 50 : 200;
  const targets = [
    ['direct', localPort],
    ['tunnel', tunnelPort],
  ];
  const result = { bytes, samples, targets: {} };
  // Warm-up: one small exchange each way on each target.
  for (const [, port] of targets) {
    await upload(port, MB);
    await download(port, MB);
    await connectLatency(port, 5);
  }
  for (const [id, port] of targets) {
    ctx.log(`tcp -> ${id}: ${bytes / MB} MB up, ${bytes / MB} MB down, ${samples} connects...`);
    result.targets[id] = { upload: await upload(port, bytes), download: await download(port, bytes), connect: await connectLatency(port, samples) };
  }
  const d = result.targets.direct;
  const t = result.targets.tunnel;
  result.tunnelVsDirect = {
    upload: t.upload.mbPerS / d.upload.mbPerS,
    download: t.download.mbPerS / d.download.mbPerS,
    connectP50AddedMs: t.connect.p50Ms - d.connect.p50Ms,
    connectP99AddedMs: t.connect.p99Ms - d.connect.p99Ms,
  };
  await ctx.stopChild(agent);
  await ctx.stopChild(relay.child);
  await ctx.stopChild(server);
  return result;
}

/** Lines for the printed summary. */
function tcpLines(r) {
  const f = (n, digits = 1) => n.toFixed(digits);
  const lines = [
    'TCP tunnel (burrow tcp), one connection per figure:',
    '| target | upload MB/s | download MB/s | connect+1st byte p50 ms | p99 ms |',
    '| --- | --- | --- | --- | --- |',
  ];
  for (const [id, x] of Object.entries(r.targets)) {
    lines.push(`| ${id} | ${f(x.upload.mbPerS, 0)} | ${f(x.download.mbPerS, 0)} | ${f(x.connect.p50Ms, 2)} | ${f(x.connect.p99Ms, 2)} |`);
  }
  const v = r.tunnelVsDirect;
  lines.push(
    `tunnel vs direct: upload ${f(v.upload, 2)}x, download ${f(v.download, 2)}x, connect p50 +${f(v.connectP50AddedMs, 2)} ms, p99 +${f(v.connectP99AddedMs, 2)} ms`,
  );
  return lines;
}

module.exports = { measureTcp, tcpLines };
