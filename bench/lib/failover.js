/**
 * Failover figures for bench/run.js (scenario id `failover`). Every trial builds its own little
 * fleet on one shared redis-server: relay A and relay B (both `--redis`), and a fresh agent
 * (new key, so a new label) started with `--relay A,B`, so it sits on A. Then one failure, and
 * the clock runs from the moment the harness causes it:
 *
 *   kill      SIGKILL relay A; poll B (one request at a time, every ~10 ms) until the first 200.
 *   request   SIGKILL relay A; at once one request to B: its latency and status.
 *   redis     kill -9 redis-server, leave it down for REDIS_OUTAGE_MS while polling A and B, start
 *             it again on the same port (empty: no persistence); time to the first 200 through B.
 *   drain     SIGTERM relay A (--drain-timeout-ms 20000), nothing in flight; time until the agent
 *             is online on B (its --json "reconnected" line) and until A has exited.
 *
 * Each case runs `trials` times; medians and maxima are what the table shows. Plain CommonJS;
 * the process helpers come from run.js (ctx) so every child is tracked and killed on exit.
 */
const { performance } = require('node:perf_hooks');
const fs = require('node:fs');
const path = require('node:path');

const POLL_INTERVAL_MS = 10;
const POLL_TIMEOUT_MS = 2000;
const REDIS_OUTAGE_MS = 1000;
const CASE_DEADLINE_MS = 30_000;
const DRAIN_TIMEOUT_MS = 20_000;

/** A status as a key: "200", "502 BURROW_ERR_NODE_UNREACHABLE", "error:ECONNREFUSED", "timeout". */
function statusKey(r) {
  const code = r.headers?.['x-burrow-error'];
  return code ? `${r.status} ${code}` : String(r.status);
}

function errorKey(err) {
  if (/^timeout after/.test(err.message)) return 'timeout';
  return `error:${err.code ?? err.message}`;
}

function count(map, key) {
  map[key] = (map[key] ?? 0) + 1;
}

/** The agent's --json stdout, each line stamped with when the harness read it. */
function agentEvents(child) {
  const events = [];
  const waiters = new Set();
  let buf = '';
  child.stdout.on('data', (c) => {
    const at = performance.now();
    buf += c.toString('utf8');
    for (let nl = buf.indexOf('\n'); nl >= 0; nl = buf.indexOf('\n')) {
      const text = buf.slice(0, nl);
      buf = buf.slice(nl + 1);
      let e;
      try {
        e = JSON.parse(text);
      } catch {
        e = { event: 'unparsable', text: text.slice(0, 300) };
      }
      e.at = at;
      events.push(e);
      for (const w of [...waiters]) w(e);
    }
  });
  const next = (pred, timeoutMs, what) =>
    new Promise((resolve, reject) => {
      const hit = events.find(pred);
      if (hit !== undefined) {
        resolve(hit);
        return;
      }
      const timer = setTimeout(() => {
        waiters.delete(waiter);
        reject(new Error(`${what}: nothing within ${timeoutMs} ms`));
      }, timeoutMs);
      const waiter = (e) => {
        if (!pred(e)) return;
        clearTimeout(timer);
        waiters.delete(waiter);
        resolve(e);
      };
      waiters.add(waiter);
    });
  return { events, next };
}

/**
 * Sequential polling: one request at a time, POLL_INTERVAL_MS apart, until `stop()` says so or
 * `untilOk` and a 200 came. Returns the time of the first 200 (ms after t0) and the statuses seen.
 */
async function poll(ctx, { port, host, t0, untilOk = true, stop = () => false, deadlineMs = CASE_DEADLINE_MS }) {
  const statuses = {};
  const before = {}; // statuses before the first 200
  let firstOkMs = null;
  let requests = 0;
  while (performance.now() - t0 < deadlineMs) {
    if (stop()) break;
    let key;
    try {
      key = statusKey(await ctx.request({ port, host, path: '/', timeoutMs: POLL_TIMEOUT_MS }));
    } catch (err) {
      key = errorKey(err);
    }
    requests++;
    count(statuses, key);
    if (key === '200' && firstOkMs === null) {
      firstOkMs = performance.now() - t0;
      if (untilOk) break;
    }
    if (firstOkMs === null) count(before, key);
    await ctx.sleep(POLL_INTERVAL_MS);
  }
  return { firstOkMs, statuses, statusesBeforeFirstOk: before, requests };
}

/** Relays A and B on `redis`, an agent with `--relay A,B` online on A, a 200 through both. */
async function startPair(ctx, redis, appPort, trialId, { relayArgs = [] } = {}) {
  const a = await ctx.startRelay({ name: 'fo-relay-a', logName: `fo-${trialId}-relay-a.log`, redisUrl: redis.url, nodeId: `fo-${trialId}-a`, args: relayArgs });
  const b = await ctx.startRelay({ name: 'fo-relay-b', logName: `fo-${trialId}-relay-b.log`, redisUrl: redis.url, nodeId: `fo-${trialId}-b`, args: relayArgs });
  const home = fs.mkdtempSync(path.join(ctx.tmpDir, `fo-${trialId}-home-`));
  const errFile = path.join(ctx.tmpDir, `fo-${trialId}-agent.err.log`);
  const err = fs.openSync(errFile, 'a');
  const agent = ctx.startChild('fo-agent', process.execPath, [ctx.AGENT_BIN, 'http', String(appPort), '--relay', `${a.url},${b.url}`, '--json'], {
    env: { BURROW_HOME: home },
    stdio: ['ignore', 'pipe', err],
  });
  fs.closeSync(err);
  const ev = agentEvents(agent);
  const online = await ev.next((e) => e.event === 'online' || e.event === 'error', 15_000, 'failover agent online');
  if (online.event !== 'online') throw new Error(`failover agent: ${JSON.stringify(online)}`);
  if (!online.url.endsWith(`:${a.port}`)) throw new Error(`failover agent came online on ${online.url}, expected relay A (port ${a.port})`);
  const hostA = `${online.label}.localhost:${a.port}`;
  const hostB = `${online.label}.localhost:${b.port}`;
  for (const [port, host] of [
    [a.port, hostA],
    [b.port, hostB],
  ]) {
    await ctx.waitFor('failover tunnel answering', async () => (await ctx.request({ port, host, path: '/', timeoutMs: 2000 })).status === 200, {
      child: agent,
      timeoutMs: 10_000,
    });
  }
  return { a, b, agent, ev, label: online.label, hostA, hostB, errFile };
}

async function stopPair(ctx, p) {
  const logs = {};
  for (const [k, r] of [
    ['relayA', p.a],
    ['relayB', p.b],
  ]) {
    const lines = r.log.take();
    if (lines.length > 0) logs[k] = ctx.summarizeRelayLines(lines);
  }
  await ctx.stopChild(p.agent, 'SIGTERM', 3000);
  await Promise.all([ctx.stopChild(p.a.child, 'SIGTERM', 3000), ctx.stopChild(p.b.child, 'SIGTERM', 3000)]);
  let agentStderr = '';
  try {
    agentStderr = fs.readFileSync(p.errFile, 'utf8').trim();
  } catch {
    // none
  }
  const other = p.ev.events.filter((e) => e.event !== 'request' && e.event !== 'online').map(({ at: _at, ...e }) => e);
  return { relayLogs: logs, agentEvents: other.slice(0, 10), ...(agentStderr ? { agentStderr: agentStderr.slice(-1000) } : {}) };
}

/** When the agent printed "reconnected" with relay B's URL, in ms after t0 (null if it did not within the wait). */
async function agentOnB(p, t0, timeoutMs) {
  try {
    const e = await p.ev.next((x) => x.event === 'reconnected' && x.url.endsWith(`:${p.b.port}`), timeoutMs, 'agent reconnected on B');
    return e.at - t0;
  } catch {
    return null;
  }
}

async function caseKill(ctx, redis, appPort, id) {
  const p = await startPair(ctx, redis, appPort, id);
  try {
    const t0 = performance.now();
    ctx.killGroup(p.a.child, 'SIGKILL');
    const moved = agentOnB(p, t0, CASE_DEADLINE_MS);
    const r = await poll(ctx, { port: p.b.port, host: p.hostB, t0 });
    return {
      killToFirst200ViaBMs: r.firstOkMs,
      killToAgentOnBMs: await moved,
      statuses: r.statuses,
      statusesBeforeFirst200: r.statusesBeforeFirstOk,
      requests: r.requests,
      ...(await stopPair(ctx, p)),
    };
  } catch (err) {
    await stopPair(ctx, p).catch(() => {});
    throw err;
  }
}

async function caseRequest(ctx, redis, appPort, id) {
  const p = await startPair(ctx, redis, appPort, id);
  try {
    const t0 = performance.now();
    ctx.killGroup(p.a.child, 'SIGKILL');
    const moved = agentOnB(p, t0, CASE_DEADLINE_MS);
    let status;
    let ms;
    try {
      const r = await ctx.request({ port: p.b.port, host: p.hostB, path: '/', timeoutMs: 20_000 });
      status = statusKey(r);
      ms = performance.now() - t0;
    } catch (err) {
      status = errorKey(err);
      ms = performance.now() - t0;
    }
    return { requestMs: ms, status, killToAgentOnBMs: await moved, ...(await stopPair(ctx, p)) };
  } catch (err) {
    await stopPair(ctx, p).catch(() => {});
    throw err;
  }
}

async function caseRedis(ctx, fo, appPort, id) {
  const p = await startPair(ctx, fo.redis, appPort, id);
  try {
    const t0 = performance.now();
    ctx.killGroup(fo.redis.child, 'SIGKILL');
    await fo.redis.child.exitInfo;
    // A (holds the agent) and B (needs Redis to find it) polled side by side through the outage.
    let phase = 'outage';
    const aStatuses = { outage: {}, recovery: {} };
    let aStop = false;
    const aPoll = (async () => {
      while (!aStop && performance.now() - t0 < CASE_DEADLINE_MS) {
        let key;
        try {
          key = statusKey(await ctx.request({ port: p.a.port, host: p.hostA, path: '/', timeoutMs: POLL_TIMEOUT_MS }));
        } catch (err) {
          key = errorKey(err);
        }
        count(aStatuses[phase], key);
        await ctx.sleep(POLL_INTERVAL_MS);
      }
    })();
    const bOutage = await poll(ctx, { port: p.b.port, host: p.hostB, t0, untilOk: false, stop: () => performance.now() - t0 >= REDIS_OUTAGE_MS });
    const outageMs = performance.now() - t0;
    phase = 'recovery';
    const tRestart = performance.now();
    fo.redis = await ctx.startRedis({ name: 'fo-redis', port: fo.redis.port });
    const tReady = performance.now();
    const bAfter = await poll(ctx, { port: p.b.port, host: p.hostB, t0: tRestart });
    aStop = true;
    await aPoll;
    return {
      outageMs,
      restartToRedisReadyMs: tReady - tRestart,
      restartToFirst200ViaBMs: bAfter.firstOkMs,
      redisReadyToFirst200ViaBMs: bAfter.firstOkMs === null ? null : bAfter.firstOkMs - (tReady - tRestart),
      bStatusesDuringOutage: bOutage.statuses,
      bStatusesAfterRestart: bAfter.statuses,
      aStatusesDuringOutage: aStatuses.outage,
      aStatusesUntilBServed: aStatuses.recovery,
      ...(await stopPair(ctx, p)),
    };
  } catch (err) {
    await stopPair(ctx, p).catch(() => {});
    throw err;
  }
}

async function caseDrain(ctx, redis, appPort, id) {
  const p = await startPair(ctx, redis, appPort, id, { relayArgs: ['--drain-timeout-ms', String(DRAIN_TIMEOUT_MS)] });
  try {
    const t0 = performance.now();
    ctx.killGroup(p.a.child, 'SIGTERM');
    let aExitMs = null;
    const exited = p.a.child.exitInfo.then((info) => {
      aExitMs = performance.now() - t0;
      return info;
    });
    const moved = agentOnB(p, t0, DRAIN_TIMEOUT_MS + 5000);
    // Requests through B meanwhile (one at a time), until A is gone.
    const r = await poll(ctx, { port: p.b.port, host: p.hostB, t0, untilOk: false, stop: () => aExitMs !== null, deadlineMs: DRAIN_TIMEOUT_MS + 5000 });
    const info = await Promise.race([exited, ctx.sleep(DRAIN_TIMEOUT_MS + 5000).then(() => null)]);
    return {
      sigtermToAgentOnBMs: await moved,
      sigtermToAExitMs: aExitMs,
      aExit: info === null ? 'still running' : ctx.describeExit(info),
      bStatusesDuringDrain: r.statuses,
      ...(await stopPair(ctx, p)),
    };
  } catch (err) {
    await stopPair(ctx, p).catch(() => {});
    throw err;
  }
}

const CASES = [
  { id: 'kill', run: (ctx, fo, appPort, id) => caseKill(ctx, fo.redis, appPort, id) },
  { id: 'request', run: (ctx, fo, appPort, id) => caseRequest(ctx, fo.redis, appPort, id) },
  { id: 'redis', run: (ctx, fo, appPort, id) => caseRedis(ctx, fo, appPort, id) },
  { id: 'drain', run: (ctx, fo, appPort, id) => caseDrain(ctx, fo.redis, appPort, id) },
];

function stats(xs) {
  const v = xs.filter((x) => typeof x === 'number');
  if (v.length === 0) return { median: null, max: null, min: null, n: 0 };
  return { median: Math.round(medianOf(v) * 10) / 10, max: Math.round(Math.max(...v) * 10) / 10, min: Math.round(Math.min(...v) * 10) / 10, n: v.length };
}

function medianOf(xs) {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

function sumCounts(list) {
  const out = {};
  for (const m of list) for (const [k, v] of Object.entries(m ?? {})) out[k] = (out[k] ?? 0) + v;
  return out;
}

/** Runs every case `trials` times (cases interleaved). Returns figures, summaries and every trial. */
async function measureFailover(ctx, appPort, trials) {
  const fo = { redis: await ctx.startRedis({ name: 'fo-redis' }) };
  const out = {
    trials,
    pollIntervalMs: POLL_INTERVAL_MS,
    pollTimeoutMs: POLL_TIMEOUT_MS,
    redisOutageMs: REDIS_OUTAGE_MS,
    drainTimeoutMs: DRAIN_TIMEOUT_MS,
    relayDefaults: 'lease-ttl-ms 10000, reconnect-grace-ms 5000 (relay defaults); agent reconnect defaults',
    samples: Object.fromEntries(CASES.map((c) => [c.id, []])),
    failures: [],
  };
  try {
    for (let i = 1; i <= trials; i++) {
      for (const c of CASES) {
        const id = `${c.id}${i}`;
        try {
          const s = await c.run(ctx, fo, appPort, id);
          out.samples[c.id].push(s);
          ctx.log(`  failover ${c.id} ${i}/${trials}: ${oneLine(c.id, s)}`);
        } catch (err) {
          if (ctx.shuttingDown()) throw err;
          out.failures.push(`${c.id} trial ${i}: ${err.message.split('\n')[0]}`);
          ctx.log(`  failover ${c.id} ${i}/${trials}: FAILED: ${err.message.split('\n')[0]}`);
          if (!ctx.isRunning(fo.redis.child)) fo.redis = await ctx.startRedis({ name: 'fo-redis', port: fo.redis.port });
        }
      }
    }
  } finally {
    await ctx.stopChild(fo.redis.child, 'SIGTERM', 3000);
  }
  const k = out.samples.kill;
  const q = out.samples.request;
  const r = out.samples.redis;
  const d = out.samples.drain;
  out.summary = {
    kill: {
      killToFirst200ViaBMs: stats(k.map((s) => s.killToFirst200ViaBMs)),
      killToAgentOnBMs: stats(k.map((s) => s.killToAgentOnBMs)),
      statusesBeforeFirst200: sumCounts(k.map((s) => s.statusesBeforeFirst200)),
    },
    request: {
      requestMs: stats(q.map((s) => s.requestMs)),
      statuses: sumCounts(q.map((s) => ({ [s.status]: 1 }))),
      killToAgentOnBMs: stats(q.map((s) => s.killToAgentOnBMs)),
    },
    redis: {
      restartToFirst200ViaBMs: stats(r.map((s) => s.restartToFirst200ViaBMs)),
      redisReadyToFirst200ViaBMs: stats(r.map((s) => s.redisReadyToFirst200ViaBMs)),
      restartToRedisReadyMs: stats(r.map((s) => s.restartToRedisReadyMs)),
      aStatusesDuringOutage: sumCounts(r.map((s) => s.aStatusesDuringOutage)),
      aStatusesUntilBServed: sumCounts(r.map((s) => s.aStatusesUntilBServed)),
      bStatusesDuringOutage: sumCounts(r.map((s) => s.bStatusesDuringOutage)),
      bStatusesAfterRestart: sumCounts(r.map((s) => s.bStatusesAfterRestart)),
    },
    drain: {
      sigtermToAgentOnBMs: stats(d.map((s) => s.sigtermToAgentOnBMs)),
      sigtermToAExitMs: stats(d.map((s) => s.sigtermToAExitMs)),
      aExits: sumCounts(d.map((s) => ({ [s.aExit]: 1 }))),
      bStatusesDuringDrain: sumCounts(d.map((s) => s.bStatusesDuringDrain)),
    },
  };
  return out;
}

function fmt(ms) {
  return ms === null || ms === undefined ? '-' : `${Math.round(ms)} ms`;
}

function oneLine(id, s) {
  if (id === 'kill') return `first 200 via B after ${fmt(s.killToFirst200ViaBMs)}, agent on B after ${fmt(s.killToAgentOnBMs)} ${JSON.stringify(s.statuses)}`;
  if (id === 'request') return `one request to B: ${s.status} after ${fmt(s.requestMs)} (agent on B after ${fmt(s.killToAgentOnBMs)})`;
  if (id === 'redis')
    return `first 200 via B ${fmt(s.restartToFirst200ViaBMs)} after restart (redis ready after ${fmt(s.restartToRedisReadyMs)}); A during outage ${JSON.stringify(s.aStatusesDuringOutage)}, B ${JSON.stringify(s.bStatusesDuringOutage)}`;
  return `agent on B after ${fmt(s.sigtermToAgentOnBMs)}, A exited after ${fmt(s.sigtermToAExitMs)} (${s.aExit}); B meanwhile ${JSON.stringify(s.bStatusesDuringDrain)}`;
}

/** Rows for the failover table: [case, figure, median, max, n, seen]. */
function failoverRows(f) {
  const s = f.summary;
  const row = (c, fig, st, seen = '') => [
    c,
    fig,
    st.median === null ? '-' : String(Math.round(st.median)),
    st.max === null ? '-' : String(Math.round(st.max)),
    String(st.n),
    seen,
  ];
  const j = (m) =>
    Object.entries(m)
      .map(([k, v]) => `${k} x${v}`)
      .join(', ');
  return [
    row('SIGKILL relay A', 'kill -> first 200 via B', s.kill.killToFirst200ViaBMs, `before it: ${j(s.kill.statusesBeforeFirst200) || 'nothing'}`),
    row('SIGKILL relay A', 'kill -> agent online on B', s.kill.killToAgentOnBMs),
    row('SIGKILL relay A', 'one request to B at once: latency', s.request.requestMs, j(s.request.statuses)),
    row('Redis kill -9, restart', 'restart -> first 200 via B', s.redis.restartToFirst200ViaBMs, `B after restart: ${j(s.redis.bStatusesAfterRestart)}`),
    row(
      'Redis kill -9, restart',
      'redis ready -> first 200 via B',
      s.redis.redisReadyToFirst200ViaBMs,
      `B during ${f.redisOutageMs} ms outage: ${j(s.redis.bStatusesDuringOutage)}`,
    ),
    row(
      'Redis kill -9, restart',
      'A (holds agent) meanwhile',
      { median: null, max: null, n: f.samples.redis.length },
      `outage: ${j(s.redis.aStatusesDuringOutage)}; until B served: ${j(s.redis.aStatusesUntilBServed) || 'nothing'}`,
    ),
    row('SIGTERM relay A (drain)', 'SIGTERM -> agent online on B', s.drain.sigtermToAgentOnBMs, `B meanwhile: ${j(s.drain.bStatusesDuringDrain)}`),
    row('SIGTERM relay A (drain)', 'SIGTERM -> A exited', s.drain.sigtermToAExitMs, j(s.drain.aExits)),
  ];
}

module.exports = { measureFailover, failoverRows, CASES };
