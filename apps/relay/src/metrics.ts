/**
 * The relay's Prometheus metrics, in a registry of its own (never prom-client's global one: several
 * relays may share a process). The hot path only bumps plain numbers and pre-bound histogram
 * children; gauges and bus totals are pulled from callbacks when scraped. Serves nothing and logs
 * nothing: adminServer.ts exposes metricsText().
 *
 * No per-tunnel series: labels are unbounded (one per agent key, more per session name), and a
 * top-N set changes membership as traffic shifts, which breaks rate() and still multiplies every
 * histogram. Per-tunnel traffic is in the access log, which carries the label.
 */
import type { BusStats, RenewResult } from '@burrow/bus';
import { ERRORS } from '@burrow/protocol';
import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from 'prom-client';

export type RequestKind = 'http' | 'websocket';
export type LeaseResult = RenewResult | 'failed';

/** Status classes, indexed by Math.floor(status / 100) - 1 (clamped). */
const STATUS_CLASSES = ['1xx', '2xx', '3xx', '4xx', '5xx'] as const;
const KINDS: readonly RequestKind[] = ['http', 'websocket'];
const LEASE_RESULTS: readonly LeaseResult[] = ['renewed', 'reclaimed', 'lost', 'failed'];

/** Time to the response head: relay overhead plus the local app's thinking time. */
export const HEAD_BUCKETS_S = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60];
/** Whole exchanges: long downloads, event streams and WebSockets run for minutes or hours. */
export const DURATION_BUCKETS_S = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1800, 3600, 14_400];

/** Point-in-time counts of this node, read at scrape time. */
export interface RelayGauges {
  /** Agent connections, registered or not. */
  readonly sessions: number;
  /** Of those, registered (serving tunnels). */
  readonly activeSessions: number;
  /** Labels served by sessions on this node. */
  readonly tunnels: number;
  /** Public-side streams whose request entered on this node. */
  readonly ingressStreams: number;
  /** Streams carried by agent sessions held on this node. */
  readonly agentStreams: number;
}

/** Running totals of lease renewals: labels renewed, reclaimed or lost; renewal rounds failed. */
export type LeaseStats = Readonly<Record<LeaseResult, number>>;

export interface MetricsSources {
  relayStats(): RelayGauges;
  busStats(): BusStats;
  busUp(): boolean;
  draining(): boolean;
  /** Absent until the relay renews leases: the series then stay at 0. */
  leaseStats?(): LeaseStats;
}

export interface RelayMetricsOptions {
  readonly nodeId: string;
  readonly version: string;
  readonly sources: MetricsSources;
  /** Add the burrow_process_* and burrow_nodejs_* series (default true). */
  readonly processMetrics?: boolean;
}

/**
 * Process metrics install a GC observer and an event-loop histogram that cannot be removed: made
 * once per process, in a private registry (not prom-client's global one), and shared by every
 * relay in the process.
 */
let processRegistry: Registry | undefined;
function sharedProcessRegistry(): Registry {
  if (processRegistry === undefined) {
    processRegistry = new Registry();
    collectDefaultMetrics({ register: processRegistry, prefix: 'burrow_' });
  }
  return processRegistry;
}

const classIndex = (status: number): number => Math.min(4, Math.max(0, Math.floor(status / 100) - 1));

/** Sets an all-time total on a counter (the source keeps the running sum). */
function setTotal(counter: Counter, value: number): void {
  counter.reset();
  if (value > 0) counter.inc(value);
}

export class RelayMetrics {
  readonly registry = new Registry();
  private readonly processRegistry: Registry | undefined;
  /** requests[kind * 5 + class]; plain numbers so the hot path allocates and hashes nothing. */
  private readonly requests = new Float64Array(KINDS.length * STATUS_CLASSES.length);
  private readonly bytesIn = new Float64Array(KINDS.length);
  private readonly bytesOut = new Float64Array(KINDS.length);
  private readonly headChildren: { observe(v: number): void }[];
  private readonly durationChildren: { observe(v: number): void }[];
  private readonly registrations: Counter<'kind'>;
  private readonly disconnects: Counter<'code'>;

  constructor(options: RelayMetricsOptions) {
    const { sources } = options;
    const registers = [this.registry];
    this.processRegistry = options.processMetrics === false ? undefined : sharedProcessRegistry();
    const requests = this.requests;
    const bytesIn = this.bytesIn;
    const bytesOut = this.bytesOut;

    new Gauge({
      name: 'burrow_relay_info',
      help: 'Always 1; labels name this relay node and its version.',
      labelNames: ['node', 'version'],
      registers,
    }).set({ node: options.nodeId, version: options.version }, 1);

    new Gauge({
      name: 'burrow_tunnels',
      help: 'Tunnel labels served by agent sessions held on this node.',
      registers,
      collect() {
        this.set(sources.relayStats().tunnels);
      },
    });
    new Gauge({
      name: 'burrow_agent_sessions',
      help: 'Agent connections held on this node, by state (registered, or still greeting/registering).',
      labelNames: ['state'],
      registers,
      collect() {
        const s = sources.relayStats();
        this.set({ state: 'registered' }, s.activeSessions);
        this.set({ state: 'pending' }, Math.max(0, s.sessions - s.activeSessions));
      },
    });
    new Gauge({
      name: 'burrow_streams_open',
      help: 'Open streams: ingress = public requests entering here, agent = streams on agent sessions held here.',
      labelNames: ['side'],
      registers,
      collect() {
        const s = sources.relayStats();
        this.set({ side: 'ingress' }, s.ingressStreams);
        this.set({ side: 'agent' }, s.agentStreams);
      },
    });

    new Counter({
      name: 'burrow_requests_total',
      help: 'Finished public requests on tunnel hosts, by kind (http, websocket) and status class; 499 (client left before a response) counts as 4xx.',
      labelNames: ['kind', 'status_class'],
      registers,
      collect() {
        this.reset();
        for (let k = 0; k < KINDS.length; k++) {
          for (let c = 0; c < STATUS_CLASSES.length; c++) {
            this.inc({ kind: KINDS[k] as string, status_class: STATUS_CLASSES[c] as string }, requests[k * STATUS_CLASSES.length + c] as number);
          }
        }
      },
    });
    new Counter({
      name: 'burrow_received_bytes_total',
      help: 'Bytes from visitors carried to tunnels: request bodies (http), frames after the handshake (websocket).',
      labelNames: ['kind'],
      registers,
      collect() {
        this.reset();
        for (let k = 0; k < KINDS.length; k++) this.inc({ kind: KINDS[k] as string }, bytesIn[k] as number);
      },
    });
    new Counter({
      name: 'burrow_sent_bytes_total',
      help: 'Bytes from tunnels carried to visitors: response bodies (http), frames after the handshake (websocket).',
      labelNames: ['kind'],
      registers,
      collect() {
        this.reset();
        for (let k = 0; k < KINDS.length; k++) this.inc({ kind: KINDS[k] as string }, bytesOut[k] as number);
      },
    });

    const head = new Histogram({
      name: 'burrow_request_head_seconds',
      help: 'Time from a public request to its response head (the app answering, or the relay answering for it).',
      labelNames: ['kind'],
      buckets: HEAD_BUCKETS_S,
      registers,
    });
    const duration = new Histogram({
      name: 'burrow_request_duration_seconds',
      help: 'Time from a public request until its exchange ended (last body byte, WebSocket close, reset or client gone).',
      labelNames: ['kind'],
      buckets: DURATION_BUCKETS_S,
      registers,
    });
    this.headChildren = KINDS.map((k) => head.labels(k));
    this.durationChildren = KINDS.map((k) => duration.labels(k));
    // Every series from the first scrape, so rate() and histogram_quantile() see a start at 0.
    for (const kind of KINDS) {
      head.zero({ kind });
      duration.zero({ kind });
    }

    const busCounter = (name: string, help: string, pick: (s: BusStats) => number): void => {
      new Counter({
        name,
        help,
        registers,
        collect() {
          setTotal(this, pick(sources.busStats()));
        },
      });
    };
    busCounter('burrow_bus_published_messages_total', 'Bus messages (stream frames and control) this node published.', (s) => s.published);
    busCounter('burrow_bus_published_bytes_total', 'Payload bytes of the bus messages this node published.', (s) => s.publishedBytes);
    busCounter('burrow_bus_received_messages_total', 'Bus messages this node received.', (s) => s.received);
    busCounter('burrow_bus_received_bytes_total', 'Payload bytes of the bus messages this node received.', (s) => s.receivedBytes);
    busCounter('burrow_bus_undelivered_messages_total', 'Bus messages this node published that reached nobody (node gone, or bus down).', (s) => s.undelivered);
    busCounter('burrow_bus_errors_total', 'Failed bus operations: publishes, registry calls and connection errors.', (s) => s.errors);

    new Gauge({
      name: 'burrow_bus_up',
      help: '1 while the bus (Redis, or in-process) can carry messages and answer registry calls.',
      registers,
      collect() {
        this.set(sources.busUp() ? 1 : 0);
      },
    });
    new Gauge({
      name: 'burrow_draining',
      help: '1 once this node began draining (SIGTERM): no new agents, in-flight requests finishing.',
      registers,
      collect() {
        this.set(sources.draining() ? 1 : 0);
      },
    });

    new Counter({
      name: 'burrow_lease_renewals_total',
      help: 'Lease renewals by this node: renewed, reclaimed (had vanished) and lost (another session holds it) count labels; failed counts rounds the bus refused.',
      labelNames: ['result'],
      registers,
      collect() {
        const stats = sources.leaseStats?.();
        this.reset();
        for (const result of LEASE_RESULTS) this.inc({ result }, stats?.[result] ?? 0);
      },
    });

    this.registrations = new Counter({
      name: 'burrow_agent_registrations_total',
      help: 'Agent registrations accepted on this node: new, or reconnect (took its label over from an earlier session).',
      labelNames: ['kind'],
      registers,
    });
    this.registrations.inc({ kind: 'new' }, 0);
    this.registrations.inc({ kind: 'reconnect' }, 0);
    this.disconnects = new Counter({
      name: 'burrow_agent_disconnects_total',
      help: 'Agent sessions ended on this node (registered or not), by BURROW_ERR_* reason code.',
      labelNames: ['code'],
      registers,
    });
  }

  get contentType(): string {
    return this.registry.contentType;
  }

  /**
   * One finished public exchange. Call exactly once per request or upgrade. `headMs` is undefined
   * when no response head was sent (the client left first).
   */
  requestDone(kind: RequestKind, status: number, headMs: number | undefined, totalMs: number, bytesIn: number, bytesOut: number): void {
    const k = kind === 'http' ? 0 : 1;
    const i = k * STATUS_CLASSES.length + classIndex(status);
    this.requests[i] = (this.requests[i] as number) + 1;
    this.bytesIn[k] = (this.bytesIn[k] as number) + bytesIn;
    this.bytesOut[k] = (this.bytesOut[k] as number) + bytesOut;
    if (headMs !== undefined) this.headChildren[k]?.observe(headMs / 1000);
    this.durationChildren[k]?.observe(totalMs / 1000);
  }

  agentRegistered(reconnect: boolean): void {
    this.registrations.inc({ kind: reconnect ? 'reconnect' : 'new' });
  }

  /** `code` is a BURROW_ERR_* code; anything else counts as "other" (the label set stays bounded). */
  agentDisconnected(code: string): void {
    this.disconnects.inc({ code: Object.hasOwn(ERRORS, code) ? code : 'other' });
  }

  /** Prometheus text exposition: this relay's series, then the process's. */
  async metricsText(): Promise<string> {
    const own = await this.registry.metrics();
    return this.processRegistry === undefined ? own : `${own}\n${await this.processRegistry.metrics()}`;
  }
}
