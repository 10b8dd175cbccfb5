/**
 * WebSocket echo client, in a child process of bench/run.js. One JSON spec in argv[2]:
 *   { url, host, durationS, warmupS, messageBytes, timeoutS }
 * Opens one connection and keeps exactly one message in flight: send, wait for the echo,
 * check it, send the next. Unrecorded warm-up on the same connection, then "MEASURE_START" on
 * stdout, then the measured window, then one JSON result line. Round trips at µs resolution.
 * Exits 1 (message on stderr) if the connection cannot be opened.
 */
const { performance } = require('node:perf_hooks');
const WebSocket = require('ws');

const spec = JSON.parse(process.argv[2]);
const messageBytes = spec.messageBytes ?? 32;
const timeoutMs = (spec.timeoutS ?? 10) * 1000;

function pct(sorted, p) {
  if (sorted.length === 0) return null;
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[i];
}

function fail(msg) {
  process.stderr.write(`ws-echo worker: ${msg}\n`);
  process.exit(1);
}

const tOpen0 = performance.now();
const ws = new WebSocket(spec.url, { perMessageDeflate: false, headers: spec.host !== undefined ? { host: spec.host } : {}, handshakeTimeout: timeoutMs });
const errorCodes = {};
const counters = { warmup: { ok: 0, mismatched: 0 }, measured: { ok: 0, mismatched: 0 } };
const lat = [];
let phase = 'warmup';
let phaseEnd = 0;
let tMeasure0 = 0;
let tMeasure1 = 0;
let cpu0;
let seq = 0;
let sentAt = 0;
let expected;
let timer;
let opened = false;
let finished = false;
let errors = 0;
let timeouts = 0;
let closeInfo;
let handshakeMs = null;

const payload = Buffer.alloc(messageBytes, 0x78);

function sendNext() {
  seq++;
  payload.writeUInt32BE(seq >>> 0, 0);
  expected = Buffer.from(payload);
  clearTimeout(timer);
  timer = setTimeout(() => {
    timeouts++;
    errors++;
    errorCodes.timeout = (errorCodes.timeout ?? 0) + 1;
    finish('no echo within the timeout');
  }, timeoutMs);
  sentAt = performance.now();
  ws.send(expected, { binary: true });
}

function finish(why) {
  if (finished) return;
  finished = true;
  clearTimeout(timer);
  const now = performance.now();
  if (phase === 'measured') tMeasure1 = now;
  if (phase === 'warmup') {
    // Never reached the measured window.
    process.stdout.write('MEASURE_START\n');
    cpu0 = process.cpuUsage();
    tMeasure0 = tMeasure1 = now;
  }
  const cpu = process.cpuUsage(cpu0);
  const durationS = (tMeasure1 - tMeasure0) / 1000;
  const sorted = Float64Array.from(lat).sort();
  const m = counters.measured;
  const result = {
    tool: 'ws',
    durationS,
    ok: m.ok,
    non2xx: m.mismatched,
    statusCodes: {},
    errors,
    timeouts,
    errorCodes,
    rps: durationS > 0 ? m.ok / durationS : 0,
    bytesPerS: durationS > 0 ? (m.ok * messageBytes) / durationS : 0,
    latencyMs: {
      p50: pct(sorted, 50),
      p90: pct(sorted, 90),
      p99: pct(sorted, 99),
      mean: sorted.length ? lat.reduce((a, b) => a + b, 0) / lat.length : null,
      max: sorted.length ? sorted[sorted.length - 1] : null,
    },
    messageBytes,
    handshakeMs: opened ? handshakeMs : null,
    endedBy: why,
    loadCpuS: (cpu.user + cpu.system) / 1e6,
    warmup: { ok: counters.warmup.ok, non2xx: counters.warmup.mismatched, errors: 0, timeouts: 0, errorCodes: {} },
  };
  const print = () => {
    if (closeInfo !== undefined) result.close = closeInfo;
    process.stdout.write(`${JSON.stringify(result)}\n`);
    process.exit(0);
  };
  if (ws.readyState === WebSocket.OPEN) {
    // A clean close (1000) and its answer, as a real client would, bounded.
    ws.once('close', print);
    ws.close(1000, 'bench done');
    setTimeout(() => {
      closeInfo = { code: null, reason: 'no close answer within 2 s' };
      print();
    }, 2000).unref();
  } else print();
}

ws.on('open', () => {
  opened = true;
  handshakeMs = performance.now() - tOpen0;
  phaseEnd = performance.now() + (spec.warmupS ?? 0) * 1000;
  if ((spec.warmupS ?? 0) <= 0) {
    phase = 'measured';
    process.stdout.write('MEASURE_START\n');
    cpu0 = process.cpuUsage();
    tMeasure0 = performance.now();
    phaseEnd = tMeasure0 + spec.durationS * 1000;
  }
  sendNext();
});

ws.on('message', (data) => {
  const now = performance.now();
  if (finished) return;
  const c = counters[phase];
  if (Buffer.isBuffer(data) && expected !== undefined && data.equals(expected)) {
    c.ok++;
    if (phase === 'measured') lat.push(now - sentAt);
  } else c.mismatched++;
  expected = undefined;
  if (now >= phaseEnd) {
    if (phase === 'warmup') {
      phase = 'measured';
      process.stdout.write('MEASURE_START\n');
      cpu0 = process.cpuUsage();
      tMeasure0 = performance.now();
      phaseEnd = tMeasure0 + spec.durationS * 1000;
    } else {
      finish('duration');
      return;
    }
  }
  sendNext();
});

ws.on('unexpected-response', (_req, res) => {
  let body = '';
  res.on('data', (c) => {
    body += c;
  });
  res.on('end', () => fail(`handshake answered ${res.statusCode} ${res.headers['x-burrow-error'] ?? ''}: ${body.slice(0, 300)}`));
  res.on('error', () => fail(`handshake answered ${res.statusCode}`));
});

ws.on('error', (err) => {
  if (!opened) fail(`could not open ${spec.url}: ${err.message}`);
  errors++;
  const code = err.code || err.message || 'unknown';
  errorCodes[code] = (errorCodes[code] ?? 0) + 1;
});

ws.on('close', (code, reason) => {
  closeInfo = { code, reason: reason.toString() };
  if (!finished) {
    errors++;
    errorCodes[`close ${code}`] = (errorCodes[`close ${code}`] ?? 0) + 1;
    finish(`connection closed early (${code} ${reason.toString()})`);
  }
});
