/**
 * The soak report: one JSON-able object (written with --json) and its printed form: operations
 * by kind with their outcomes, faults by kind, reconnects, the first unexpected failures in
 * detail, each relay's memory curve with its verdict, and the state after the traffic stopped.
 * Formats only; judges nothing itself.
 */
import { writeFileSync } from 'node:fs';
import { FAULT_KINDS, type FailedOp, type FaultKind, type FaultWindow, type KindCounts, type OfflineSpan, OP_KINDS, type OpKind } from './ledger';
import type { MemoryPoint, Verdict } from './memory';
import type { SoakOptions } from './options';

export interface OpRow extends KindCounts {
  expected: number;
  unexpected: number;
  /** Durations of the successful ones, ms. */
  p50Ms: number;
  p99Ms: number;
  maxMs: number;
}

export interface NodeEndState {
  readonly streamsIngress: number;
  readonly streamsAgent: number;
  readonly sessions: number;
  readonly pendingSessions: number;
  /** Agents connected to this node. */
  readonly expectedSessions: number;
  /** TCP sockets in the relay process (agents, Redis, visitors), now and before the traffic. */
  readonly sockets: number;
  readonly socketsBefore: number;
}

export interface RelayReport {
  readonly nodeId: string;
  readonly samples: readonly MemoryPoint[];
  /** MiB: first sample (before the traffic), highest, and the last (after it). */
  readonly rssMiB: { readonly start: number; readonly peak: number; readonly end: number };
  /** After a forced GC: the V8 heap used, and heap + external. */
  readonly heapMiB: { readonly start: number; readonly peak: number; readonly end: number };
  readonly liveMiB: { readonly start: number; readonly peak: number; readonly end: number };
  readonly verdict: Verdict;
  readonly endState: NodeEndState | undefined;
  readonly logs: { readonly counts: Record<string, number>; readonly last: readonly string[]; readonly stderr: string };
}

export interface SoakReport {
  readonly passed: boolean;
  /** Why it did not pass (empty when it did). */
  readonly reasons: readonly string[];
  readonly startedAt: string;
  readonly options: Omit<SoakOptions, 'jsonPath'>;
  readonly node: string;
  readonly trafficMs: number;
  readonly wallMs: number;
  readonly tunnels: {
    readonly total: number;
    readonly proxied: number;
    readonly control: number;
    readonly byNode: Record<string, { proxied: number; control: number }>;
  };
  readonly operations: { readonly byKind: Record<OpKind, OpRow>; readonly total: OpRow; readonly perSecond: number };
  readonly faults: { readonly byKind: Record<FaultKind, number>; readonly windows: readonly FaultWindow[] };
  readonly reconnects: {
    readonly reconnections: number;
    readonly attempts: number;
    readonly explained: number;
    readonly unexplained: readonly OfflineSpan[];
    /** Every time an agent was offline. */
    readonly spans: readonly OfflineSpan[];
  };
  readonly unexpected: { readonly count: number; readonly first: readonly FailedOp[] };
  /** The slowest successful operations. */
  readonly slowest: readonly (Omit<FailedOp, 'error' | 'defect'> & { readonly ms: number })[];
  /** The first expected failures, to check the attribution by eye. */
  readonly expectedFirst: readonly FailedOp[];
  /** Expected failures by error text, most frequent first. */
  readonly expectedByError: Record<string, number>;
  readonly problems: readonly string[];
  readonly memoryCriterion: string;
  readonly relays: Record<string, RelayReport>;
  readonly endState: { readonly ok: boolean; readonly waitedMs: number; readonly detail: string };
}

const mib = (bytes: number): string => (bytes / (1024 * 1024)).toFixed(1);

function table(rows: readonly (readonly string[])[]): string {
  const widths = (rows[0] as readonly string[]).map((_, c) => Math.max(...rows.map((r) => (r[c] ?? '').length)));
  return rows.map((r) => r.map((cell, c) => (c === 0 ? cell.padEnd(widths[c] as number) : cell.padStart(widths[c] as number))).join('  ')).join('\n');
}

/** Every k-th sample so that at most `max` rows remain, always with the first and the last. */
export function compact<T>(xs: readonly T[], max = 12): T[] {
  if (xs.length <= max) return [...xs];
  const step = Math.ceil((xs.length - 1) / (max - 1));
  const out: T[] = [];
  for (let i = 0; i < xs.length - 1; i += step) out.push(xs[i] as T);
  out.push(xs[xs.length - 1] as T);
  return out;
}

export function formatReport(r: SoakReport): string {
  const lines: string[] = [];
  const o = r.options;
  lines.push('');
  lines.push(
    `burrow soak: ${(r.trafficMs / 1000).toFixed(0)} s of traffic (wall ${(r.wallMs / 1000).toFixed(0)} s), ${r.tunnels.total} tunnels (${r.tunnels.proxied} behind fault proxies, ${r.tunnels.control} control) on ${o.nodes} relay${o.nodes === 2 ? 's + Redis' : ''}, concurrency ${o.concurrency}, seed ${o.seed}`,
  );
  lines.push('');
  const opRows: string[][] = [['operation', 'total', 'ok', 'failed', 'expected', 'unexpected', 'units', 'MiB moved', 'ok p50/p99/max ms']];
  const row = (name: string, c: OpRow, times: boolean): string[] => [
    name,
    String(c.total),
    String(c.ok),
    String(c.failed),
    String(c.expected),
    String(c.unexpected),
    String(c.units),
    mib(c.bytes),
    times ? `${c.p50Ms}/${c.p99Ms}/${c.maxMs}` : '',
  ];
  for (const k of OP_KINDS) opRows.push(row(k, r.operations.byKind[k], true));
  opRows.push(row('all', r.operations.total, false));
  lines.push(table(opRows));
  lines.push(`(${r.operations.perSecond.toFixed(1)} operations/s; units: requests, SSE events, WebSocket messages echoed)`);
  lines.push('');
  lines.push(`faults: ${FAULT_KINDS.map((k) => `${k} ${r.faults.byKind[k]}`).join(', ')}`);
  lines.push(
    `reconnects: ${r.reconnects.reconnections} (${r.reconnects.attempts} attempts); agent offline ${r.reconnects.explained} times in fault windows, ${r.reconnects.unexplained.length} times outside`,
  );
  const topExpected = Object.entries(r.expectedByError).slice(0, 6);
  if (topExpected.length > 0) lines.push(`expected failures (in fault windows): ${topExpected.map(([e, n]) => `${e} x${n}`).join('; ')}`);
  lines.push('');
  for (const [name, rel] of Object.entries(r.relays)) {
    lines.push(`relay ${name} memory (MiB; heap and external after a forced GC; streams open ingress/agent):`);
    const rows: string[][] = [['t (s)', 'phase', 'rss', 'heap', 'external', 'sockets', 'timers', 'streams', 'cpu s']];
    for (const p of compact(rel.samples)) {
      rows.push([
        (p.t / 1000).toFixed(0),
        p.phase,
        mib(p.rss),
        (p.liveHeap / (1024 * 1024)).toFixed(2),
        mib(p.liveExternal),
        String(p.sockets),
        String(p.timers),
        `${p.streamsIngress}/${p.streamsAgent}`,
        (p.cpuMs / 1000).toFixed(1),
      ]);
    }
    lines.push(table(rows).replace(/^/gm, '  '));
    lines.push(
      `  start/peak/end: rss ${rel.rssMiB.start}/${rel.rssMiB.peak}/${rel.rssMiB.end}, heap ${rel.heapMiB.start}/${rel.heapMiB.peak}/${rel.heapMiB.end}, heap + external ${rel.liveMiB.start}/${rel.liveMiB.peak}/${rel.liveMiB.end} (${rel.samples.length} samples)`,
    );
    lines.push(
      `  verdict: ${rel.verdict.reason}${rel.verdict.heapSlopeMiBPerHour !== undefined ? `; heap slope ${rel.verdict.heapSlopeMiBPerHour} MiB/h` : ''}`,
    );
    const warn = Object.entries(rel.logs.counts)
      .sort((a, b) => b[1] - a[1])
      .slice(0, 4);
    if (warn.length > 0) lines.push(`  log: ${warn.map(([m, n]) => `${m} x${n}`).join('; ')}`);
  }
  lines.push(`memory criterion: ${r.memoryCriterion}`);
  lines.push('');
  lines.push(`after the traffic: ${r.endState.detail}`);
  if (r.unexpected.count > 0 || r.reconnects.unexplained.length > 0) {
    lines.push('');
    lines.push(`UNEXPECTED failures: ${r.unexpected.count}; first ones:`);
    for (const f of r.unexpected.first) {
      lines.push(
        `  ${f.kind} ${f.tunnel} via ${f.ingress} (agent on ${f.holder}) ${(f.start / 1000).toFixed(2)}-${(f.end / 1000).toFixed(2)} s: ${f.error}${f.defect ? ' [defect]' : ''}`,
      );
    }
    for (const s of r.reconnects.unexplained.slice(0, 5)) {
      lines.push(`  agent ${s.tunnel} offline outside fault windows at ${(s.from / 1000).toFixed(2)} s (${s.reason})`);
    }
  } else lines.push('unexpected failures: 0');
  for (const p of r.problems) lines.push(`problem: ${p}`);
  lines.push('');
  lines.push(r.passed ? 'PASS' : `FAIL: ${r.reasons.join('; ')}`);
  return lines.join('\n');
}

export function writeJson(path: string, report: SoakReport): void {
  writeFileSync(path, `${JSON.stringify(report, null, 2)}\n`);
}
