/**
 * Server-sent events reader, in a child process of bench/run.js. One JSON spec in argv[2]:
 *   { port, host, path, durationS, warmupS, timeoutS }
 * Opens one GET (Accept: text/event-stream) and reads events of the form
 * "id: <seq>\ndata: <write time ms>\n\n" written by bench/lib/app.js. For each event, delay =
 * the time the chunk holding it was read here - the time the app wrote it. Both times are
 * performance.timeOrigin + performance.now() in ms, i.e. the machine's wall clock seen from two
 * processes. Unrecorded warm-up on the same stream, then "MEASURE_START" on stdout, then the
 * measured window, then one JSON result line.
 */
const http = require('node:http');
const { performance } = require('node:perf_hooks');

const spec = JSON.parse(process.argv[2]);
const timeoutMs = (spec.timeoutS ?? 10) * 1000;
const wallNow = () => performance.timeOrigin + performance.now();

function pct(sorted, p) {
  if (sorted.length === 0) return null;
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[i];
}

function fail(msg) {
  process.stderr.write(`sse worker: ${msg}\n`);
  process.exit(1);
}

const delays = [];
const counters = { warmup: 0, measured: 0 };
const errorCodes = {};
let errors = 0;
let timeouts = 0;
let lost = 0;
let malformed = 0;
let lastSeq;
let phase = 'warmup';
let phaseEnd = 0;
let tMeasure0 = 0;
let tMeasure1 = 0;
let cpu0;
let finished = false;
let req;
let idleTimer;
let firstByteMs = null;
let maxChunkEvents = 0;

function startMeasuring() {
  phase = 'measured';
  process.stdout.write('MEASURE_START\n');
  cpu0 = process.cpuUsage();
  tMeasure0 = performance.now();
  phaseEnd = tMeasure0 + spec.durationS * 1000;
}

function finish(why) {
  if (finished) return;
  finished = true;
  clearTimeout(idleTimer);
  if (phase === 'warmup') {
    process.stdout.write('MEASURE_START\n');
    cpu0 = process.cpuUsage();
    tMeasure0 = performance.now();
  }
  tMeasure1 = performance.now();
  const cpu = process.cpuUsage(cpu0);
  req?.destroy();
  const durationS = (tMeasure1 - tMeasure0) / 1000;
  const sorted = Float64Array.from(delays).sort();
  process.stdout.write(
    `${JSON.stringify({
      tool: 'sse',
      durationS,
      ok: counters.measured,
      non2xx: 0,
      statusCodes: {},
      errors,
      timeouts,
      errorCodes,
      rps: durationS > 0 ? counters.measured / durationS : 0,
      bytesPerS: 0,
      latencyMs: {
        p50: pct(sorted, 50),
        p90: pct(sorted, 90),
        p99: pct(sorted, 99),
        mean: sorted.length ? delays.reduce((a, b) => a + b, 0) / delays.length : null,
        min: sorted.length ? sorted[0] : null,
        max: sorted.length ? sorted[sorted.length - 1] : null,
      },
      lostEvents: lost,
      malformedEvents: malformed,
      maxEventsPerRead: maxChunkEvents,
      firstByteMs,
      endedBy: why,
      loadCpuS: (cpu.user + cpu.system) / 1e6,
      warmup: { ok: counters.warmup, non2xx: 0, errors: 0, timeouts: 0, errorCodes: {} },
    })}\n`,
  );
  process.exit(0);
}

function armIdle() {
  clearTimeout(idleTimer);
  idleTimer = setTimeout(() => {
    timeouts++;
    errors++;
    errorCodes.timeout = (errorCodes.timeout ?? 0) + 1;
    finish(`no event for ${timeoutMs} ms`);
  }, timeoutMs);
}

const t0 = performance.now();
const headers = { accept: 'text/event-stream' };
if (spec.host !== undefined) headers.host = spec.host;
req = http.get({ host: '127.0.0.1', port: spec.port, path: spec.path, headers, agent: false }, (res) => {
  if (res.statusCode !== 200) {
    let body = '';
    res.on('data', (c) => {
      body += c;
    });
    res.on('end', () => fail(`status ${res.statusCode} ${res.headers['x-burrow-error'] ?? ''}: ${body.slice(0, 300)}`));
    return;
  }
  phaseEnd = performance.now() + (spec.warmupS ?? 0) * 1000;
  if ((spec.warmupS ?? 0) <= 0) startMeasuring();
  res.setEncoding('utf8');
  let buf = '';
  armIdle();
  res.on('data', (chunk) => {
    const readAt = wallNow();
    if (finished) return;
    if (firstByteMs === null) firstByteMs = performance.now() - t0;
    armIdle();
    buf += chunk;
    let events = 0;
    for (;;) {
      const end = buf.indexOf('\n\n');
      if (end < 0) break;
      const block = buf.slice(0, end);
      buf = buf.slice(end + 2);
      let seq;
      let written;
      for (const line of block.split('\n')) {
        if (line.startsWith('id: ')) seq = Number(line.slice(4));
        else if (line.startsWith('data: ')) written = Number(line.slice(6));
      }
      if (!Number.isFinite(seq) || !Number.isFinite(written)) {
        malformed++;
        continue;
      }
      events++;
      if (lastSeq !== undefined && seq !== lastSeq + 1) lost += Math.max(0, seq - lastSeq - 1);
      lastSeq = seq;
      counters[phase]++;
      if (phase === 'measured') delays.push(readAt - written);
    }
    if (events > maxChunkEvents) maxChunkEvents = events;
    if (performance.now() >= phaseEnd) {
      if (phase === 'warmup') startMeasuring();
      else finish('duration');
    }
  });
  res.on('end', () => {
    if (finished) return;
    errors++;
    errorCodes['stream ended'] = (errorCodes['stream ended'] ?? 0) + 1;
    finish('the server ended the stream');
  });
  res.on('error', (err) => {
    if (finished) return;
    errors++;
    const code = err.code || err.message || 'unknown';
    errorCodes[code] = (errorCodes[code] ?? 0) + 1;
    finish(`response error: ${code}`);
  });
});
req.setTimeout(timeoutMs, () => req.destroy(new Error(`no response head within ${timeoutMs} ms`)));
req.on('error', (err) => {
  if (finished) return;
  if (firstByteMs === null) fail(`GET ${spec.path}: ${err.message}`);
  errors++;
  const code = err.code || err.message || 'unknown';
  errorCodes[code] = (errorCodes[code] ?? 0) + 1;
  finish(`request error: ${code}`);
});
