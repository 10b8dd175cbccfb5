#!/usr/bin/env node

/**
 * burrow benchmark harness. Plain CommonJS; needs the workspace built (`npx tsc -b`).
 *
 * Every moving part runs in its own process: the local app (bench/lib/app.js), the relay
 * (apps/relay/dist/main.js), the agent (apps/agent/dist/bin.js), nginx (if installed), the
 * load generator (autocannon in bench/lib/autocannon-worker.js, or wrk), the WebSocket and SSE
 * clients (bench/lib/ws-echo-worker.js, bench/lib/sse-worker.js) and, for the idle-memory
 * figure, processes holding thousands of light tunnels (bench/lib/light-agents.js). Loopback only.
 *
 * Usage: node bench/run.js [--quick] [--tool autocannon|wrk] [--no-nginx] [--only ids] [--keep-tmp]
 * Env:   BENCH_DURATION_S (default 5), BENCH_WARMUP_S (default 1), BENCH_TOOL, BENCH_SETUP_RUNS (default 5)
 * See bench/README.md.
 */
const { spawn, execFileSync, spawnSync } = require('node:child_process');
const fs = require('node:fs');
const http = require('node:http');
const net = require('node:net');
const os = require('node:os');
const path = require('node:path');
const { performance } = require('node:perf_hooks');

const ROOT = path.resolve(__dirname, '..');
const { summarizeProfileDir } = require('./lib/cpu-profile');
const RELAY_MAIN = path.join(ROOT, 'apps/relay/dist/main.js');
/** Node flags from the relay's shebang: every relay here runs as `burrow-relay` runs. */
const RELAY_NODE_FLAGS = require('./lib/node-flags').shebangNodeFlags(path.join(ROOT, 'apps/relay/src/main.ts'));
const AGENT_BIN = path.join(ROOT, 'apps/agent/dist/bin.js');
const APP = path.join(__dirname, 'lib/app.js');
const AC_WORKER = path.join(__dirname, 'lib/autocannon-worker.js');
const WS_WORKER = path.join(__dirname, 'lib/ws-echo-worker.js');
const SSE_WORKER = path.join(__dirname, 'lib/sse-worker.js');
const LIGHT_AGENTS = path.join(__dirname, 'lib/light-agents.js');
const FAILOVER = path.join(__dirname, 'lib/failover.js');
const TCP = path.join(__dirname, 'lib/tcp.js');
const RESULTS_DIR = path.join(__dirname, 'results');

const DOWNLOAD_BYTES = 1024 * 1024; // 1 MiB
const UPLOAD_BYTES = 400 * 1024; // 400 KiB
const RELAY_MAX_BODY_BYTES = 2_000_000;
const WS_MESSAGE_BYTES = 32;
const SSE_INTERVAL_MS = 10;
/** Idle scenario: light tunnels held at each step (cumulative), and at most this many per process (fd limit). */
const IDLE_STEPS = [1000, 10_000];
const LIGHT_AGENTS_PER_PROCESS = 5000;
const IDLE_SETTLE_MS = 2000;

// ---------------------------------------------------------------------------------------------
// Options

const USAGE = `Usage: node bench/run.js [options]   (or: npm run bench -- [options])

  --quick                 smoke run: 1 s per scenario, 0.5 s warm-up, 3 setup runs
  --duration <s>          seconds per measured run (env BENCH_DURATION_S, default 5)
  --warmup <s>            seconds of unrecorded warm-up before each run (env BENCH_WARMUP_S, default 1)
  --tool <name>           autocannon (default) or wrk (env BENCH_TOOL)
  --no-nginx              skip the nginx comparison even if nginx is installed
                          (env BENCH_NGINX_BUFFERING=on switches nginx to buffered proxying; default off = streaming)
  --only <ids>            comma-separated scenario ids: get-c1,get-c64,download,upload,ws-echo,sse,
                          x-get-c1,x-get-c64,x-upload (cross-node through Redis),failover,setup,idle,
                          tcp (burrow tcp: MB/s both ways and connect latency, direct vs tunnel)
  --failover-trials <n>   trials per failover case (env BENCH_FAILOVER_TRIALS, default 5, --quick 2)
  --setup-runs <n>        agent start-up samples (env BENCH_SETUP_RUNS, default 5)
  --repeat <n>            run every scenario n times, interleaved, and report the median run (env BENCH_REPEAT, default 1)
  --keep-tmp              keep the temp dir (logs, nginx.conf) and print its path
  --profile               run every relay and agent under node --cpu-prof; prints the hottest functions
                          of each and keeps the .cpuprofile files (flame graphs: Chrome DevTools, speedscope)
                          in bench/results/<run>-profiles/. Best with --only <one scenario>
  -h, --help              this help
`;

function parseArgs(argv, env) {
  const o = {
    quick: false,
    durationS: undefined,
    warmupS: undefined,
    tool: env.BENCH_TOOL || 'autocannon',
    nginx: true,
    only: undefined,
    setupRuns: undefined,
    repeat: undefined,
    failoverTrials: undefined,
    keepTmp: false,
    profile: false,
  };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    const eq = arg.indexOf('=');
    const name = arg.startsWith('--') && eq > 0 ? arg.slice(0, eq) : arg;
    const value = () => {
      const v = eq > 0 && arg.startsWith('--') ? arg.slice(eq + 1) : argv[++i];
      if (v === undefined || v === '') usageError(`${name} needs a value`);
      return v;
    };
    switch (name) {
      case '-h':
      case '--help':
        process.stdout.write(USAGE);
        process.exit(0);
        break;
      case '--quick':
        o.quick = true;
        break;
      case '--duration':
        o.durationS = positiveNumber(value(), name);
        break;
      case '--warmup':
        o.warmupS = nonNegativeNumber(value(), name);
        break;
      case '--tool':
        o.tool = value();
        break;
      case '--wrk':
        o.tool = 'wrk';
        break;
      case '--no-nginx':
        o.nginx = false;
        break;
      case '--only':
        o.only = value()
          .split(',')
          .map((s) => s.trim())
          .filter(Boolean);
        break;
      case '--setup-runs':
        o.setupRuns = positiveNumber(value(), name);
        break;
      case '--repeat':
        o.repeat = positiveNumber(value(), name);
        break;
      case '--failover-trials':
        o.failoverTrials = positiveNumber(value(), name);
        break;
      case '--keep-tmp':
        o.keepTmp = true;
        break;
      case '--profile':
        o.profile = true;
        break;
      default:
        usageError(`unknown option "${arg}"`);
    }
  }
  if (o.durationS === undefined) o.durationS = env.BENCH_DURATION_S ? positiveNumber(env.BENCH_DURATION_S, 'BENCH_DURATION_S') : o.quick ? 1 : 5;
  if (o.warmupS === undefined) o.warmupS = env.BENCH_WARMUP_S ? nonNegativeNumber(env.BENCH_WARMUP_S, 'BENCH_WARMUP_S') : o.quick ? 0.5 : 1;
  if (o.setupRuns === undefined) o.setupRuns = env.BENCH_SETUP_RUNS ? positiveNumber(env.BENCH_SETUP_RUNS, 'BENCH_SETUP_RUNS') : o.quick ? 3 : 5;
  o.setupRuns = Math.min(50, Math.round(o.setupRuns));
  if (o.repeat === undefined) o.repeat = env.BENCH_REPEAT ? positiveNumber(env.BENCH_REPEAT, 'BENCH_REPEAT') : 1;
  o.repeat = Math.min(10, Math.round(o.repeat));
  if (o.failoverTrials === undefined)
    o.failoverTrials = env.BENCH_FAILOVER_TRIALS ? positiveNumber(env.BENCH_FAILOVER_TRIALS, 'BENCH_FAILOVER_TRIALS') : o.quick ? 2 : 5;
  o.failoverTrials = Math.min(20, Math.round(o.failoverTrials));
  if (o.durationS > 120) usageError('duration is capped at 120 s per scenario');
  if (o.warmupS > 30) usageError('warm-up is capped at 30 s');
  if (o.tool !== 'autocannon' && o.tool !== 'wrk') usageError(`--tool must be autocannon or wrk, not "${o.tool}"`);
  const known = ['get-c1', 'x-get-c1', 'get-c64', 'x-get-c64', 'download', 'upload', 'x-upload', 'ws-echo', 'sse', 'failover', 'setup', 'idle', 'tcp'];
  for (const id of o.only ?? []) if (!known.includes(id)) usageError(`--only: unknown scenario "${id}" (known: ${known.join(', ')})`);
  return o;
}

function usageError(msg) {
  process.stderr.write(`bench: ${msg}\n\n${USAGE}`);
  process.exit(2);
}
function positiveNumber(s, name) {
  const n = Number(s);
  if (!Number.isFinite(n) || n <= 0) usageError(`${name}: "${s}" is not a positive number`);
  return n;
}
function nonNegativeNumber(s, name) {
  const n = Number(s);
  if (!Number.isFinite(n) || n < 0) usageError(`${name}: "${s}" is not a number >= 0`);
  return n;
}

// ---------------------------------------------------------------------------------------------
// Child processes: every one is tracked and killed on exit, error or signal.

/** child -> name */
const children = new Map();

function isRunning(child) {
  return child.exitCode === null && child.signalCode === null;
}

function startChild(name, cmd, args, { env = {}, stdio = ['ignore', 'pipe', 'pipe'] } = {}) {
  if (shuttingDown) throw new Error('shutting down');
  const child = spawn(cmd, args, {
    cwd: ROOT,
    env: { ...process.env, ...env },
    stdio,
    // Own process group, so the whole tree (nginx master + worker) can be killed by the group id.
    detached: true,
  });
  children.set(child, name);
  child.exitInfo = new Promise((resolve) => {
    child.once('exit', (code, signal) => resolve({ code, signal }));
    child.once('error', (err) => resolve({ code: null, signal: null, error: err.message }));
  });
  child.exitInfo.then(() => children.delete(child));
  return child;
}

function killGroup(child, signal) {
  if (child.pid === undefined) return;
  try {
    process.kill(-child.pid, signal);
  } catch {
    try {
      child.kill(signal);
    } catch {
      // already gone
    }
  }
}

/** Polite stop (signal to the process itself), then SIGKILL to its group after graceMs. */
async function stopChild(child, signal = 'SIGTERM', graceMs = 3000) {
  if (child.pid === undefined) return;
  if (isRunning(child)) {
    try {
      child.kill(signal);
    } catch {
      // gone
    }
    const timer = setTimeout(() => killGroup(child, 'SIGKILL'), graceMs);
    await child.exitInfo;
    clearTimeout(timer);
  }
  // Anything left in its group (it should be empty).
  killGroup(child, 'SIGKILL');
  children.delete(child);
}

function killAllSync() {
  for (const child of children.keys()) killGroup(child, 'SIGKILL');
  children.clear();
}

process.on('exit', killAllSync);
// A reader that stops early (`node bench/run.js | head`) must not cut the clean-up short.
process.stdout.on('error', (err) => {
  if (err.code !== 'EPIPE') throw err;
});

let tmpDir;
let keepTmp = false;
function removeTmp() {
  if (tmpDir !== undefined && !keepTmp) {
    try {
      fs.rmSync(tmpDir, { recursive: true, force: true });
    } catch {
      // best effort
    }
  }
}

let shuttingDown = false;
async function shutdownAll() {
  // Reverse start order: load tools first, then agent(s), relay, nginx, app.
  const list = [...children.keys()].reverse();
  await Promise.all(list.map((c) => stopChild(c, children.get(c) === 'nginx' ? 'SIGQUIT' : 'SIGTERM', 2500)));
}

for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
  process.on(sig, () => {
    if (shuttingDown) {
      killAllSync();
      process.exit(130);
    }
    shuttingDown = true;
    process.stderr.write(`\nbench: ${sig}, stopping every child process...\n`);
    const hard = setTimeout(() => {
      killAllSync();
      process.exit(130);
    }, 4000);
    shutdownAll().finally(() => {
      clearTimeout(hard);
      removeTmp();
      process.exit(sig === 'SIGINT' ? 130 : 143);
    });
  });
}

// ---------------------------------------------------------------------------------------------
// Small helpers

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

/** One HTTP exchange on a fresh connection. Resolves { status, body, ms } or rejects. */
function request({ port, host, method = 'GET', path: p = '/', body, timeoutMs = 5000 }) {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    const headers = {};
    if (host !== undefined) headers.host = host;
    if (body !== undefined) {
      headers['content-length'] = String(body.length);
      headers['content-type'] = 'application/octet-stream';
    }
    const req = http.request({ host: '127.0.0.1', port, method, path: p, headers, agent: false, timeout: timeoutMs }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, body: Buffer.concat(chunks), ms: performance.now() - t0 }));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error(`timeout after ${timeoutMs} ms`)));
    req.on('error', reject);
    req.end(body);
  });
}

/** Resolves with the first line written to `stream`; rejects on timeout or if `child` exits first. */
function firstLine(stream, child, timeoutMs, what) {
  return new Promise((resolve, reject) => {
    let buf = '';
    const done = (err, line) => {
      clearTimeout(timer);
      stream.off('data', onData);
      if (err) reject(err);
      else resolve(line);
    };
    const onData = (chunk) => {
      buf += chunk.toString('utf8');
      const nl = buf.indexOf('\n');
      if (nl >= 0) done(undefined, buf.slice(0, nl));
    };
    const timer = setTimeout(() => done(new Error(`${what}: no output within ${timeoutMs} ms`)), timeoutMs);
    stream.on('data', onData);
    child.exitInfo.then((info) => done(new Error(`${what} exited (${describeExit(info)}) before printing a line`)));
  });
}

function describeExit(info) {
  if (info.error) return info.error;
  return info.signal ? `signal ${info.signal}` : `code ${info.code}`;
}

async function waitFor(what, fn, { timeoutMs = 10_000, intervalMs = 25, child } = {}) {
  const deadline = performance.now() + timeoutMs;
  let lastErr;
  for (;;) {
    if (child !== undefined && !isRunning(child))
      throw new Error(`${what}: process exited (${describeExit(await child.exitInfo)})${lastErr ? `; last error: ${lastErr}` : ''}`);
    try {
      const v = await fn();
      if (v) return v;
    } catch (err) {
      lastErr = err.message;
    }
    if (performance.now() > deadline) throw new Error(`${what}: not ready within ${timeoutMs} ms${lastErr ? ` (last error: ${lastErr})` : ''}`);
    await sleep(intervalMs);
  }
}

function median(xs) {
  const s = [...xs].sort((a, b) => a - b);
  if (s.length === 0) return null;
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

function commandExists(cmd) {
  const r = spawnSync('sh', ['-c', `command -v ${cmd}`], { encoding: 'utf8' });
  return r.status === 0 ? r.stdout.trim() : undefined;
}

// ---------------------------------------------------------------------------------------------
// CPU accounting from /proc (Linux): CPU seconds of each process during the measured window.

let CLK_TCK = 100;
try {
  CLK_TCK = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
} catch {
  // keep 100
}

function procCpuSeconds(pid) {
  try {
    const s = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = s.slice(s.lastIndexOf(')') + 2).split(' ');
    return (Number(f[11]) + Number(f[12])) / CLK_TCK; // utime + stime
  } catch {
    return null;
  }
}

function childPidsOf(pid) {
  try {
    return fs.readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number);
  } catch {
    return [];
  }
}

/** Whole machine from /proc/stat: CPU seconds busy (all cores) so far. */
function machineBusySeconds() {
  try {
    const f = fs.readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/).slice(1).map(Number);
    // user nice system idle iowait irq softirq steal ...
    return (f[0] + f[1] + f[2] + f[5] + f[6] + (f[7] || 0)) / CLK_TCK;
  } catch {
    return null;
  }
}

/** name -> CPU seconds so far (nginx counts master + workers); "machine" is every process on the box. */
function cpuSnapshot(procs) {
  const out = {};
  for (const [name, child] of Object.entries(procs)) {
    if (child === undefined || child.pid === undefined) continue;
    let total = procCpuSeconds(child.pid);
    if (total === null) continue;
    if (name === 'nginx') for (const pid of childPidsOf(child.pid)) total += procCpuSeconds(pid) ?? 0;
    out[name] = total;
  }
  const m = machineBusySeconds();
  if (m !== null) out.machine = m;
  return out;
}

/** % of one core per process over the window (so 2 busy cores = 200). */
function cpuPercent(before, after, wallS) {
  const out = {};
  for (const k of Object.keys(after)) {
    if (before[k] === undefined || wallS <= 0) continue;
    out[k] = Math.round(((after[k] - before[k]) / wallS) * 1000) / 10;
  }
  return out;
}

/** Adds the load generator's own CPU and "other": machine-wide CPU not used by the bench's processes. */
function finishCpu(cpu, loadCpuS, loadWallS) {
  if (typeof loadCpuS === 'number' && loadWallS > 0) cpu.load = Math.round((loadCpuS / loadWallS) * 1000) / 10;
  if (cpu.machine !== undefined) {
    let ours = 0;
    for (const [k, v] of Object.entries(cpu)) if (k !== 'machine') ours += v;
    cpu.other = Math.max(0, Math.round((cpu.machine - ours) * 10) / 10);
  }
  return cpu;
}

// ---------------------------------------------------------------------------------------------
// Load generators

/** Runs one scenario against one target; returns a normalized result. */
async function runLoad(opts, spec, procs) {
  return opts.tool === 'wrk' ? runWrk(opts, spec, procs) : runAutocannon(opts, spec, procs);
}

/**
 * Runs a measuring child process (node <script> <JSON spec>) that prints "MEASURE_START" when its
 * measured window opens and one JSON line when it closes; the other processes' CPU is sampled at
 * those two moments. Returns the parsed JSON line and the CPU table of the window.
 */
async function runMeasuringChild(name, script, workerSpec, procs, limitMs) {
  const child = startChild(name, process.execPath, [script, JSON.stringify(workerSpec)]);
  let stdout = '';
  let stderr = '';
  let cpu0;
  let t0;
  let cpu1;
  let t1;
  child.stderr.on('data', (c) => {
    stderr += c;
  });
  child.stdout.on('data', (c) => {
    stdout += c;
    if (cpu0 === undefined && stdout.includes('MEASURE_START\n')) {
      cpu0 = cpuSnapshot(procs);
      t0 = performance.now();
    }
    if (cpu1 === undefined && cpu0 !== undefined && /\n\{.*\}\n/s.test(stdout)) {
      cpu1 = cpuSnapshot(procs);
      t1 = performance.now();
    }
  });
  const timer = setTimeout(() => killGroup(child, 'SIGKILL'), limitMs);
  const info = await child.exitInfo;
  clearTimeout(timer);
  children.delete(child);
  const line = stdout.split('\n').find((l) => l.startsWith('{'));
  if (info.code !== 0 || line === undefined) {
    throw new Error(`${name} worker failed (${describeExit(info)}): ${stderr.trim().slice(-2000) || stdout.trim().slice(-500)}`);
  }
  const r = JSON.parse(line);
  const wallS = cpu0 !== undefined && cpu1 !== undefined ? (t1 - t0) / 1000 : r.durationS;
  const cpu = finishCpu(cpu0 !== undefined && cpu1 !== undefined ? cpuPercent(cpu0, cpu1, wallS) : {}, r.loadCpuS, r.durationS);
  return { r, cpu };
}

async function runAutocannon(opts, spec, procs) {
  const workerSpec = {
    url: `http://127.0.0.1:${spec.port}${spec.path}`,
    connections: spec.connections,
    durationS: opts.durationS,
    warmupS: opts.warmupS,
    method: spec.method,
    headers: spec.host !== undefined ? { host: spec.host } : {},
    bodyBytes: spec.bodyBytes ?? 0,
    timeoutS: 10,
  };
  const { r, cpu } = await runMeasuringChild('autocannon', AC_WORKER, workerSpec, procs, (opts.durationS + opts.warmupS) * 1000 + 30_000);
  return {
    tool: 'autocannon',
    durationS: r.durationS,
    ok: r.ok,
    non2xx: r.non2xx,
    statusCodes: r.statusCodes,
    errors: r.errors,
    timeouts: r.timeouts,
    errorCodes: r.errorCodes,
    rps: r.rps,
    bytesPerS: r.bytesPerS,
    latencyMs: r.latencyMs,
    cpuPercent: cpu,
    warmup: r.warmup,
  };
}

/** One WebSocket, one message in flight (bench/lib/ws-echo-worker.js). */
async function runWsEcho(opts, spec, procs) {
  const workerSpec = {
    url: `ws://127.0.0.1:${spec.port}${spec.path}`,
    host: spec.host,
    durationS: opts.durationS,
    warmupS: opts.warmupS,
    messageBytes: WS_MESSAGE_BYTES,
    timeoutS: 10,
  };
  const { r, cpu } = await runMeasuringChild('ws-echo', WS_WORKER, workerSpec, procs, (opts.durationS + opts.warmupS) * 1000 + 30_000);
  delete r.loadCpuS;
  return { ...r, cpuPercent: cpu };
}

/** One event stream, delay of each event (bench/lib/sse-worker.js). */
async function runSse(opts, spec, procs) {
  const workerSpec = { port: spec.port, host: spec.host, path: spec.path, durationS: opts.durationS, warmupS: opts.warmupS, timeoutS: 10 };
  const { r, cpu } = await runMeasuringChild('sse', SSE_WORKER, workerSpec, procs, (opts.durationS + opts.warmupS) * 1000 + 30_000);
  delete r.loadCpuS;
  return { ...r, cpuPercent: cpu };
}

function wrkScript(file, spec) {
  const lines = [];
  if (spec.method !== undefined && spec.method !== 'GET') lines.push(`wrk.method = "${spec.method}"`);
  if (spec.bodyBytes) {
    lines.push(`wrk.body = string.rep("b", ${spec.bodyBytes})`);
    lines.push('wrk.headers["Content-Type"] = "application/octet-stream"');
  }
  lines.push(
    'done = function(summary, latency, requests)',
    '  local e = summary.errors',
    '  io.write(string.format(\'BENCHJSON {"requests":%d,"bytes":%d,"duration_us":%d,"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d,"p50_us":%d,"p99_us":%d,"mean_us":%.1f,"max_us":%d}\\n\',',
    '    summary.requests, summary.bytes, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,',
    '    latency:percentile(50), latency:percentile(99), latency.mean, latency.max))',
    'end',
  );
  fs.writeFileSync(file, `${lines.join('\n')}\n`);
}

async function wrkOnce(spec, durationS, scriptFile) {
  const args = ['-t', '1', '-c', String(spec.connections), '-d', `${Math.max(1, Math.round(durationS))}s`, '--timeout', '10s', '-s', scriptFile];
  if (spec.host !== undefined) args.push('-H', `Host: ${spec.host}`);
  args.push(`http://127.0.0.1:${spec.port}${spec.path}`);
  // Through sh, whose `times` prints the CPU its children (wrk) used: "0m1.234s 0m0.567s".
  const child = startChild('wrk', 'sh', ['-c', 'wrk "$@"; s=$?; echo BENCHTIMES; times; exit $s', 'sh', ...args]);
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (c) => {
    stdout += c;
  });
  child.stderr.on('data', (c) => {
    stderr += c;
  });
  const timer = setTimeout(() => killGroup(child, 'SIGKILL'), durationS * 1000 + 30_000);
  const info = await child.exitInfo;
  clearTimeout(timer);
  children.delete(child);
  const line = stdout.split('\n').find((l) => l.startsWith('BENCHJSON '));
  if (info.code !== 0 || line === undefined) throw new Error(`wrk failed (${describeExit(info)}): ${(stderr + stdout).trim().slice(-1000)}`);
  const j = JSON.parse(line.slice('BENCHJSON '.length));
  let loadCpuS;
  const times = stdout.split('BENCHTIMES\n')[1];
  if (times !== undefined) {
    const secs = (t) => {
      const m = /^(\d+)m([\d.]+)s$/.exec(t);
      return m ? Number(m[1]) * 60 + Number(m[2]) : NaN;
    };
    const child2 = (times.trim().split('\n')[1] ?? '').trim().split(/\s+/).map(secs);
    if (child2.length === 2 && child2.every(Number.isFinite)) loadCpuS = child2[0] + child2[1];
  }
  const durS = j.duration_us / 1e6;
  const errors = j.connect + j.read + j.write + j.timeout;
  const ok = j.requests - j.status;
  return {
    tool: 'wrk',
    durationS: durS,
    ok,
    non2xx: j.status,
    statusCodes: {},
    errors,
    timeouts: j.timeout,
    errorCodes: { connect: j.connect, read: j.read, write: j.write, timeout: j.timeout },
    rps: durS > 0 ? ok / durS : 0,
    bytesPerS: durS > 0 ? j.bytes / durS : 0,
    latencyMs: { p50: j.p50_us / 1000, p99: j.p99_us / 1000, mean: j.mean_us / 1000, max: j.max_us / 1000 },
    loadCpuS,
    raw: j,
  };
}

async function runWrk(opts, spec, procs) {
  const scriptFile = path.join(tmpDir, `wrk-${spec.method ?? 'GET'}-${spec.bodyBytes ?? 0}.lua`);
  wrkScript(scriptFile, spec);
  let warmup;
  if (opts.warmupS > 0) {
    const w = await wrkOnce(spec, opts.warmupS, scriptFile);
    warmup = { ok: w.ok, non2xx: w.non2xx, errors: w.errors, timeouts: w.timeouts, errorCodes: w.errorCodes };
  }
  const cpu0 = cpuSnapshot(procs);
  const t0 = performance.now();
  const r = await wrkOnce(spec, opts.durationS, scriptFile);
  const wallS = (performance.now() - t0) / 1000;
  const cpu = finishCpu(cpuPercent(cpu0, cpuSnapshot(procs), wallS), r.loadCpuS, wallS);
  delete r.loadCpuS;
  return { ...r, cpuPercent: cpu, warmup };
}

// ---------------------------------------------------------------------------------------------
// Log followers: what the agent (--json, one line per request) and the relay said during a run.

class LogFollower {
  constructor(file) {
    this.file = file;
    this.offset = 0;
    this.partial = '';
  }
  /** New complete lines since the last call. */
  take() {
    let fd;
    try {
      fd = fs.openSync(this.file, 'r');
    } catch {
      return [];
    }
    try {
      const size = fs.fstatSync(fd).size;
      if (size <= this.offset) return [];
      const buf = Buffer.alloc(size - this.offset);
      fs.readSync(fd, buf, 0, buf.length, this.offset);
      this.offset = size;
      const text = this.partial + buf.toString('utf8');
      const lines = text.split('\n');
      this.partial = lines.pop();
      return lines.filter((l) => l.trim() !== '');
    } finally {
      fs.closeSync(fd);
    }
  }
}

function summarizeAgentLines(lines) {
  const s = { lines: lines.length, events: {}, requestStatuses: {}, requestErrors: {}, samples: [] };
  for (const line of lines) {
    let e;
    try {
      e = JSON.parse(line);
    } catch {
      s.events.unparsable = (s.events.unparsable ?? 0) + 1;
      if (s.samples.length < 5) s.samples.push(line.slice(0, 300));
      continue;
    }
    s.events[e.event] = (s.events[e.event] ?? 0) + 1;
    if (e.event === 'request') {
      s.requestStatuses[e.status] = (s.requestStatuses[e.status] ?? 0) + 1;
      if (e.error !== undefined) {
        s.requestErrors[e.error] = (s.requestErrors[e.error] ?? 0) + 1;
        if (s.samples.length < 5) s.samples.push(line.slice(0, 300));
      }
    } else if (s.samples.length < 5) s.samples.push(line.slice(0, 300));
  }
  return s;
}

function summarizeRelayLines(lines) {
  const s = { lines: lines.length, byMessage: {}, samples: [] };
  for (const line of lines) {
    // Lines of the cross-node relays come as "[relay-a] <line>".
    const m = /^\[([\w-]+)\] /.exec(line);
    const who = m ? `${m[1]} ` : '';
    const text = m ? line.slice(m[0].length) : line;
    let key = who + text.slice(0, 120);
    try {
      const j = JSON.parse(text);
      key = `${who}${levelName(j.level)}: ${String(j.msg ?? '').slice(0, 120)}`;
    } catch {
      // plain text (stderr)
    }
    s.byMessage[key] = (s.byMessage[key] ?? 0) + 1;
    if (s.samples.length < 5) s.samples.push(line.slice(0, 400));
  }
  return s;
}

function levelName(n) {
  return { 10: 'trace', 20: 'debug', 30: 'info', 40: 'warn', 50: 'error', 60: 'fatal' }[n] ?? String(n);
}

// ---------------------------------------------------------------------------------------------
// The pieces under test

async function startApp() {
  const child = startChild('app', process.execPath, [APP], { stdio: ['pipe', 'pipe', 'inherit'] });
  const line = await firstLine(child.stdout, child, 10_000, 'local app');
  child.stdout.resume();
  const { port } = JSON.parse(line);
  return { child, port };
}

/** BENCH_RELAY_ARGS: extra relay flags for experiments, e.g. "--stream-window-bytes 1048576". */
function extraRelayArgs() {
  return (process.env.BENCH_RELAY_ARGS ?? '').split(/\s+/).filter(Boolean);
}

/** Flags every relay the harness starts gets (before BURROW's extra ones): no admin listener, so several relays never collide on 127.0.0.1:9091. */
function baseRelayArgs() {
  return ['--host', '127.0.0.1', '--log-level', 'warn', '--max-body-bytes', String(RELAY_MAX_BODY_BYTES), '--admin-listen', 'off'];
}

/** Processes that proxy (everything between the load generator and the app). */
const PATH_PROCESSES = ['relay', 'agent', 'nginx', 'relay-a', 'relay-b', 'agent-x', 'redis'];

/**
 * CPU time per operation of one run: the proxying processes' and the whole machine's, in µs per
 * request (req/s), message (msg/s) or MB (MB/s). undefined for runs without a rate (SSE delay).
 */
function cpuPerOp(e) {
  const rate = e.value;
  if (!(rate > 0) || !e.cpuPercent || typeof e.unit !== 'string') return undefined;
  const per = e.unit.startsWith('req') ? 'req' : e.unit.startsWith('msg') ? 'msg' : e.unit.startsWith('MB') ? 'MB' : undefined;
  if (per === undefined) return undefined;
  const path = PATH_PROCESSES.reduce((sum, k) => sum + (e.cpuPercent[k] ?? 0), 0);
  // % of one core = centi-seconds of CPU per second: µs per operation = % × 10^4 / rate.
  const us = (percent) => Math.round((percent * 1e5) / rate) / 10;
  return { per, pathUs: us(path), machineUs: us(e.cpuPercent.machine ?? 0) };
}

/** After the run: the hottest functions of every profiled process, and where the files are. */
function printProfiles(dir) {
  const summaries = summarizeProfileDir(dir, 12);
  const names = Object.keys(summaries);
  if (names.length === 0) {
    process.stdout.write(`\nNo CPU profiles were written to ${dir} (a process killed instead of stopped writes none).\n`);
    return;
  }
  process.stdout.write('\nCPU profiles (self time; busy = not waiting in the event loop):\n');
  for (const name of names) {
    const s = summaries[name];
    const busy = s.totalMs - s.idleMs;
    process.stdout.write(
      `\n${name}: ${(busy / 1000).toFixed(2)} s busy of ${(s.totalMs / 1000).toFixed(2)} s; GC ${((100 * s.gcMs) / Math.max(1, busy)).toFixed(1)}% of busy, native outside JS ${((100 * s.programMs) / Math.max(1, busy)).toFixed(1)}%\n`,
    );
    for (const f of s.top) process.stdout.write(`  ${f.percentOfBusy.toFixed(1).padStart(5)}%  ${f.name}\n`);
  }
  fs.writeFileSync(path.join(dir, 'summary.json'), `${JSON.stringify(summaries, null, 2)}\n`);
  process.stdout.write(
    `\nProfiles: ${path.relative(process.cwd(), dir) || dir} (open a .cpuprofile in Chrome DevTools > Performance, or speedscope, for the flame graph)\n`,
  );
}

/** With --profile: where CPU profiles go (one directory per process name), else undefined. */
let profileDir;
/** Node flags for a relay or agent process called `name`: a CPU profile written when it exits. */
function profileArgs(name) {
  return profileDir === undefined ? [] : ['--cpu-prof', '--cpu-prof-dir', path.join(profileDir, name)];
}

/** A relay; with `redisUrl` it joins the other relays on that redis-server (`--redis`, `--node-id`). */
async function startRelay({ name = 'relay', logName = 'relay.log', redisUrl, nodeId, args = [] } = {}) {
  const port = await freePort();
  const logFile = path.join(tmpDir, logName);
  const fd = fs.openSync(logFile, 'a');
  const redisArgs = redisUrl !== undefined ? ['--redis', redisUrl, ...(nodeId !== undefined ? ['--node-id', nodeId] : [])] : [];
  const child = startChild(
    name,
    process.execPath,
    [...RELAY_NODE_FLAGS, ...profileArgs(name), RELAY_MAIN, '--port', String(port), ...baseRelayArgs(), ...redisArgs, ...args, ...extraRelayArgs()],
    {
      stdio: ['ignore', fd, fd],
    },
  );
  fs.closeSync(fd);
  await waitFor(
    'relay /healthz',
    async () => {
      const r = await request({ port, path: '/healthz', host: `localhost:${port}`, timeoutMs: 1000 });
      return r.status === 200;
    },
    { child, timeoutMs: 15_000 },
  );
  // Agents dial the relay by its public name (http://localhost:<port>): the relay only accepts
  // registration tokens addressed to its public URL, not to whatever address the agent used.
  return { child, port, url: `http://localhost:${port}`, log: new LogFollower(logFile), logFile };
}

/** One RESP PING on a fresh connection: resolves true on +PONG. */
function redisPing(port, timeoutMs = 500) {
  return new Promise((resolve, reject) => {
    const sock = net.connect({ host: '127.0.0.1', port });
    let buf = '';
    const done = (err, v) => {
      clearTimeout(timer);
      sock.destroy();
      if (err) reject(err);
      else resolve(v);
    };
    const timer = setTimeout(() => done(new Error('redis PING timed out')), timeoutMs);
    sock.on('connect', () => sock.write('PING\r\n'));
    sock.on('data', (c) => {
      buf += c.toString('latin1');
      if (buf.includes('\r\n')) done(undefined, buf.startsWith('+PONG'));
    });
    sock.on('error', (err) => done(err));
  });
}

/**
 * A throwaway redis-server (no persistence: a restart comes back empty) on `port` or a free one,
 * with the pub/sub output-buffer limit infra/redis.conf recommends.
 */
async function startRedis({ name = 'redis', port } = {}) {
  if (port === undefined) port = await freePort();
  const logFile = path.join(tmpDir, `${name}.log`);
  const fd = fs.openSync(logFile, 'a');
  const args = ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', tmpDir];
  args.push('--client-output-buffer-limit', 'pubsub 256mb 64mb 60', '--loglevel', 'warning');
  const child = startChild(name, 'redis-server', args, { stdio: ['ignore', fd, fd] });
  fs.closeSync(fd);
  await waitFor('redis-server PING', () => redisPing(port), { child, timeoutMs: 10_000, intervalMs: 5 });
  return { child, port, url: `redis://127.0.0.1:${port}`, logFile };
}

async function startAgent(relay, appPort, { name = 'agent', fileBase = 'agent', checkTunnel = true } = {}) {
  const home = fs.mkdtempSync(path.join(tmpDir, `${fileBase}-home-`));
  const outFile = path.join(tmpDir, `${fileBase}.out.jsonl`);
  const errFile = path.join(tmpDir, `${fileBase}.err.log`);
  const out = fs.openSync(outFile, 'a');
  const err = fs.openSync(errFile, 'a');
  // stdout to a file, not a pipe: the agent writes one JSON line per request, and a pipe the
  // harness must drain would put the harness's CPU into the measurement.
  const child = startChild(name, process.execPath, [...profileArgs(name), AGENT_BIN, 'http', String(appPort), '--relay', relay.url, '--json'], {
    env: { BURROW_HOME: home },
    stdio: ['ignore', out, err],
  });
  fs.closeSync(out);
  fs.closeSync(err);
  const log = new LogFollower(outFile);
  const online = await waitFor(
    'agent online',
    async () => {
      for (const line of log.take()) {
        const e = JSON.parse(line);
        if (e.event === 'online') return e;
        if (e.event === 'error') throw new Error(`agent error: ${line}`);
      }
      return undefined;
    },
    { child, timeoutMs: 15_000, intervalMs: 20 },
  );
  const host = `${online.label}.localhost:${relay.port}`;
  if (!checkTunnel) return { child, label: online.label, url: online.url, host, log, errFile };
  await waitFor(
    'tunnel answering',
    async () => {
      const r = await request({ port: relay.port, host, path: '/', timeoutMs: 2000 });
      return r.status === 200;
    },
    { child, timeoutMs: 10_000 },
  );
  return { child, label: online.label, url: online.url, host, log, errFile };
}

function nginxConf(dir, port, appPort) {
  const runAsRoot = typeof process.getuid === 'function' && process.getuid() === 0;
  return `# Generated by bench/run.js: one reverse-proxy hop, keep-alive both sides, streaming like the tunnel.
daemon off;
master_process on;
worker_processes 1;
${runAsRoot ? 'user root;\n' : ''}pid ${dir}/nginx.pid;
error_log ${dir}/error.log warn;
events {
  worker_connections 4096;
}
http {
  access_log off;
  client_body_temp_path ${dir}/client_body;
  proxy_temp_path ${dir}/proxy;
  fastcgi_temp_path ${dir}/fastcgi;
  uwsgi_temp_path ${dir}/uwsgi;
  scgi_temp_path ${dir}/scgi;
  keepalive_timeout 65s;
  keepalive_requests 1000000;
  client_max_body_size 4m;
  client_body_buffer_size 512k;
  upstream app {
    server 127.0.0.1:${appPort};
    keepalive 64;
    keepalive_requests 1000000;
    keepalive_timeout 60s;
  }
  server {
    listen 127.0.0.1:${port};
    # WebSocket (the ws-echo scenario): pass the upgrade on. Only here, so that plain HTTP keeps
    # Connection "" and its keep-alive upstream connections.
    location = /ws {
      proxy_pass http://app;
      proxy_http_version 1.1;
      proxy_set_header Upgrade $http_upgrade;
      proxy_set_header Connection "upgrade";
      proxy_set_header Host $http_host;
      proxy_read_timeout 300s;
    }
    location / {
      proxy_pass http://app;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host $http_host;
      proxy_buffering ${process.env.BENCH_NGINX_BUFFERING ?? 'off'};
      proxy_request_buffering ${process.env.BENCH_NGINX_BUFFERING ?? 'off'};
      proxy_buffer_size 64k;
      proxy_buffers 8 64k;
    }
  }
}
`;
}

async function startNginx(nginxPath, appPort) {
  const dir = path.join(tmpDir, 'nginx');
  fs.mkdirSync(dir, { recursive: true });
  const port = await freePort();
  const conf = path.join(dir, 'nginx.conf');
  fs.writeFileSync(conf, nginxConf(dir, port, appPort));
  const logFile = path.join(dir, 'stderr.log');
  const fd = fs.openSync(logFile, 'a');
  const child = startChild('nginx', nginxPath, ['-p', `${dir}/`, '-c', conf, '-e', `${dir}/error.log`], { stdio: ['ignore', fd, fd] });
  fs.closeSync(fd);
  try {
    await waitFor(
      'nginx',
      async () => {
        const r = await request({ port, path: '/', timeoutMs: 1000 });
        return r.status === 200;
      },
      { child, timeoutMs: 10_000 },
    );
  } catch (err) {
    let log = '';
    try {
      log = fs.readFileSync(logFile, 'utf8') + fs.readFileSync(`${dir}/error.log`, 'utf8');
    } catch {
      // no log
    }
    throw new Error(`${err.message}\n${log.trim()}`);
  }
  return { child, port, dir, errorLog: new LogFollower(`${dir}/error.log`) };
}

// ---------------------------------------------------------------------------------------------
// One-shot checks of the WebSocket and SSE paths (before any load): "ok" or "FAILED: ...".

function checkWsEcho(t) {
  const WebSocket = require('ws');
  return new Promise((resolve) => {
    const ws = new WebSocket(`ws://127.0.0.1:${t.port}/ws`, { perMessageDeflate: false, headers: t.host !== undefined ? { host: t.host } : {} });
    const msg = Buffer.from('burrow bench echo check');
    const done = (result) => {
      clearTimeout(timer);
      ws.removeAllListeners();
      ws.on('error', () => {});
      ws.terminate();
      resolve(result);
    };
    const timer = setTimeout(() => done('FAILED: no echo within 10 s'), 10_000);
    ws.on('open', () => ws.send(msg));
    ws.on('message', (data) => done(Buffer.isBuffer(data) && data.equals(msg) ? 'ok' : `FAILED: echo was ${String(data).slice(0, 100)}`));
    ws.on('unexpected-response', (_req, res) => done(`FAILED: handshake answered ${res.statusCode} (x-burrow-error ${res.headers['x-burrow-error'] ?? '-'})`));
    ws.on('error', (err) => done(`FAILED: ${err.message}`));
  });
}

function checkSse(t) {
  return new Promise((resolve) => {
    const headers = { accept: 'text/event-stream' };
    if (t.host !== undefined) headers.host = t.host;
    let req;
    let settled = false;
    const done = (result) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      req.destroy();
      resolve(result);
    };
    const timer = setTimeout(() => done('FAILED: no two events within 10 s'), 10_000);
    req = http.get({ host: '127.0.0.1', port: t.port, path: `/sse?ms=${SSE_INTERVAL_MS}`, headers, agent: false }, (res) => {
      if (res.statusCode !== 200) {
        done(`FAILED: status ${res.statusCode}, x-burrow-error ${res.headers['x-burrow-error'] ?? '-'}`);
        return;
      }
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (c) => {
        text += c;
        if (/id: 2\ndata: [\d.]+\n\n/.test(text)) done('ok');
      });
      res.on('error', (err) => done(`FAILED: ${err.message}`));
    });
    req.on('error', (err) => done(`FAILED: ${err.message}`));
  });
}

// ---------------------------------------------------------------------------------------------
// Start-up time: a fresh agent CLI process, from spawn to the first 200 through its tunnel.

async function spawnTimes(args, runs) {
  const times = [];
  for (let i = 0; i < runs; i++) {
    const t0 = performance.now();
    const child = startChild('baseline', process.execPath, args, { stdio: ['ignore', 'ignore', 'ignore'] });
    const timer = setTimeout(() => killGroup(child, 'SIGKILL'), 10_000);
    await child.exitInfo;
    clearTimeout(timer);
    times.push(performance.now() - t0);
  }
  return times;
}

async function measureSetup(relay, appPort, runs) {
  const samples = [];
  for (let i = 0; i < runs; i++) {
    const home = fs.mkdtempSync(path.join(tmpDir, 'setup-home-'));
    const t0 = performance.now();
    const child = startChild('agent-setup', process.execPath, [AGENT_BIN, 'http', String(appPort), '--relay', relay.url, '--json'], {
      env: { BURROW_HOME: home },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stderr = '';
    child.stderr.on('data', (c) => {
      stderr += c;
    });
    try {
      const line = await firstLine(child.stdout, child, 15_000, 'setup agent');
      const tOnline = performance.now();
      child.stdout.resume();
      const e = JSON.parse(line);
      if (e.event !== 'online') throw new Error(`setup agent: first line was not "online": ${line}`);
      const host = `${e.label}.localhost:${relay.port}`;
      let attempts = 0;
      const statuses = {};
      const deadline = tOnline + 10_000;
      for (;;) {
        attempts++;
        let status = 0;
        try {
          status = (await request({ port: relay.port, host, path: '/', timeoutMs: 2000 })).status;
        } catch (err) {
          status = `error:${err.code ?? err.message}`;
        }
        statuses[status] = (statuses[status] ?? 0) + 1;
        if (status === 200) break;
        if (performance.now() > deadline) throw new Error(`setup agent: no 200 through ${host} within 10 s of "online" (${JSON.stringify(statuses)})`);
        await sleep(2);
      }
      const tFirst = performance.now();
      samples.push({ spawnToOnlineMs: tOnline - t0, spawnToFirst200Ms: tFirst - t0, attempts, statuses });
    } catch (err) {
      throw new Error(`${err.message}${stderr ? `\nagent stderr: ${stderr.trim().slice(-1000)}` : ''}`);
    } finally {
      await stopChild(child, 'SIGTERM', 3000);
    }
  }
  return samples;
}

// ---------------------------------------------------------------------------------------------
// Idle memory: relay RSS with thousands of registered, idle tunnels; one idle agent's RSS.

/** A field of /proc/<pid>/status given in kB (VmRSS, VmHWM), in bytes; null if unreadable. */
function procStatusBytes(pid, field) {
  try {
    const m = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) * 1024 : null;
  } catch {
    return null;
  }
}

/** Collects a child's stdout as JSON lines; `next(pred, ms)` waits for a matching line. */
function jsonLines(child, what) {
  const lines = [];
  const waiters = [];
  let buf = '';
  child.stdout.on('data', (c) => {
    buf += c.toString('utf8');
    let nl = buf.indexOf('\n');
    while (nl >= 0) {
      const text = buf.slice(0, nl);
      buf = buf.slice(nl + 1);
      let e;
      try {
        e = JSON.parse(text);
      } catch {
        e = { event: 'unparsable', text: text.slice(0, 300) };
      }
      lines.push(e);
      for (const w of [...waiters]) w(e);
      nl = buf.indexOf('\n');
    }
  });
  const next = (pred, timeoutMs) =>
    new Promise((resolve, reject) => {
      const hit = lines.find(pred);
      if (hit !== undefined) {
        resolve(hit);
        return;
      }
      const waiter = (e) => {
        if (pred(e)) finish(undefined, e);
      };
      const finish = (err, e) => {
        clearTimeout(timer);
        waiters.splice(waiters.indexOf(waiter), 1);
        if (err) reject(err);
        else resolve(e);
      };
      const timer = setTimeout(() => finish(new Error(`${what}: nothing within ${timeoutMs} ms`)), timeoutMs);
      waiters.push(waiter);
      child.exitInfo.then((info) => {
        if (waiters.includes(waiter)) finish(new Error(`${what} exited (${describeExit(info)})`));
      });
    });
  return { lines, next };
}

async function relaySessions(relay) {
  try {
    const r = await request({ port: relay.port, path: '/healthz', host: `localhost:${relay.port}`, timeoutMs: 5000 });
    return JSON.parse(r.body.toString()).sessions;
  } catch {
    return null;
  }
}

/**
 * A fresh relay (no earlier load in its heap), its RSS after settling, then with IDLE_STEPS light
 * tunnels (bench/lib/light-agents.js, at most LIGHT_AGENTS_PER_PROCESS per process), each after
 * settling. Then one real agent process at rest, and a bare Node process for reference.
 */
async function measureIdle(appPort, mainRelay, log) {
  const out = { steps: [], settleMs: IDLE_SETTLE_MS, lightAgentsPerProcess: LIGHT_AGENTS_PER_PROCESS };
  const relay = await startRelay({ name: 'relay-idle', logName: 'relay-idle.log' });
  const workers = [];
  try {
    await sleep(IDLE_SETTLE_MS);
    out.relayBaseRssBytes = procStatusBytes(relay.child.pid, 'VmRSS');
    out.relayBaseSessions = await relaySessions(relay);
    let held = 0;
    for (const target of IDLE_STEPS) {
      const need = target - held;
      const procsNeeded = Math.ceil(need / LIGHT_AGENTS_PER_PROCESS);
      const spawned = [];
      for (let i = 0; i < procsNeeded; i++) {
        const count = Math.floor(need / procsNeeded) + (i < need % procsNeeded ? 1 : 0);
        const spec = { port: relay.port, count, concurrency: 50, audience: relay.url, timeoutS: 20 };
        const child = startChild('light-agents', process.execPath, [LIGHT_AGENTS, JSON.stringify(spec)], { stdio: ['pipe', 'pipe', 'pipe'] });
        let stderr = '';
        child.stderr.on('data', (c) => {
          stderr += c;
        });
        const w = { child, count, out: jsonLines(child, 'light agents'), stderr: () => stderr };
        workers.push(w);
        spawned.push(w);
      }
      const t0 = performance.now();
      const readies = await Promise.all(
        spawned.map((w) =>
          w.out
            .next((e) => e.event === 'ready', 180_000)
            .catch((err) => {
              throw new Error(`${err.message}${w.stderr() ? `: ${w.stderr().trim().slice(-1000)}` : ''}`);
            }),
        ),
      );
      const openMs = performance.now() - t0;
      held = target;
      // Settle, sampling RSS on the way (in the JSON: whether it was still moving).
      const rssSamples = [];
      for (let waited = 0; waited < IDLE_SETTLE_MS; waited += 500) {
        await sleep(500);
        rssSamples.push(procStatusBytes(relay.child.pid, 'VmRSS'));
      }
      const rss = rssSamples[rssSamples.length - 1];
      const sessions = await relaySessions(relay);
      let open = 0;
      let failed = 0;
      let closed = 0;
      const errors = {};
      const closedSamples = [];
      for (const w of workers) {
        const ready = w.out.lines.find((e) => e.event === 'ready');
        open += ready?.open ?? 0;
        failed += ready?.failed ?? 0;
        for (const [k, v] of Object.entries(ready?.errors ?? {})) errors[k] = (errors[k] ?? 0) + v;
        const closedLines = w.out.lines.filter((e) => e.event === 'closed');
        closed += closedLines.length;
        closedSamples.push(...closedLines.slice(0, 5 - closedSamples.length));
      }
      // The relay's own count is the truth; the workers' count is the fallback.
      const live = typeof sessions === 'number' ? sessions : open - closed;
      const step = {
        tunnels: target,
        registered: live,
        openedByWorkers: open,
        failed,
        closedAfterReady: closed,
        ...(closedSamples.length > 0 ? { closedSamples } : {}),
        errors,
        relaySessions: sessions,
        relayRssBytes: rss,
        relayRssSamplesBytes: rssSamples,
        bytesPerTunnel: rss !== null && out.relayBaseRssBytes !== null && live > 0 ? (rss - out.relayBaseRssBytes) / live : null,
        openMs: Math.round(openMs),
        workerOpenMs: readies.map((r) => r.ms),
      };
      out.steps.push(step);
      log(
        `  ${live.toLocaleString('en-US')} tunnels (relay says ${sessions}), opened in ${(openMs / 1000).toFixed(1)} s: relay RSS ${fmtNum(rss / 1048576, 1)} MiB, ${fmtNum(step.bytesPerTunnel, 0)} B/tunnel${failed + closed > 0 ? `, ${failed} failed, ${closed} closed ${JSON.stringify(errors)}` : ''}`,
      );
    }
    out.relayHwmBytes = procStatusBytes(relay.child.pid, 'VmHWM');
  } finally {
    for (const w of workers) await stopChild(w.child, 'SIGTERM', 3000);
  }
  const relayLines = relay.log.take();
  if (relayLines.length > 0) out.relayLog = summarizeRelayLines(relayLines);
  await stopChild(relay.child, 'SIGTERM', 5000);

  // One real agent process: online, then idle.
  const agent = await startAgent(mainRelay, appPort, { name: 'agent-idle', fileBase: 'agent-idle', checkTunnel: false });
  try {
    await sleep(IDLE_SETTLE_MS);
    out.agentRssBytes = procStatusBytes(agent.child.pid, 'VmRSS');
    out.agentHwmBytes = procStatusBytes(agent.child.pid, 'VmHWM');
  } finally {
    await stopChild(agent.child, 'SIGTERM', 3000);
  }
  // Reference: a Node process that does nothing.
  const bare = startChild('baseline', process.execPath, ['-e', 'setInterval(() => {}, 1 << 30)'], { stdio: ['ignore', 'ignore', 'ignore'] });
  try {
    await sleep(IDLE_SETTLE_MS);
    out.bareNodeRssBytes = procStatusBytes(bare.pid, 'VmRSS');
  } finally {
    await stopChild(bare, 'SIGTERM', 3000);
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Output

/**
 * `cross: true`: the cross-node scenarios. Their targets are direct, tunnel (the in-memory relay,
 * as elsewhere), redis-same (relay A on Redis, the node holding agent-x) and redis-cross (relay B:
 * the request crosses Redis to A and back), so "vs same node" isolates the extra hop.
 */
const SCENARIOS = [
  { id: 'get-c1', title: 'GET small, 1 conn', path: '/', connections: 1, metric: 'rps' },
  { id: 'x-get-c1', cross: true, title: 'x-node: GET small, 1 conn', path: '/', connections: 1, metric: 'rps' },
  { id: 'get-c64', title: 'GET small, 64 conns', path: '/', connections: 64, metric: 'rps' },
  { id: 'x-get-c64', cross: true, title: 'x-node: GET small, 64 conns', path: '/', connections: 64, metric: 'rps' },
  { id: 'download', title: 'GET 1 MiB, 8 conns', path: `/bytes?n=${DOWNLOAD_BYTES}`, connections: 8, metric: 'MBps' },
  { id: 'upload', title: 'POST 400 KiB, 8 conns', path: '/upload', method: 'POST', bodyBytes: UPLOAD_BYTES, connections: 8, metric: 'rps' },
  {
    id: 'x-upload',
    cross: true,
    title: 'x-node: POST 400 KiB, 8 conns',
    path: '/upload',
    method: 'POST',
    bodyBytes: UPLOAD_BYTES,
    connections: 8,
    metric: 'upMBps',
  },
  { id: 'ws-echo', kind: 'ws', title: `WS echo ${WS_MESSAGE_BYTES} B, 1 conn`, path: '/ws', connections: 1, metric: 'msgps' },
  { id: 'sse', kind: 'sse', title: `SSE every ${SSE_INTERVAL_MS} ms, 1 conn`, path: `/sse?ms=${SSE_INTERVAL_MS}`, connections: 1, metric: 'delay' },
];

const UNITS = { rps: 'req/s', MBps: 'MB/s', upMBps: 'MB/s up', msgps: 'msg/s', delay: 'ms delay' };
const CROSS_TARGETS = ['direct', 'tunnel', 'redis-same', 'redis-cross'];

function fmtNum(n, digits) {
  if (n === null || n === undefined || Number.isNaN(n)) return '-';
  if (digits === undefined) digits = Math.abs(n) >= 100 ? 0 : Math.abs(n) >= 10 ? 1 : 2;
  return n.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits });
}

function printTable(headers, rows, align) {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => String(r[i]).length)));
  const line = (cells) => cells.map((c, i) => (align[i] === 'r' ? String(c).padStart(widths[i]) : String(c).padEnd(widths[i]))).join('  ');
  const out = [line(headers), widths.map((w) => '-'.repeat(w)).join('  '), ...rows.map(line)];
  process.stdout.write(`${out.join('\n')}\n`);
}

/** The figure a run is ranked by (median of --repeat rounds) and compared to direct with. */
function value(result, metric) {
  if (metric === 'MBps') return result.bytesPerS / 1e6;
  if (metric === 'upMBps') return (result.rps * UPLOAD_BYTES) / 1e6; // request bodies of 2xx exchanges
  if (metric === 'delay') return result.latencyMs.p50;
  return result.rps;
}

// ---------------------------------------------------------------------------------------------
// Main

async function main() {
  const opts = parseArgs(process.argv.slice(2), process.env);
  keepTmp = opts.keepTmp;
  const started = new Date();
  if (opts.profile) profileDir = path.join(RESULTS_DIR, `${started.toISOString().replace(/[:.]/g, '-')}-profiles`);
  for (const f of [RELAY_MAIN, AGENT_BIN]) {
    if (!fs.existsSync(f)) throw new Error(`${path.relative(ROOT, f)} is missing: build first (npx tsc -b, or npm run bench)`);
  }
  const wrkPath = commandExists('wrk');
  if (opts.tool === 'wrk' && wrkPath === undefined) throw new Error('--tool wrk: wrk is not installed (command -v wrk found nothing)');
  const nginxPath = opts.nginx ? commandExists('nginx') : undefined;
  const wanted = (id) => opts.only === undefined || opts.only.includes(id);
  const scenarios = SCENARIOS.filter((s) => wanted(s.id));

  // Hard bound on the whole run, whatever hangs.
  const perRunS = opts.durationS + opts.warmupS + (opts.tool === 'wrk' ? 2 : 1);
  const crossWanted = scenarios.some((s) => s.cross);
  if ((crossWanted || wanted('failover')) && commandExists('redis-server') === undefined)
    throw new Error('the x-* and failover scenarios need redis-server on PATH (apt-get install redis-server), or leave them out with --only');
  const runsPerRound = scenarios.reduce((n, s) => n + (s.cross ? CROSS_TARGETS.length : 3), 0);
  // Failover: 4 cases per trial, each a fresh pair of relays and an agent (~3 s) plus the event (drain up to 25 s).
  const failoverS = wanted('failover') ? opts.failoverTrials * 4 * 15 + 30 : 0;
  const budgetS = Math.ceil(
    opts.repeat * runsPerRound * perRunS * 1.5 +
      (wanted('setup') ? opts.setupRuns * 15 : 0) +
      (wanted('idle') ? 420 : 0) +
      (wanted('tcp') ? 120 : 0) +
      failoverS +
      90,
  );
  const budget = setTimeout(() => {
    process.stderr.write(`bench: overall time limit of ${budgetS} s exceeded; stopping everything\n`);
    killAllSync();
    removeTmp();
    process.exit(1);
  }, budgetS * 1000);
  budget.unref();

  // How busy is the machine before we start anything? Other work skews every figure.
  const m0 = machineBusySeconds();
  await sleep(1000);
  const m1 = machineBusySeconds();
  const busyBeforeStart = m0 !== null && m1 !== null ? Math.round((m1 - m0) * 100) : null;
  if (busyBeforeStart !== null && busyBeforeStart > 25) {
    process.stderr.write(
      `bench: WARNING: the machine was already busy before the bench started (${busyBeforeStart}% of one core used by other processes); results will be noisy\n`,
    );
  }

  tmpDir = fs.mkdtempSync(path.join(os.tmpdir(), 'burrow-bench-'));
  const log = (msg) => process.stderr.write(`bench: ${msg}\n`);
  log(`tool ${opts.tool}, ${opts.durationS} s per run + ${opts.warmupS} s warm-up, nginx ${nginxPath ? 'yes' : 'no'}; temp dir ${tmpDir}`);

  const app = await startApp();
  log(`local app on 127.0.0.1:${app.port} (pid ${app.child.pid})`);
  const relay = await startRelay();
  log(`relay on 127.0.0.1:${relay.port} (pid ${relay.child.pid})`);
  const agent = await startAgent(relay, app.port);
  log(`agent online (pid ${agent.child.pid}), tunnel ${agent.url} -> Host: ${agent.host}`);
  let nginx;
  let nginxError;
  if (nginxPath !== undefined) {
    try {
      nginx = await startNginx(nginxPath, app.port);
      log(`nginx on 127.0.0.1:${nginx.port} (pid ${nginx.child.pid})`);
    } catch (err) {
      nginxError = err.message;
      log(`nginx could not start, skipping it: ${err.message}`);
    }
  }

  // Cross-node: a redis-server, relays A and B on it, and agent-x on A. redis-same sends the
  // load to A (same node as the agent), redis-cross to B with the tunnel's Host for B.
  let cross;
  if (crossWanted) {
    const redis = await startRedis();
    log(`redis-server on 127.0.0.1:${redis.port} (pid ${redis.child.pid})`);
    const relayA = await startRelay({ name: 'relay-a', logName: 'relay-a.log', redisUrl: redis.url, nodeId: 'bench-a' });
    const relayB = await startRelay({ name: 'relay-b', logName: 'relay-b.log', redisUrl: redis.url, nodeId: 'bench-b' });
    log(`relay A on 127.0.0.1:${relayA.port} (pid ${relayA.child.pid}), relay B on 127.0.0.1:${relayB.port} (pid ${relayB.child.pid}), both --redis`);
    const agentX = await startAgent(relayA, app.port, { name: 'agent-x', fileBase: 'agent-x' });
    const hostB = `${agentX.label}.localhost:${relayB.port}`;
    await waitFor(
      'cross-node tunnel answering through relay B',
      async () => (await request({ port: relayB.port, host: hostB, path: '/', timeoutMs: 2000 })).status === 200,
      { child: agentX.child, timeoutMs: 10_000 },
    );
    log(`agent-x online on relay A (pid ${agentX.child.pid}): Host ${agentX.host} on A, ${hostB} on B`);
    cross = { redis, relayA, relayB, agentX, hostB };
  }

  const allTargets = [
    { id: 'direct', port: app.port, host: undefined },
    { id: 'tunnel', port: relay.port, host: agent.host },
    ...(nginx ? [{ id: 'nginx', port: nginx.port, host: undefined }] : []),
    ...(cross
      ? [
          { id: 'redis-same', port: cross.relayA.port, host: cross.agentX.host, cross: true },
          { id: 'redis-cross', port: cross.relayB.port, host: cross.hostB, cross: true },
        ]
      : []),
  ];
  const targetsFor = (sc) => (sc.cross ? allTargets.filter((t) => CROSS_TARGETS.includes(t.id)) : allTargets.filter((t) => !t.cross));
  const procs = {
    app: app.child,
    relay: relay.child,
    agent: agent.child,
    ...(nginx ? { nginx: nginx.child } : {}),
    ...(cross ? { 'relay-a': cross.relayA.child, 'relay-b': cross.relayB.child, 'agent-x': cross.agentX.child, redis: cross.redis.child } : {}),
  };
  const relayLogs = [
    ['relay', relay],
    ...(cross
      ? [
          ['relay-a', cross.relayA],
          ['relay-b', cross.relayB],
        ]
      : []),
  ];
  const takeRelayLines = () => relayLogs.flatMap(([name, r]) => r.log.take().map((l) => (name === 'relay' ? l : `[${name}] ${l}`)));

  // Sanity: each target serves each scenario's request correctly once, before any load.
  const sanity = {};
  const uploadBody = Buffer.alloc(UPLOAD_BYTES, 0x62);
  for (const t of allTargets) {
    const check = async (name, req, ok) => {
      try {
        const r = await request({ port: t.port, host: t.host, timeoutMs: 10_000, ...req });
        const pass = ok(r);
        sanity[`${t.id} ${name}`] = pass
          ? 'ok'
          : `FAILED: status ${r.status}, ${r.body.length} bytes, x-burrow-error ${r.headers['x-burrow-error'] ?? '-'}: ${r.body.subarray(0, 200).toString()}`;
      } catch (err) {
        sanity[`${t.id} ${name}`] = `FAILED: ${err.message}`;
      }
    };
    await check('GET /', { path: '/' }, (r) => r.status === 200 && r.body.toString() === 'ok');
    await check('GET 1 MiB', { path: `/bytes?n=${DOWNLOAD_BYTES}` }, (r) => r.status === 200 && r.body.length === DOWNLOAD_BYTES);
    await check('POST 400 KiB', { path: '/upload', method: 'POST', body: uploadBody }, (r) => r.status === 200 && r.body.toString() === `ok ${UPLOAD_BYTES}`);
    if (wanted('ws-echo') && !t.cross) sanity[`${t.id} WebSocket echo`] = await checkWsEcho(t);
    if (wanted('sse') && !t.cross) sanity[`${t.id} SSE`] = await checkSse(t);
  }
  for (const [k, v] of Object.entries(sanity)) if (v !== 'ok') log(`sanity check ${k}: ${v}`);
  agent.log.take();
  cross?.agentX.log.take();
  takeRelayLines();

  const runs = [];
  for (let round = 1; round <= opts.repeat; round++) {
    for (const sc of scenarios) {
      for (const t of targetsFor(sc)) {
        log(`${sc.id} -> ${t.id} (${opts.durationS} s${opts.repeat > 1 ? `, round ${round}/${opts.repeat}` : ''})...`);
        for (const [name, child] of Object.entries(procs)) {
          if (!isRunning(child)) throw new Error(`${name} process exited (${describeExit(await child.exitInfo)}) before ${sc.id} -> ${t.id}`);
        }
        const spec = { port: t.port, host: t.host, path: sc.path, method: sc.method, bodyBytes: sc.bodyBytes, connections: sc.connections };
        let r;
        try {
          r = sc.kind === 'ws' ? await runWsEcho(opts, spec, procs) : sc.kind === 'sse' ? await runSse(opts, spec, procs) : await runLoad(opts, spec, procs);
        } catch (err) {
          if (shuttingDown) await new Promise(() => {}); // the signal handler exits the process
          r = { failed: err.message };
          log(`  FAILED: ${err.message}`);
        }
        const agentLines = agent.log.take();
        const agentXLines = cross ? cross.agentX.log.take() : [];
        const relayLines = takeRelayLines();
        const entry = { scenario: sc.id, title: sc.title, target: t.id, round, metric: sc.metric, connections: sc.connections, ...r };
        // Includes warm-up requests: the agent logs every request it forwards.
        const mine = t.id === 'tunnel' ? agentLines : t.cross ? agentXLines : [];
        const notMine = t.id === 'tunnel' ? agentXLines : t.cross ? agentLines : [...agentLines, ...agentXLines];
        if (t.id === 'tunnel' || t.cross) entry.agentLog = summarizeAgentLines(mine);
        if (notMine.length > 0) entry.agentLogUnexpected = summarizeAgentLines(notMine);
        if (relayLines.length > 0) entry.relayLog = summarizeRelayLines(relayLines);
        if (nginx) {
          const nl = nginx.errorLog.take();
          if (nl.length > 0) entry.nginxErrorLog = { lines: nl.length, samples: nl.slice(0, 5) };
        }
        for (const [name, child] of Object.entries(procs)) {
          if (!isRunning(child)) entry[`${name}Exited`] = describeExit(await child.exitInfo);
        }
        if (!r.failed) {
          const bad = r.non2xx + r.errors;
          const head =
            sc.metric === 'delay'
              ? `${r.ok} events, delay p50 ${fmtNum(r.latencyMs.p50, 2)} ms, p99 ${fmtNum(r.latencyMs.p99, 2)} ms${r.lostEvents > 0 ? `, ${r.lostEvents} lost` : ''}`
              : `${fmtNum(value(r, sc.metric))} ${UNITS[sc.metric]}, p50 ${fmtNum(r.latencyMs.p50, 2)} ms, p99 ${fmtNum(r.latencyMs.p99, 2)} ms`;
          const badText =
            sc.kind === undefined ? `, ${r.non2xx} non-2xx ${JSON.stringify(r.statusCodes)}` : sc.kind === 'ws' ? `, ${r.non2xx} wrong echoes` : '';
          log(`  ${head}${bad > 0 ? `${badText}, ${r.errors} errors ${JSON.stringify(r.errorCodes)}${r.endedBy ? ` (${r.endedBy})` : ''}` : ''}`);
        }
        if (!r.failed) {
          entry.value = value(r, sc.metric);
          entry.unit = UNITS[sc.metric];
        }
        runs.push(entry);
        await sleep(300);
      }
    }
  }

  // With --repeat, each (scenario, target) is represented by its median run (by rate).
  const results = [];
  for (const sc of scenarios) {
    for (const t of targetsFor(sc)) {
      const mine = runs.filter((e) => e.scenario === sc.id && e.target === t.id);
      const ok = mine.filter((e) => !e.failed).sort((a, b) => a.value - b.value);
      const pick = ok.length > 0 ? ok[Math.floor((ok.length - 1) / 2)] : mine[0];
      results.push(opts.repeat > 1 ? { ...pick, roundValues: mine.map((e) => (e.failed ? null : e.value)) } : pick);
    }
  }

  // Ratios to the direct figure of the same scenario in this run.
  for (const e of results) {
    const d = results.find((x) => x.scenario === e.scenario && x.target === 'direct');
    if (e.failed || d === undefined || d.failed) continue;
    const dv = d.value;
    if (e.metric === 'delay') {
      // A delay is not a rate: the comparison is the delay added on top of direct.
      e.p50AddedMs = e.latencyMs.p50 - d.latencyMs.p50;
      e.p99AddedMs = e.latencyMs.p99 - d.latencyMs.p99;
    } else e.ratioToDirect = dv > 0 ? e.value / dv : null;
    e.p50RatioToDirect = d.latencyMs.p50 ? e.latencyMs.p50 / d.latencyMs.p50 : null;
    e.p99RatioToDirect = d.latencyMs.p99 ? e.latencyMs.p99 / d.latencyMs.p99 : null;
  }
  // Cross-node scenarios: ratios to the same-node figures of the same scenario and run.
  for (const e of results) {
    if (e.failed || !SCENARIOS.find((s) => s.id === e.scenario)?.cross || e.target === 'direct') continue;
    for (const [key, ref] of [
      ['SameNode', 'redis-same'],
      ['SameNodeMemory', 'tunnel'],
    ]) {
      const s = results.find((x) => x.scenario === e.scenario && x.target === ref);
      if (s === undefined || s.failed || s === e) continue;
      e[`ratioTo${key}`] = s.value > 0 ? e.value / s.value : null;
      e[`p50RatioTo${key}`] = s.latencyMs.p50 ? e.latencyMs.p50 / s.latencyMs.p50 : null;
      e[`p99RatioTo${key}`] = s.latencyMs.p99 ? e.latencyMs.p99 / s.latencyMs.p99 : null;
    }
  }

  let failover;
  if (wanted('failover')) {
    log(`failover: ${opts.failoverTrials} trial(s) of each case, each on fresh relays A and B (--redis) and a fresh agent (--relay A,B)...`);
    const ctx = {
      startChild,
      stopChild,
      killGroup,
      isRunning,
      request,
      sleep,
      waitFor,
      startRelay,
      startRedis,
      describeExit,
      summarizeRelayLines,
      log,
      tmpDir,
      AGENT_BIN,
      shuttingDown: () => shuttingDown,
    };
    try {
      failover = await require(FAILOVER).measureFailover(ctx, app.port, opts.failoverTrials);
    } catch (err) {
      if (shuttingDown) await new Promise(() => {});
      failover = { failed: err.message };
      log(`  FAILED: ${err.message}`);
    }
  }

  let tcp;
  if (wanted('tcp')) {
    log('tcp: relay with --tcp-ports, agent `burrow tcp` to a local TCP server; direct vs tunnel...');
    try {
      tcp = await require(TCP).measureTcp({ startChild, stopChild, startRelay, firstLine, waitFor, freePort, log, tmpDir, AGENT_BIN }, { quick: opts.quick });
    } catch (err) {
      if (shuttingDown) await new Promise(() => {});
      tcp = { failed: err.message };
      log(`  FAILED: ${err.message}`);
    }
  }

  let setup;
  if (wanted('setup')) {
    log(`setup time: ${opts.setupRuns} fresh agent processes...`);
    const nodeBaseline = await spawnTimes(['-e', ''], opts.setupRuns);
    const agentVersion = await spawnTimes([AGENT_BIN, '--version'], opts.setupRuns);
    const samples = await measureSetup(relay, app.port, opts.setupRuns);
    const firstAttemptFailures = samples.filter((s) => s.attempts > 1).length;
    setup = {
      runs: opts.setupRuns,
      medianSpawnToFirst200Ms: median(samples.map((s) => s.spawnToFirst200Ms)),
      maxSpawnToFirst200Ms: Math.max(...samples.map((s) => s.spawnToFirst200Ms)),
      medianSpawnToOnlineMs: median(samples.map((s) => s.spawnToOnlineMs)),
      medianNodeStartupMs: median(nodeBaseline),
      medianAgentVersionMs: median(agentVersion),
      firstAttemptFailures,
      samples,
    };
    const setupRelayLines = relay.log.take();
    if (setupRelayLines.length > 0) setup.relayLog = summarizeRelayLines(setupRelayLines);
  }

  let idle;
  if (wanted('idle')) {
    // What the long-running processes hold after the load above (leaks show up here), then the
    // idle figures on a fresh relay.
    const afterLoad = { relayRssBytes: procStatusBytes(relay.child.pid, 'VmRSS'), agentRssBytes: procStatusBytes(agent.child.pid, 'VmRSS') };
    log(`idle: fresh relay, then ${IDLE_STEPS.map((n) => n.toLocaleString('en-US')).join(' and ')} light tunnels; then one idle agent...`);
    try {
      idle = { ...(await measureIdle(app.port, relay, log)), mainProcessesAfterLoad: afterLoad };
    } catch (err) {
      if (shuttingDown) await new Promise(() => {});
      idle = { failed: err.message, mainProcessesAfterLoad: afterLoad };
      log(`  FAILED: ${err.message}`);
    }
    const idleMainRelayLines = relay.log.take();
    if (idleMainRelayLines.length > 0) idle.mainRelayLog = summarizeRelayLines(idleMainRelayLines);
  }

  // ---- the table
  const rows = [];
  for (const e of results) {
    if (e.failed) {
      rows.push([e.title, e.target, 'FAILED', '', '', '', '', '', '', '', '']);
      continue;
    }
    const vsSame =
      e.ratioToSameNode === undefined || e.ratioToSameNode === null ? (e.target === 'redis-same' ? '1.00x' : '') : `${e.ratioToSameNode.toFixed(2)}x`;
    let vsDirect;
    if (e.metric === 'delay')
      vsDirect = e.target === 'direct' ? '-' : e.p50AddedMs === undefined ? '-' : `${e.p50AddedMs >= 0 ? '+' : ''}${e.p50AddedMs.toFixed(2)} ms`;
    else vsDirect = e.target === 'direct' ? '1.00x' : e.ratioToDirect === null || e.ratioToDirect === undefined ? '-' : `${e.ratioToDirect.toFixed(2)}x`;
    rows.push([
      e.title,
      e.target,
      e.metric === 'delay' ? '' : fmtNum(e.value),
      e.unit,
      fmtNum(e.latencyMs.p50, 2),
      fmtNum(e.latencyMs.p99, 2),
      vsDirect,
      vsSame,
      String(e.ok),
      String(e.non2xx),
      String(e.errors + (e.lostEvents ?? 0)),
    ]);
  }
  const showSame = results.some((e) => e.ratioToSameNode !== undefined);
  if (setup) {
    rows.push([`setup: spawn -> online (median of ${setup.runs})`, 'tunnel', fmtNum(setup.medianSpawnToOnlineMs, 0), 'ms', '', '', '', '', '', '']);
    rows.push([
      `setup: spawn -> first 200 (median of ${setup.runs})`,
      'tunnel',
      fmtNum(setup.medianSpawnToFirst200Ms, 0),
      'ms',
      '',
      `${fmtNum(setup.maxSpawnToFirst200Ms, 0)} max`,
      '',
      '',
      '',
      '',
    ]);
    rows.push(['(ref) node -e ""', 'process', fmtNum(setup.medianNodeStartupMs, 0), 'ms', '', '', '', '', '', '']);
    rows.push(['(ref) burrow --version', 'process', fmtNum(setup.medianAgentVersionMs, 0), 'ms', '', '', '', '', '', '']);
  }
  if (idle) {
    const mib = (b) => (typeof b === 'number' ? fmtNum(b / 1048576, 1) : '-');
    if (idle.failed) rows.push(['idle: relay memory per tunnel', 'relay', 'FAILED', '', '', '', '', '', '', '']);
    for (const st of idle.steps ?? []) {
      rows.push([
        `idle: relay, ${st.tunnels.toLocaleString('en-US')} tunnels`,
        'relay',
        fmtNum(st.bytesPerTunnel, 0),
        'B/tunnel',
        '',
        '',
        '',
        String(st.registered),
        '',
        String(st.failed + st.closedAfterReady),
      ]);
    }
    if (idle.relayBaseRssBytes !== undefined)
      rows.push(['(ref) idle relay, 0 tunnels', 'relay', mib(idle.relayBaseRssBytes), 'MiB RSS', '', '', '', '', '', '']);
    if (idle.agentRssBytes !== undefined) rows.push(['idle: one agent, online', 'agent', mib(idle.agentRssBytes), 'MiB RSS', '', '', '', '', '', '']);
    if (idle.bareNodeRssBytes !== undefined) rows.push(['(ref) idle node process', 'process', mib(idle.bareNodeRssBytes), 'MiB RSS', '', '', '', '', '', '']);
  }
  process.stdout.write(
    `\nburrow bench: ${opts.tool}, ${opts.durationS} s per run after ${opts.warmupS} s warm-up, ${os.cpus().length} CPUs, node ${process.version}${nginx ? '' : ', no nginx'}\n\n`,
  );
  // Rows without the "vs same node" cell (setup, idle) get an empty one; the column shows only with x-* scenarios.
  for (const r of rows) if (r.length === 10) r.splice(7, 0, '');
  const headers = ['scenario', 'target', 'rate', 'unit', 'p50 ms', 'p99 ms', 'vs direct', 'vs same node', 'ok', 'non-2xx', 'errors'];
  const aligns = ['l', 'l', 'r', 'l', 'r', 'r', 'r', 'r', 'r', 'r', 'r'];
  if (!showSame) {
    for (const r of rows) r.splice(7, 1);
    headers.splice(7, 1);
    aligns.splice(7, 1);
  }
  printTable(headers, rows, aligns);
  if (showSame) {
    process.stdout.write(
      '\nx-node rows: tunnel = in-memory relay (as above); redis-same = relay A on Redis, which holds agent-x; redis-cross = relay B, one Redis hop to A and back.\n"vs same node" = redis-cross (or tunnel) / redis-same of the same scenario and run.\n',
    );
  }
  if (failover && !failover.failed) {
    const { failoverRows } = require(FAILOVER);
    process.stdout.write(
      `\nFailover (${failover.trials} trials per case; fresh relays A and B on one redis-server, agent --relay A,B on A; ms from the event; B polled every ${failover.pollIntervalMs} ms):\n`,
    );
    printTable(['case', 'figure', 'median ms', 'max ms', 'n', 'statuses seen'], failoverRows(failover), ['l', 'l', 'r', 'r', 'r', 'l']);
  } else if (failover?.failed) process.stdout.write(`\nFailover: FAILED: ${failover.failed.split('\n')[0]}\n`);
  if (tcp && !tcp.failed) process.stdout.write(`\n${require(TCP).tcpLines(tcp).join('\n')}\n`);
  else if (tcp?.failed) process.stdout.write(`\nTCP: FAILED: ${tcp.failed.split('\n')[0]}\n`);

  // CPU per process during each measured window, and anything that went wrong.
  const cpuCols = ['load', 'relay', 'agent', 'app', 'nginx', ...(cross ? ['relay-a', 'relay-b', 'agent-x', 'redis'] : []), 'machine', 'other'];
  for (const e of [...runs, ...results]) if (!e.failed && e.cpuPercent) e.cpuPerOp = cpuPerOp(e);
  const cpuRows = results
    .filter((e) => !e.failed && e.cpuPercent)
    .map((e) => [
      e.title,
      e.target,
      ...cpuCols.map((k) => (e.cpuPercent[k] === undefined ? '-' : fmtNum(e.cpuPercent[k], 0))),
      e.cpuPerOp ? `${fmtNum(e.cpuPerOp.pathUs, 1)} / ${e.cpuPerOp.per}` : '-',
      e.cpuPerOp ? fmtNum(e.cpuPerOp.machineUs, 1) : '-',
    ]);
  if (cpuRows.length > 0) {
    const cores = os.cpus().length;
    process.stdout.write(
      `\nCPU during the measured window, % of one core (${cores} cores = ${cores * 100}). load = the load generator; machine = every process on the box;\nother = machine minus the bench's processes (high "other" = something else was running: numbers are unreliable);\npath µs = CPU time of the proxying processes (relay, agent, nginx, Redis) per request, message or MB, and machine µs the same for the whole box:\nsteadier than rates from run to run, and what a change to the hot path should lower:\n`,
    );
    printTable(['scenario', 'target', ...cpuCols, 'path µs', 'machine µs'], cpuRows, ['l', 'l', ...cpuCols.map(() => 'r'), 'r', 'r']);
  }
  const problems = [];
  const notes = [];
  const others = runs.filter((e) => e.cpuPercent?.other !== undefined).map((e) => e.cpuPercent.other);
  const maxOther = others.length > 0 ? Math.max(...others) : null;
  if (busyBeforeStart !== null && busyBeforeStart > 25) problems.push(`machine busy before start: ${busyBeforeStart}% of one core used by other processes`);
  if (maxOther !== null && maxOther > 25) {
    problems.push(
      `other processes used up to ${fmtNum(maxOther, 0)}% of one core during measured runs (see "other" above): treat these figures as noisy; rerun on a quiet machine`,
    );
  }
  for (const [k, v] of Object.entries(sanity)) if (v !== 'ok') problems.push(`sanity ${k}: ${v}`);
  if (nginxError) problems.push(`nginx skipped: ${nginxError.split('\n')[0]}`);
  for (const e of runs) {
    const where = `${e.scenario} -> ${e.target}${opts.repeat > 1 ? ` (round ${e.round})` : ''}`;
    if (e.failed) problems.push(`${where}: run failed: ${e.failed.split('\n')[0]}`);
    else {
      if (e.non2xx > 0 && e.metric === 'msgps') problems.push(`${where}: ${e.non2xx} echoes did not match the message sent`);
      else if (e.non2xx > 0) problems.push(`${where}: ${e.non2xx} non-2xx responses ${JSON.stringify(e.statusCodes)}`);
      if (e.errors > 0)
        problems.push(`${where}: ${e.errors} errors (${e.timeouts} timeouts) ${JSON.stringify(e.errorCodes)}${e.endedBy ? `; ended by: ${e.endedBy}` : ''}`);
      if (e.lostEvents > 0) problems.push(`${where}: ${e.lostEvents} events missing from the stream (gaps in their ids)`);
      if (e.malformedEvents > 0) problems.push(`${where}: ${e.malformedEvents} malformed events`);
      if (e.metric === 'delay' && e.latencyMs.min !== null && e.latencyMs.min < -0.5)
        problems.push(
          `${where}: an event was read ${fmtNum(-e.latencyMs.min, 2)} ms before it was written: the two processes' clocks disagree; delays are off by about that much`,
        );
      const w = e.warmup;
      if (w && w.non2xx + w.errors > 0) problems.push(`${where} (warm-up): ${w.non2xx} non-2xx, ${w.errors} errors ${JSON.stringify(w.errorCodes)}`);
    }
    if (e.agentLog && Object.keys(e.agentLog.requestErrors).length > 0) {
      // The load tool stops with requests in flight (warm-up and measured run): up to one
      // cancellation per connection per run is the expected end-of-run noise, not a failure.
      const errs = { ...e.agentLog.requestErrors };
      const cancelled = errs.BURROW_ERR_CANCELLED ?? 0;
      const expected = e.connections * (e.warmup ? 2 : 1);
      if (cancelled <= expected) delete errs.BURROW_ERR_CANCELLED;
      if (Object.keys(errs).length > 0) problems.push(`${where}: agent reported ${JSON.stringify(errs)}`);
      else
        notes.push(
          `${where}: ${cancelled} request(s) cancelled by the client at the end of the runs (in flight when the load tool stopped; expected up to ${expected})`,
        );
    }
    if (e.agentLog) {
      const other = Object.entries(e.agentLog.events).filter(([k]) => k !== 'request');
      if (other.length > 0) problems.push(`${where}: agent events ${JSON.stringify(Object.fromEntries(other))}`);
    }
    if (e.relayLog) problems.push(`${where}: relay logged ${e.relayLog.lines} line(s): ${JSON.stringify(e.relayLog.byMessage).slice(0, 300)}`);
    if (e.nginxErrorLog) problems.push(`${where}: nginx error log ${e.nginxErrorLog.lines} line(s): ${e.nginxErrorLog.samples[0].slice(0, 200)}`);
    for (const name of Object.keys(procs)) if (e[`${name}Exited`]) problems.push(`${where}: ${name} process exited (${e[`${name}Exited`]})`);
  }
  if (setup && setup.firstAttemptFailures > 0)
    problems.push(`setup: ${setup.firstAttemptFailures}/${setup.runs} agents did not answer 200 on the first request after "online"`);
  if (setup?.relayLog) problems.push(`setup: relay logged ${JSON.stringify(setup.relayLog.byMessage).slice(0, 300)}`);
  if (idle?.failed) problems.push(`idle: failed: ${idle.failed.split('\n')[0]}`);
  if (failover?.failed) problems.push(`failover: failed: ${failover.failed.split('\n')[0]}`);
  if (tcp?.failed) problems.push(`tcp: failed: ${tcp.failed.split('\n')[0]}`);
  for (const f of failover?.failures ?? []) problems.push(`failover: ${f}`);
  if (failover?.summary) {
    const bad = (m) => Object.keys(m).filter((k) => k !== '200');
    const a = bad(failover.summary.redis.aStatusesDuringOutage);
    if (a.length > 0) problems.push(`failover redis: relay A (holding the agent) answered ${a.join(', ')} while Redis was down (expected only 200)`);
    const q = bad(failover.summary.request.statuses);
    if (q.length > 0)
      problems.push(`failover request: the request sent to B right after relay A was killed got ${q.join(', ')} (expected to wait for the agent and get 200)`);
    const ex = Object.keys(failover.summary.drain.aExits).filter((k) => k !== 'code 0');
    if (ex.length > 0) problems.push(`failover drain: relay A ended with ${ex.join(', ')} after SIGTERM (expected code 0)`);
    const dr = bad(failover.summary.drain.bStatusesDuringDrain);
    if (dr.length > 0) problems.push(`failover drain: B answered ${dr.join(', ')} while A drained`);
  }
  for (const st of idle?.steps ?? []) {
    const where = `idle ${st.tunnels} tunnels`;
    if (st.failed > 0) problems.push(`${where}: ${st.failed} light tunnels failed to register ${JSON.stringify(st.errors)}`);
    if (st.closedAfterReady > 0)
      problems.push(
        `${where}: ${st.closedAfterReady} registered tunnels were closed by the relay while idle (first: ${JSON.stringify(st.closedSamples?.[0] ?? {})})`,
      );
    if (st.relaySessions !== st.tunnels) problems.push(`${where}: the relay reports ${st.relaySessions} sessions, expected ${st.tunnels}`);
  }
  if (idle?.relayLog) problems.push(`idle: the idle relay logged ${idle.relayLog.lines} line(s): ${JSON.stringify(idle.relayLog.byMessage).slice(0, 300)}`);
  if (idle?.mainRelayLog)
    problems.push(`idle: the relay logged ${idle.mainRelayLog.lines} line(s): ${JSON.stringify(idle.mainRelayLog.byMessage).slice(0, 300)}`);
  process.stdout.write(problems.length > 0 ? `\nProblems:\n${problems.map((p) => `  - ${p}`).join('\n')}\n` : '\nNo errors or non-2xx responses.\n');
  if (notes.length > 0) process.stdout.write(`\nNotes:\n${notes.map((p) => `  - ${p}`).join('\n')}\n`);

  // ---- JSON
  let gitCommit;
  try {
    gitCommit = execFileSync('git', ['rev-parse', 'HEAD'], { cwd: ROOT, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
  } catch {
    // not a git checkout
  }
  const versionOf = (cmd, args) => {
    try {
      const r = spawnSync(cmd, args, { encoding: 'utf8' });
      return `${r.stdout}${r.stderr}`.trim().split('\n')[0];
    } catch {
      return undefined;
    }
  };
  const report = {
    startedAt: started.toISOString(),
    finishedAt: new Date().toISOString(),
    gitCommit,
    machine: {
      busyBeforeStartPercentOfOneCore: busyBeforeStart,
      maxOtherCpuPercentDuringRuns: maxOther,
      cpus: os.cpus().length,
      cpuModel: os.cpus()[0]?.model,
      platform: `${os.platform()} ${os.release()}`,
      totalMemMiB: Math.round(os.totalmem() / 1048576),
      loadavgAtEnd: os.loadavg(),
    },
    versions: {
      node: process.version,
      autocannon: require('autocannon/package.json').version,
      wrk: wrkPath ? versionOf('wrk', ['-v']) : undefined,
      nginx: nginx ? versionOf(nginxPath, ['-v']) : undefined,
    },
    options: {
      tool: opts.tool,
      durationS: opts.durationS,
      warmupS: opts.warmupS,
      repeat: opts.repeat,
      setupRuns: opts.setupRuns,
      failoverTrials: opts.failoverTrials,
      quick: opts.quick,
      only: opts.only,
      nginxBuffering: process.env.BENCH_NGINX_BUFFERING ?? 'off',
    },
    setupDetails: {
      relayNodeFlags: RELAY_NODE_FLAGS,
      relayArgs: [...baseRelayArgs(), ...extraRelayArgs()],
      crossNode: cross
        ? {
            redisArgs: 'redis-server --port <free> --bind 127.0.0.1 --save "" --appendonly no --client-output-buffer-limit "pubsub 256mb 64mb 60"',
            relayAArgs: ['--redis', cross.redis.url, '--node-id', 'bench-a'],
            relayBArgs: ['--redis', cross.redis.url, '--node-id', 'bench-b'],
            tunnelHostA: cross.agentX.host,
            tunnelHostB: cross.hostB,
          }
        : undefined,
      downloadBytes: DOWNLOAD_BYTES,
      uploadBytes: UPLOAD_BYTES,
      wsMessageBytes: WS_MESSAGE_BYTES,
      sseIntervalMs: SSE_INTERVAL_MS,
      idleSteps: IDLE_STEPS,
      tunnelHost: agent.host,
      nginxConf: nginx ? fs.readFileSync(path.join(nginx.dir, 'nginx.conf'), 'utf8') : undefined,
      nginxError,
    },
    sanity,
    results,
    ...(opts.repeat > 1 ? { allRuns: runs } : {}),
    setup,
    idle,
    failover,
    tcp,
    problems,
    notes,
  };
  fs.mkdirSync(RESULTS_DIR, { recursive: true });
  const file = path.join(RESULTS_DIR, `${started.toISOString().replace(/[:.]/g, '-')}.json`);
  fs.writeFileSync(file, `${JSON.stringify(report, null, 2)}\n`);
  process.stdout.write(`\nJSON: ${path.relative(process.cwd(), file) || file}\n`);

  await shutdownAll();
  clearTimeout(budget);
  if (profileDir !== undefined) printProfiles(profileDir);
  if (keepTmp) process.stdout.write(`temp dir kept: ${tmpDir}\n`);
  removeTmp();
}

main().catch(async (err) => {
  process.stderr.write(`bench: ${err?.stack ? err.stack : String(err)}\n`);
  if (tmpDir !== undefined) {
    for (const f of ['relay.log', 'agent.err.log', 'relay-a.log', 'relay-b.log', 'agent-x.err.log']) {
      try {
        const text = fs.readFileSync(path.join(tmpDir, f), 'utf8').trim();
        if (text) process.stderr.write(`--- ${f} (last 2000 chars)\n${text.slice(-2000)}\n`);
      } catch {
        // none
      }
    }
  }
  const hard = setTimeout(() => {
    killAllSync();
    process.exit(1);
  }, 4000);
  await shutdownAll().catch(() => {});
  clearTimeout(hard);
  removeTmp();
  process.exit(1);
});
