/**
 * One soak run from start to report: starts the fleet, runs the traffic mix with the fault
 * schedule and the memory sampler for the set time, stops the faults, waits for every tunnel to
 * be back and every relay to hold no stream, takes a last sample, judges, and stops everything
 * (also when something throws: the caller's cleanup() ends what is left).
 */
import os from 'node:os';
import { cleanup, waitFor } from '../../test/kit';
import { FaultInjector } from './faults';
import { type Fleet, type SoakTunnel, startFleet } from './fleet';
import { FAULT_KINDS, type FailedOp, Ledger, OP_KINDS, type OpKind } from './ledger';
import { criterion, levelling, type MemoryPoint, MemorySampler } from './memory';
import type { SoakOptions } from './options';
import { Random } from './random';
import type { RelayNode } from './relayProcess';
import type { NodeEndState, OpRow, RelayReport, SoakReport } from './report';
import { OP_WEIGHTS, runOp } from './traffic';

/** Tunnels must be back online this long after the last fault was healed. */
const BACK_ONLINE_DEADLINE_MS = 20_000;
/** Relays must hold no stream this long after the last operation ended. */
const QUIET_DEADLINE_MS = 15_000;
/** No fault starts in this last stretch of the traffic time, so all are healed and recovered before it ends. */
const FAULT_FREE_TAIL_MS = 4000;

/** A worker waits this long after a failed operation before the next one. */
const FAILURE_PAUSE_MS = 20;

const MiB = 1024 * 1024;
const round1 = (x: number): number => Math.round(x * 10) / 10;

/** Each relay's open streams, sessions and TCP sockets now; `socketsBefore`: its sockets before the traffic. */
async function endStates(fleet: Fleet, socketsBefore: ReadonlyMap<RelayNode, number>): Promise<Map<RelayNode, NodeEndState>> {
  const out = new Map<RelayNode, NodeEndState>();
  for (const node of fleet.nodes) {
    const [m, p] = await Promise.all([node.metrics(), node.sample(false)]);
    out.set(node, {
      streamsIngress: m.get('burrow_streams_open{side="ingress"}') ?? -1,
      streamsAgent: m.get('burrow_streams_open{side="agent"}') ?? -1,
      sessions: m.get('burrow_agent_sessions{state="registered"}') ?? -1,
      pendingSessions: m.get('burrow_agent_sessions{state="pending"}') ?? -1,
      expectedSessions: fleet.tunnels.filter((t) => t.holder === node).length,
      sockets: p.resources.TCPSocketWrap ?? 0,
      socketsBefore: socketsBefore.get(node) ?? -1,
    });
  }
  return out;
}

function percentiles(ms: readonly number[]): { p50Ms: number; p99Ms: number; maxMs: number } {
  if (ms.length === 0) return { p50Ms: 0, p99Ms: 0, maxMs: 0 };
  const s = [...ms].sort((a, b) => a - b);
  const at = (q: number): number => s[Math.min(s.length - 1, Math.floor(q * s.length))] as number;
  return { p50Ms: at(0.5), p99Ms: at(0.99), maxMs: s[s.length - 1] as number };
}

/** No stream open, every agent registered once, and no more TCP sockets than before the traffic (agents, Redis). */
const quiet = (s: NodeEndState): boolean =>
  s.streamsIngress === 0 && s.streamsAgent === 0 && s.sessions === s.expectedSessions && s.pendingSessions === 0 && s.sockets <= s.socketsBefore;

export async function runSoak(options: SoakOptions, log: (line: string) => void): Promise<SoakReport> {
  const wallStart = Date.now();
  const ledger = new Ledger();
  const rng = new Random(options.seed);
  try {
    const fleet = await startFleet(options, ledger, log);
    const sampler = new MemorySampler(fleet.nodes, ledger, options.sampleEveryMs);
    ledger.begin();
    await sampler.sampleOnce('before');

    const faultTargets = fleet.tunnels.filter((t) => t.proxy !== undefined).map((t) => ({ name: t.name, proxy: t.proxy as NonNullable<SoakTunnel['proxy']> }));
    const injector = new FaultInjector(ledger, rng, faultTargets, fleet.redis !== undefined ? { server: fleet.redis, nodes: fleet.nodes } : undefined, {
      everyMs: options.faultEveryMs,
      firstAtMs: Math.min(1000, options.faultEveryMs / 2),
      lastStartMs: options.durationMs - FAULT_FREE_TAIL_MS,
    });
    let launching = true;
    const worker = async (): Promise<void> => {
      while (launching) {
        const t = rng.pick(fleet.tunnels);
        const node = rng.pick(fleet.nodes);
        const kind = rng.weighted(OP_WEIGHTS);
        const start = ledger.now();
        const outcome = await runOp(kind, { port: node.port, host: t.hostOn(node) }, rng);
        ledger.record({ kind, tunnel: t.name, ingress: node.name, holder: t.holder.name, crossNode: node !== t.holder, start, end: ledger.now() }, outcome);
        // A failure can be instant (a fast 503 while Redis is down): pause, rather than spin on it.
        if (!outcome.ok) await new Promise((r) => setTimeout(r, FAILURE_PAUSE_MS));
      }
    };
    log(
      `traffic for ${options.durationMs / 1000} s: ${options.concurrency} operations at a time, a fault every ${options.faultEveryMs / 1000} s, seed ${options.seed}`,
    );
    injector.start();
    sampler.start();
    const workers = Array.from({ length: options.concurrency }, () => worker());
    const progressEveryMs = Math.max(10_000, Math.min(60_000, Math.round(options.durationMs / 10)));
    const progress = setInterval(() => {
      const ops = OP_KINDS.reduce((s, k) => s + ledger.counts[k].total, 0);
      const failed = OP_KINDS.reduce((s, k) => s + ledger.counts[k].failed, 0);
      const faults = FAULT_KINDS.reduce((s, k) => s + ledger.faultCounts()[k], 0);
      const mem = fleet.nodes
        .map((n) => {
          const last = sampler.series[n.name]?.at(-1);
          return last !== undefined ? `${n.name} rss ${(last.rss / MiB).toFixed(0)} heap ${(last.liveHeap / MiB).toFixed(1)} MiB (after GC)` : '';
        })
        .join(', ');
      log(`  ${(ledger.now() / 1000).toFixed(0)} s: ${ops} operations, ${failed} failed, ${faults} faults; ${mem}`);
    }, progressEveryMs);
    await new Promise((r) => setTimeout(r, options.durationMs));
    launching = false;
    clearInterval(progress);
    const trafficMs = ledger.now();
    await injector.stop();
    await Promise.all(workers);
    await sampler.stop();
    log(`traffic stopped after ${(trafficMs / 1000).toFixed(1)} s; checking that every tunnel is back and every relay is quiet`);

    const reasons: string[] = [];
    try {
      await waitFor(() => fleet.tunnels.every((t) => !ledger.isOffline(t.name)), BACK_ONLINE_DEADLINE_MS, 'every tunnel back online');
    } catch (err) {
      reasons.push(`${(err as Error).message}: offline ${fleet.tunnels.filter((t) => ledger.isOffline(t.name)).map((t) => t.name)}`);
    }
    const quietStart = Date.now();
    const socketsBefore = new Map(fleet.nodes.map((n) => [n, sampler.series[n.name]?.[0]?.sockets ?? -1]));
    let states = await endStates(fleet, socketsBefore);
    // Agents whose session still holds streams (undefined: no session at all).
    const busyAgents = (): string[] =>
      fleet.tunnels.flatMap((t) => {
        const n = t.agentStreams();
        return n === 0 ? [] : [`${t.name} ${n === undefined ? 'without a session' : `${n} streams`}`];
      });
    try {
      await waitFor(
        async () => {
          states = await endStates(fleet, socketsBefore);
          return [...states.values()].every(quiet) && busyAgents().length === 0;
        },
        QUIET_DEADLINE_MS,
        'relays holding no stream',
      );
    } catch {
      // reported below with the last values seen
    }
    const waitedMs = Date.now() - quietStart;
    const busy = busyAgents();
    const quietOk = [...states.values()].every(quiet) && busy.length === 0;
    const endDetail = `${fleet.nodes
      .map((n) => {
        const s = states.get(n) as NodeEndState;
        return `${n.name}: streams ${s.streamsIngress} ingress / ${s.streamsAgent} agent, sessions ${s.sessions} of ${s.expectedSessions} (${s.pendingSessions} pending), TCP sockets ${s.sockets} (${s.socketsBefore} before the traffic)`;
      })
      .join('; ')}; agents: ${busy.length === 0 ? `no stream open in any of ${fleet.tunnels.length}` : busy.join(', ')}`;
    await sampler.sampleOnce('after');

    // Judging.
    const classified = ledger.classify();
    const byKind = Object.fromEntries(
      OP_KINDS.map((k) => [k, { ...ledger.counts[k], expected: 0, unexpected: 0, ...percentiles(ledger.durations[k]) }]),
    ) as Record<OpKind, OpRow>;
    for (const f of classified.expected) byKind[f.kind].expected++;
    for (const f of classified.unexpected) byKind[f.kind].unexpected++;
    const total: OpRow = { total: 0, ok: 0, failed: 0, bytes: 0, units: 0, expected: 0, unexpected: 0, p50Ms: 0, p99Ms: 0, maxMs: 0 };
    for (const k of OP_KINDS) for (const key of ['total', 'ok', 'failed', 'bytes', 'units', 'expected', 'unexpected'] as const) total[key] += byKind[k][key];
    const expectedByError: Record<string, number> = {};
    for (const f of classified.expected) {
      // By status and code (the page's text varies with the label and the stream).
      const e = f.error.split(' — ')[0]?.replace(/\d+/g, 'N').slice(0, 80) ?? '';
      expectedByError[e] = (expectedByError[e] ?? 0) + 1;
    }
    const sortedExpected = Object.fromEntries(Object.entries(expectedByError).sort((a, b) => b[1] - a[1]));
    if (ledger.droppedFailures > 0)
      ledger.problems.push(`${ledger.droppedFailures} failed operations beyond the first ${ledger.failures.length} were not attributed`);

    const relays: Record<string, RelayReport> = {};
    for (const node of fleet.nodes) {
      const samples = sampler.series[node.name] as MemoryPoint[];
      const verdict = levelling(samples, trafficMs, options.maxGrowthPct);
      const span = (f: (p: MemoryPoint) => number) => ({
        start: round1(f(samples[0] as MemoryPoint) / MiB),
        peak: round1(Math.max(...samples.map(f)) / MiB),
        end: round1(f(samples[samples.length - 1] as MemoryPoint) / MiB),
      });
      relays[node.name] = {
        nodeId: node.nodeId,
        samples,
        rssMiB: samples.length > 0 ? span((p) => p.rss) : { start: 0, peak: 0, end: 0 },
        heapMiB: samples.length > 0 ? span((p) => p.liveHeap) : { start: 0, peak: 0, end: 0 },
        liveMiB: samples.length > 0 ? span((p) => p.live) : { start: 0, peak: 0, end: 0 },
        verdict,
        endState: states.get(node),
        logs: node.logSummary(),
      };
      if (!verdict.passed) reasons.push(`relay ${node.name} memory: ${verdict.reason}`);
      if (node.child.exitCode !== null || node.child.signalCode !== null)
        reasons.push(`relay ${node.name} exited during the soak (${node.child.exitCode ?? node.child.signalCode})`);
    }
    if (classified.unexpected.length > 0) reasons.push(`${classified.unexpected.length} unexpected failures`);
    if (classified.unexplainedOffline.length > 0) reasons.push(`${classified.unexplainedOffline.length} times an agent went offline outside any fault window`);
    if (!quietOk) reasons.push(`relays not quiet ${QUIET_DEADLINE_MS / 1000} s after the traffic: ${endDetail}`);
    reasons.push(...ledger.problems);

    const byNode: Record<string, { proxied: number; control: number }> = {};
    for (const n of fleet.nodes) {
      const mine = fleet.tunnels.filter((t) => t.holder === n);
      byNode[n.name] = { proxied: mine.filter((t) => t.proxy !== undefined).length, control: mine.filter((t) => t.proxy === undefined).length };
    }
    const proxied = fleet.tunnels.filter((t) => t.proxy !== undefined).length;
    const { jsonPath: _jsonPath, ...shownOptions } = options;
    return {
      passed: reasons.length === 0,
      reasons,
      startedAt: new Date(wallStart).toISOString(),
      options: shownOptions,
      node: `${process.version} on ${os.cpus().length} CPUs`,
      trafficMs,
      wallMs: Date.now() - wallStart,
      tunnels: { total: fleet.tunnels.length, proxied, control: fleet.tunnels.length - proxied, byNode },
      operations: { byKind, total, perSecond: total.total / (trafficMs / 1000) },
      faults: { byKind: ledger.faultCounts(), windows: ledger.windows },
      reconnects: {
        reconnections: Object.values(ledger.reconnections).reduce((a, b) => a + b, 0),
        attempts: ledger.reconnectAttempts,
        explained: classified.explainedOffline,
        unexplained: classified.unexplainedOffline,
        spans: ledger.offline,
      },
      unexpected: { count: classified.unexpected.length, first: classified.unexpected.slice(0, 10) as FailedOp[] },
      expectedFirst: classified.expected.slice(0, 30),
      slowest: ledger.slowest,
      expectedByError: sortedExpected,
      problems: [...ledger.problems],
      memoryCriterion: criterion(options.maxGrowthPct),
      relays,
      endState: { ok: quietOk, waitedMs, detail: `${quietOk ? 'quiet' : 'NOT quiet'} after ${waitedMs} ms: ${endDetail}` },
    };
  } finally {
    await cleanup();
  }
}
