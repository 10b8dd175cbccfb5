/**
 * Load generator child process (autocannon, programmatic API). One JSON spec in argv[2]:
 *   { url, connections, durationS, warmupS, method, headers, bodyBytes, timeoutS }
 * Runs an unrecorded warm-up, then the measured run, and prints one JSON result line on stdout.
 * Latency is recorded here at microsecond resolution (autocannon's own histogram is 1 ms).
 */
const autocannon = require('autocannon');

const spec = JSON.parse(process.argv[2]);
const body = spec.bodyBytes > 0 ? Buffer.alloc(spec.bodyBytes, 0x62) : undefined;

function options(durationS) {
  return {
    url: spec.url,
    connections: spec.connections,
    duration: durationS,
    method: spec.method ?? 'GET',
    headers: { ...(spec.headers ?? {}), ...(body !== undefined ? { 'content-type': 'application/octet-stream' } : {}) },
    ...(body !== undefined ? { body } : {}),
    timeout: spec.timeoutS ?? 10,
  };
}

function runOnce(durationS, record) {
  return new Promise((resolve, reject) => {
    const lat = [];
    let okBytes = 0;
    const errorCodes = {};
    const instance = autocannon(options(durationS), (err, result) => {
      if (err) reject(err);
      else resolve({ result, lat, okBytes, errorCodes });
    });
    instance.on('reqError', (err) => {
      const code = (err && (err.code || err.message)) || 'unknown';
      errorCodes[code] = (errorCodes[code] ?? 0) + 1;
    });
    if (record) {
      instance.on('response', (_client, statusCode, resBytes, responseTimeMs) => {
        if (statusCode >= 200 && statusCode < 300) {
          lat.push(responseTimeMs);
          okBytes += resBytes;
        }
      });
    }
  });
}

function pct(sorted, p) {
  if (sorted.length === 0) return null;
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[i];
}

function summarize({ result, lat, okBytes, errorCodes }) {
  const durationS = result.duration;
  const sorted = Float64Array.from(lat).sort();
  const ok = result['2xx'];
  const statusCodes = {};
  for (const [code, v] of Object.entries(result.statusCodeStats ?? {})) statusCodes[code] = v.count;
  return {
    durationS,
    ok,
    non2xx: result.non2xx,
    statusCodes,
    errors: result.errors,
    timeouts: result.timeouts,
    resets: result.resets ?? 0,
    errorCodes,
    rps: durationS > 0 ? ok / durationS : 0,
    bytesPerS: durationS > 0 ? okBytes / durationS : 0,
    latencyMs: {
      p50: pct(sorted, 50),
      p99: pct(sorted, 99),
      mean: sorted.length ? lat.reduce((a, b) => a + b, 0) / lat.length : null,
      max: sorted.length ? sorted[sorted.length - 1] : null,
    },
  };
}

(async () => {
  let warmup;
  if (spec.warmupS > 0) {
    const w = summarize(await runOnce(spec.warmupS, false));
    warmup = { ok: w.ok, non2xx: w.non2xx, errors: w.errors, timeouts: w.timeouts, statusCodes: w.statusCodes, errorCodes: w.errorCodes };
  }
  // The harness snapshots the other processes' CPU time when it sees this line.
  process.stdout.write('MEASURE_START\n');
  const cpu0 = process.cpuUsage();
  const measured = summarize(await runOnce(spec.durationS, true));
  const cpu = process.cpuUsage(cpu0);
  const loadCpuS = (cpu.user + cpu.system) / 1e6;
  process.stdout.write(`${JSON.stringify({ tool: 'autocannon', ...measured, loadCpuS, warmup })}\n`);
})().catch((err) => {
  process.stderr.write(`autocannon worker: ${err?.stack ? err.stack : String(err)}\n`);
  process.exit(1);
});
