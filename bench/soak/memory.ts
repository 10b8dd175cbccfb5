/**
 * Relay memory over time: samples each relay process every few seconds (memory before and after
 * a forced full GC, handles, CPU, open streams and sessions from /metrics) and judges whether its
 * memory levelled off. Reads the relays; changes nothing in them except the forced GC.
 */
import type { Ledger } from './ledger';
import type { RelayNode } from './relayProcess';

const MiB = 1024 * 1024;

export type Phase = 'before' | 'traffic' | 'after';

export interface MemoryPoint {
  /** ms since the traffic started (negative: before it). */
  readonly t: number;
  readonly phase: Phase;
  readonly rss: number;
  readonly heapUsed: number;
  readonly heapTotal: number;
  /** After a forced full GC: V8 heap used, and memory outside it (Buffers and other external). */
  readonly liveHeap: number;
  readonly liveExternal: number;
  /** liveHeap + liveExternal: what the relay really holds on to. */
  readonly live: number;
  readonly rssAfterGc: number;
  readonly gcMs: number;
  /** Active handles: TCP sockets, timers, all. */
  readonly sockets: number;
  readonly timers: number;
  readonly handles: number;
  readonly cpuMs: number;
  readonly streamsIngress: number;
  readonly streamsAgent: number;
  readonly sessions: number;
}

export class MemorySampler {
  readonly series: Record<string, MemoryPoint[]> = {};
  private timer: NodeJS.Timeout | undefined;
  private inFlight: Promise<void> | undefined;
  private stopped = false;

  constructor(
    private readonly nodes: readonly RelayNode[],
    private readonly ledger: Ledger,
    private readonly everyMs: number,
  ) {
    for (const n of nodes) this.series[n.name] = [];
  }

  /** Samples every relay once now. */
  sampleOnce(phase: Phase): Promise<void> {
    const run = Promise.all(this.nodes.map((n) => this.sampleNode(n, phase))).then(() => undefined);
    this.inFlight = run;
    return run;
  }

  private async sampleNode(node: RelayNode, phase: Phase): Promise<void> {
    try {
      const t = this.ledger.now();
      const [p, m] = await Promise.all([node.sample(), node.metrics()]);
      const live = p.after.heapUsed + p.after.external;
      (this.series[node.name] as MemoryPoint[]).push({
        t,
        phase,
        rss: p.before.rss,
        heapUsed: p.before.heapUsed,
        heapTotal: p.before.heapTotal,
        liveHeap: p.after.heapUsed,
        liveExternal: p.after.external,
        live,
        rssAfterGc: p.after.rss,
        gcMs: Math.round(p.gcMs * 10) / 10,
        sockets: p.resources.TCPSocketWrap ?? 0,
        timers: p.resources.Timeout ?? 0,
        handles: Object.values(p.resources).reduce((a, b) => a + b, 0),
        cpuMs: Math.round(p.cpuMs),
        streamsIngress: m.get('burrow_streams_open{side="ingress"}') ?? -1,
        streamsAgent: m.get('burrow_streams_open{side="agent"}') ?? -1,
        sessions: m.get('burrow_agent_sessions{state="registered"}') ?? -1,
      });
    } catch (err) {
      this.ledger.problems.push(`relay ${node.name}: memory sample failed: ${String(err)}`);
    }
  }

  /** Samples every `everyMs` (the next one is timed from the end of the last). */
  start(): void {
    const tick = (): void => {
      if (this.stopped) return;
      void this.sampleOnce('traffic').then(() => {
        if (!this.stopped) this.timer = setTimeout(tick, this.everyMs);
      });
    };
    this.timer = setTimeout(tick, this.everyMs);
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    await this.inFlight;
  }
}

/** One judged figure: its value in the middle and the last third of the traffic time. */
export interface Measure {
  readonly name: 'heap' | 'external' | 'rss';
  /** How a third is summed up: its median, or its lowest sample (the floor under what is in flight). */
  readonly stat: 'median' | 'min';
  readonly middleMiB: number;
  readonly lastMiB: number;
  readonly growthPct: number;
  readonly limitPct: number;
  readonly floorMiB: number;
  readonly ok: boolean;
}

export interface Verdict {
  readonly judged: boolean;
  readonly passed: boolean;
  readonly reason: string;
  readonly measures?: readonly Measure[];
  /** Least-squares slope of the heap after GC over the last two thirds, MiB per hour (informational). */
  readonly heapSlopeMiBPerHour?: number;
}

/** Runs shorter than this, or with fewer samples per third, are not judged. */
export const MIN_JUDGED_MS = 60_000;
export const MIN_SAMPLES_PER_THIRD = 5;
/** Growth under this many MiB passes whatever the percentage (sampling noise on small figures). */
export const HEAP_FLOOR_MiB = 1;
export const RSS_FLOOR_MiB = 4;

interface MeasureSpec {
  readonly name: Measure['name'];
  readonly stat: Measure['stat'];
  readonly value: (p: MemoryPoint) => number;
  readonly pct: (maxGrowthPct: number) => number;
  readonly floorMiB: number;
}

const MEASURES: readonly MeasureSpec[] = [
  { name: 'heap', stat: 'median', value: (p) => p.liveHeap, pct: (g) => g, floorMiB: HEAP_FLOOR_MiB },
  // Bodies and messages in flight sit outside the heap and come and go with the load: judge the floor.
  { name: 'external', stat: 'min', value: (p) => p.liveExternal, pct: (g) => g, floorMiB: HEAP_FLOOR_MiB },
  { name: 'rss', stat: 'median', value: (p) => p.rss, pct: (g) => 2 * g, floorMiB: RSS_FLOOR_MiB },
];

export function criterion(maxGrowthPct: number): string {
  return [
    'Each relay reports its memory right after a forced full GC.',
    'The first third of the traffic time is warm-up (JIT, pools, socket buffers settle) and is not judged; the last third is compared with the middle third.',
    `Levelled off when: the V8 heap used after GC (median of each third) grew by at most ${maxGrowthPct}% (or ${HEAP_FLOOR_MiB} MiB, if larger);`,
    `external memory after GC (Buffers; lowest sample of each third, as bodies in flight come and go) by at most ${maxGrowthPct}% (or ${HEAP_FLOOR_MiB} MiB);`,
    `and RSS (median) by at most ${2 * maxGrowthPct}% (or ${RSS_FLOOR_MiB} MiB), as the allocator keeps pages it freed.`,
    'A leak grows with the requests and reconnects served, which never stop, so it lifts the last third above the middle one; a levelled curve does not.',
    `Judged for runs of at least ${MIN_JUDGED_MS / 1000} s with ${MIN_SAMPLES_PER_THIRD}+ samples in each third.`,
  ].join(' ');
}

const median = (xs: readonly number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 === 1 ? (s[m] as number) : ((s[m - 1] as number) + (s[m] as number)) / 2;
};
const round1 = (x: number): number => Math.round(x * 10) / 10;
const round2 = (x: number): number => Math.round(x * 100) / 100;

/** Least-squares slope of `value` over `points`, per ms. */
function slope(points: readonly MemoryPoint[], value: (p: MemoryPoint) => number): number {
  const n = points.length;
  const mt = points.reduce((s, p) => s + p.t, 0) / n;
  const mv = points.reduce((s, p) => s + value(p), 0) / n;
  let num = 0;
  let den = 0;
  for (const p of points) {
    num += (p.t - mt) * (value(p) - mv);
    den += (p.t - mt) ** 2;
  }
  return den === 0 ? 0 : num / den;
}

export function levelling(series: readonly MemoryPoint[], trafficMs: number, maxGrowthPct: number): Verdict {
  const traffic = series.filter((p) => p.phase === 'traffic');
  const middle = traffic.filter((p) => p.t >= trafficMs / 3 && p.t < (2 * trafficMs) / 3);
  const last = traffic.filter((p) => p.t >= (2 * trafficMs) / 3);
  if (trafficMs < MIN_JUDGED_MS || middle.length < MIN_SAMPLES_PER_THIRD || last.length < MIN_SAMPLES_PER_THIRD) {
    return {
      judged: false,
      passed: true,
      reason: `not judged: ${Math.round(trafficMs / 1000)} s of traffic, ${middle.length} and ${last.length} samples in the middle and last thirds (needs ${MIN_JUDGED_MS / 1000} s and ${MIN_SAMPLES_PER_THIRD} each)`,
    };
  }
  const measures = MEASURES.map((m): Measure => {
    const sum = (points: readonly MemoryPoint[]): number => (m.stat === 'median' ? median(points.map(m.value)) : Math.min(...points.map(m.value)));
    const mid = sum(middle);
    const end = sum(last);
    const limitPct = m.pct(maxGrowthPct);
    return {
      name: m.name,
      stat: m.stat,
      middleMiB: round2(mid / MiB),
      lastMiB: round2(end / MiB),
      growthPct: round1(mid > 0 ? ((end - mid) / mid) * 100 : 0),
      limitPct,
      floorMiB: m.floorMiB,
      ok: end - mid <= Math.max((mid * limitPct) / 100, m.floorMiB * MiB),
    };
  });
  const passed = measures.every((m) => m.ok);
  const shown = (ms: readonly Measure[]): string =>
    ms
      .map((m) => `${m.name} ${m.growthPct >= 0 ? '+' : ''}${m.growthPct}% (${m.middleMiB} -> ${m.lastMiB} MiB${m.ok ? '' : `, limit ${m.limitPct}%`})`)
      .join(', ');
  return {
    judged: true,
    passed,
    reason: passed ? `levelled off: ${shown(measures)}` : `still growing: ${shown(measures.filter((m) => !m.ok))}`,
    measures,
    heapSlopeMiBPerHour: round1((slope([...middle, ...last], (p) => p.liveHeap) * 3_600_000) / MiB),
  };
}
