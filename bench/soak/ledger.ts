/**
 * The soak's books: every operation's outcome, every fault window, every time an agent was
 * offline; and the attribution of each failure once the run is over (windows end only when the
 * tunnel is back, so failures are judged at the end, not as they happen). Pure bookkeeping: no
 * sockets, no timers.
 *
 * A failure is EXPECTED when it is not a defect (wrong bytes, a response that was not streamed)
 * and the operation overlapped, in time, a disturbance it could suffer from:
 *   - a fault window on its own tunnel: from the injection until the fault is healed, extended
 *     to the agent's return if the agent went offline during the window (or within
 *     OFFLINE_SLACK_MS after the heal: a stalled link is noticed late), plus GRACE_MS;
 *   - a bus window (Redis killed) when the request entered on another node than the one holding
 *     its agent: from the kill until every node reports the bus up and has renewed its leases
 *     again, plus GRACE_MS.
 * Everything else is UNEXPECTED: any failure on a control tunnel, a failure on a faulted tunnel
 * outside its windows, wrong bytes anywhere, and an agent going offline outside any fault window.
 */

export type OpKind = 'get' | 'post' | 'download' | 'sse' | 'websocket';
export const OP_KINDS: readonly OpKind[] = ['get', 'post', 'download', 'sse', 'websocket'];

export type FaultKind = 'cut' | 'reset' | 'stall' | 'slow' | 'redis';
export const FAULT_KINDS: readonly FaultKind[] = ['cut', 'reset', 'stall', 'slow', 'redis'];

/** After a window closes (the tunnel is back, the bus is back), failures still count as its own for this long. */
export const GRACE_MS = 1000;
/** An agent that goes offline this long after a fault was healed still went offline because of it. */
export const OFFLINE_SLACK_MS = 4000;

export interface OpOutcome {
  readonly ok: boolean;
  /** What went wrong, in a few words (status and error code, socket error, timeout, mismatch). */
  readonly error?: string;
  /** A defect whatever the faults: wrong bytes, or a stream that was not streamed. */
  readonly defect?: boolean;
  /** Bytes moved (both ways). */
  readonly bytes: number;
  /** HTTP requests, SSE events or WebSocket messages in this operation. */
  readonly units: number;
}

export interface FailedOp {
  readonly kind: OpKind;
  readonly tunnel: string;
  readonly ingress: string;
  readonly holder: string;
  readonly crossNode: boolean;
  /** ms since the traffic started. */
  readonly start: number;
  readonly end: number;
  readonly error: string;
  readonly defect: boolean;
}

export interface FaultWindow {
  readonly kind: FaultKind;
  /** Tunnel name, or "bus" for Redis. */
  readonly target: string;
  readonly start: number;
  healedAt: number | undefined;
  /** Redis: when every node had the bus back and renewed its leases. */
  recoveredAt?: number;
  readonly detail: string;
}

export interface OfflineSpan {
  readonly tunnel: string;
  readonly from: number;
  to: number | undefined;
  readonly reason: string;
}

export interface KindCounts {
  total: number;
  ok: number;
  failed: number;
  bytes: number;
  units: number;
}

/** Most durations kept per kind for the percentiles (a 10-minute run stays well under it). */
const MAX_DURATIONS = 500_000;
const SLOWEST_KEPT = 10;

export interface Classified {
  readonly expected: FailedOp[];
  readonly unexpected: FailedOp[];
  /** Agents that went offline outside every fault window of their tunnel. */
  readonly unexplainedOffline: OfflineSpan[];
  readonly explainedOffline: number;
}

/** Most failed operations kept in detail (the counts stay exact). */
const MAX_KEPT_FAILURES = 20_000;

export class Ledger {
  readonly counts: Record<OpKind, KindCounts> = Object.fromEntries(OP_KINDS.map((k) => [k, { total: 0, ok: 0, failed: 0, bytes: 0, units: 0 }])) as Record<
    OpKind,
    KindCounts
  >;
  readonly failures: FailedOp[] = [];
  /** Durations (ms) of the successful operations, per kind. */
  readonly durations: Record<OpKind, number[]> = Object.fromEntries(OP_KINDS.map((k) => [k, []])) as unknown as Record<OpKind, number[]>;
  /** The slowest successful operations (longest first), to see where the time went. */
  readonly slowest: (Omit<FailedOp, 'error' | 'defect'> & { readonly ms: number })[] = [];
  droppedFailures = 0;
  readonly windows: FaultWindow[] = [];
  readonly offline: OfflineSpan[] = [];
  readonly reconnections: Record<string, number> = {};
  reconnectAttempts = 0;
  /** Things that went wrong outside single operations (a fatal agent, a bus that did not recover). */
  readonly problems: string[] = [];
  private readonly openOffline = new Map<string, OfflineSpan>();

  private t0 = Date.now();

  /** Starts the clock: times are ms since this call (the start of the traffic). */
  begin(): void {
    this.t0 = Date.now();
  }

  /** ms since the traffic started. */
  now(): number {
    return Date.now() - this.t0;
  }

  record(op: Omit<FailedOp, 'error' | 'defect'>, outcome: OpOutcome): void {
    const c = this.counts[op.kind];
    c.total++;
    c.bytes += outcome.bytes;
    c.units += outcome.units;
    if (outcome.ok) {
      c.ok++;
      const ms = op.end - op.start;
      if (this.durations[op.kind].length < MAX_DURATIONS) this.durations[op.kind].push(ms);
      if (this.slowest.length < SLOWEST_KEPT || ms > (this.slowest[this.slowest.length - 1]?.ms ?? 0)) {
        this.slowest.push({ ...op, ms });
        this.slowest.sort((a, b) => b.ms - a.ms);
        this.slowest.length = Math.min(this.slowest.length, SLOWEST_KEPT);
      }
      return;
    }
    c.failed++;
    if (this.failures.length >= MAX_KEPT_FAILURES) {
      this.droppedFailures++;
      return;
    }
    this.failures.push({ ...op, error: outcome.error ?? 'failed', defect: outcome.defect === true });
  }

  openWindow(kind: FaultKind, target: string, detail: string): FaultWindow {
    const w: FaultWindow = { kind, target, start: this.now(), healedAt: undefined, detail };
    this.windows.push(w);
    return w;
  }

  heal(w: FaultWindow): void {
    w.healedAt = this.now();
  }

  agentOffline(tunnel: string, reason: string): void {
    if (this.openOffline.has(tunnel)) return;
    const span: OfflineSpan = { tunnel, from: this.now(), to: undefined, reason };
    this.openOffline.set(tunnel, span);
    this.offline.push(span);
  }

  agentOnline(tunnel: string, reconnected: boolean): void {
    const span = this.openOffline.get(tunnel);
    if (span !== undefined) {
      span.to = this.now();
      this.openOffline.delete(tunnel);
    }
    if (reconnected) this.reconnections[tunnel] = (this.reconnections[tunnel] ?? 0) + 1;
  }

  isOffline(tunnel: string): boolean {
    return this.openOffline.has(tunnel);
  }

  /** A tunnel is in a window from its injection until it is healed and back online (grace not included). */
  isDisturbed(tunnel: string): boolean {
    return this.isOffline(tunnel) || this.windows.some((w) => w.target === tunnel && w.healedAt === undefined);
  }

  faultCounts(): Record<FaultKind, number> {
    const out = Object.fromEntries(FAULT_KINDS.map((k) => [k, 0])) as Record<FaultKind, number>;
    for (const w of this.windows) out[w.kind]++;
    return out;
  }

  /** Judges every failure against the windows; call once the run is over. `endMs`: the end of the books. */
  classify(endMs = this.now()): Classified {
    const explained = new Set<OfflineSpan>();
    // Tunnel disturbances: [start, end] per tunnel.
    const spans = new Map<string, [number, number][]>();
    for (const w of this.windows) {
      if (w.target === 'bus') continue;
      const healed = w.healedAt ?? endMs;
      let to = healed;
      for (const o of this.offline) {
        if (o.tunnel !== w.target || o.from < w.start || o.from > healed + OFFLINE_SLACK_MS) continue;
        explained.add(o);
        to = Math.max(to, o.to ?? endMs);
      }
      const list = spans.get(w.target) ?? [];
      list.push([w.start, to + GRACE_MS]);
      spans.set(w.target, list);
    }
    const bus: [number, number][] = this.windows.filter((w) => w.target === 'bus').map((w) => [w.start, (w.recoveredAt ?? w.healedAt ?? endMs) + GRACE_MS]);
    const overlaps = (f: FailedOp, list: readonly [number, number][] | undefined): boolean => (list ?? []).some(([from, to]) => f.start <= to && f.end >= from);
    const expected: FailedOp[] = [];
    const unexpected: FailedOp[] = [];
    for (const f of this.failures) {
      const excused = !f.defect && (overlaps(f, spans.get(f.tunnel)) || (f.crossNode && overlaps(f, bus)));
      (excused ? expected : unexpected).push(f);
    }
    const unexplainedOffline = this.offline.filter((o) => !explained.has(o));
    return { expected, unexpected, unexplainedOffline, explainedOffline: explained.size };
  }
}
