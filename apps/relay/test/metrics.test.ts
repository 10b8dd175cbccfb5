/**
 * RelayMetrics: the series it exposes after calls, the values pulled from its sources at scrape
 * time, and that registries of two relays in one process stay apart.
 */
import type { BusStats } from '@burrow/bus';
import { type MetricsSources, type RelayGauges, RelayMetrics } from '../src/metrics';

interface FakeState {
  relay: RelayGauges;
  bus: BusStats;
  busUp: boolean;
  draining: boolean;
}

function fakeSources(state: FakeState, leases = true): MetricsSources {
  return {
    relayStats: () => state.relay,
    busStats: () => state.bus,
    busUp: () => state.busUp,
    draining: () => state.draining,
    ...(leases ? { leaseStats: () => ({ renewed: 7, reclaimed: 2, lost: 1, failed: 3 }) } : {}),
  };
}

function newState(): FakeState {
  return {
    relay: { sessions: 3, activeSessions: 2, tunnels: 4, ingressStreams: 5, agentStreams: 6 },
    bus: { published: 10, publishedBytes: 1000, received: 9, receivedBytes: 900, undelivered: 1, errors: 2 },
    busUp: true,
    draining: false,
  };
}

/** The value of one sample line `name{labels} value`, or undefined. */
function sample(text: string, series: string): number | undefined {
  for (const line of text.split('\n')) {
    if (line.startsWith(`${series} `)) return Number(line.slice(series.length + 1));
  }
  return undefined;
}

describe('RelayMetrics', () => {
  test('counts requests by kind and status class, bytes, and both latency histograms', async () => {
    const m = new RelayMetrics({ nodeId: 'n1', version: '9.9.9', sources: fakeSources(newState()), processMetrics: false });
    m.requestDone('http', 200, 12, 20, 100, 2000);
    m.requestDone('http', 204, 3, 3, 0, 0);
    m.requestDone('http', 404, 1, 1, 0, 50);
    m.requestDone('http', 499, undefined, 40, 10, 0);
    m.requestDone('http', 502, 2, 2, 0, 0);
    m.requestDone('websocket', 101, 5, 60_000, 300, 400);
    m.requestDone('http', 302, 1, 1, 0, 0);
    m.requestDone('http', 100, 1, 1, 0, 0);
    const text = await m.metricsText();
    expect(sample(text, 'burrow_requests_total{kind="http",status_class="2xx"}')).toBe(2);
    expect(sample(text, 'burrow_requests_total{kind="http",status_class="4xx"}')).toBe(2);
    expect(sample(text, 'burrow_requests_total{kind="http",status_class="5xx"}')).toBe(1);
    expect(sample(text, 'burrow_requests_total{kind="http",status_class="3xx"}')).toBe(1);
    expect(sample(text, 'burrow_requests_total{kind="http",status_class="1xx"}')).toBe(1);
    expect(sample(text, 'burrow_requests_total{kind="websocket",status_class="1xx"}')).toBe(1);
    expect(sample(text, 'burrow_requests_total{kind="websocket",status_class="2xx"}')).toBe(0);
    expect(sample(text, 'burrow_received_bytes_total{kind="http"}')).toBe(110);
    expect(sample(text, 'burrow_sent_bytes_total{kind="http"}')).toBe(2050);
    expect(sample(text, 'burrow_received_bytes_total{kind="websocket"}')).toBe(300);
    expect(sample(text, 'burrow_sent_bytes_total{kind="websocket"}')).toBe(400);
    // The 499 had no head: 6 heads observed for http, 7 durations.
    expect(sample(text, 'burrow_request_head_seconds_count{kind="http"}')).toBe(6);
    expect(sample(text, 'burrow_request_duration_seconds_count{kind="http"}')).toBe(7);
    expect(sample(text, 'burrow_request_head_seconds_bucket{le="0.005",kind="http"}')).toBe(5);
    expect(sample(text, 'burrow_request_duration_seconds_bucket{le="60",kind="websocket"}')).toBe(1);
    expect(sample(text, 'burrow_request_duration_seconds_bucket{le="30",kind="websocket"}')).toBe(0);
    expect(sample(text, 'burrow_request_duration_seconds_sum{kind="websocket"}')).toBe(60);
  });

  test('gauges and bus totals come from the sources at each scrape', async () => {
    const state = newState();
    const m = new RelayMetrics({ nodeId: 'node-a', version: '1.2.3', sources: fakeSources(state), processMetrics: false });
    let text = await m.metricsText();
    expect(sample(text, 'burrow_relay_info{node="node-a",version="1.2.3"}')).toBe(1);
    expect(sample(text, 'burrow_tunnels')).toBe(4);
    expect(sample(text, 'burrow_agent_sessions{state="registered"}')).toBe(2);
    expect(sample(text, 'burrow_agent_sessions{state="pending"}')).toBe(1);
    expect(sample(text, 'burrow_streams_open{side="ingress"}')).toBe(5);
    expect(sample(text, 'burrow_streams_open{side="agent"}')).toBe(6);
    expect(sample(text, 'burrow_bus_published_messages_total')).toBe(10);
    expect(sample(text, 'burrow_bus_published_bytes_total')).toBe(1000);
    expect(sample(text, 'burrow_bus_received_messages_total')).toBe(9);
    expect(sample(text, 'burrow_bus_received_bytes_total')).toBe(900);
    expect(sample(text, 'burrow_bus_undelivered_messages_total')).toBe(1);
    expect(sample(text, 'burrow_bus_errors_total')).toBe(2);
    expect(sample(text, 'burrow_bus_up')).toBe(1);
    expect(sample(text, 'burrow_draining')).toBe(0);
    expect(sample(text, 'burrow_lease_renewals_total{result="renewed"}')).toBe(7);
    expect(sample(text, 'burrow_lease_renewals_total{result="reclaimed"}')).toBe(2);
    expect(sample(text, 'burrow_lease_renewals_total{result="lost"}')).toBe(1);
    expect(sample(text, 'burrow_lease_renewals_total{result="failed"}')).toBe(3);

    state.relay = { sessions: 0, activeSessions: 0, tunnels: 0, ingressStreams: 0, agentStreams: 0 };
    state.bus = { ...state.bus, published: 25 };
    state.busUp = false;
    state.draining = true;
    text = await m.metricsText();
    expect(sample(text, 'burrow_tunnels')).toBe(0);
    expect(sample(text, 'burrow_bus_published_messages_total')).toBe(25);
    expect(sample(text, 'burrow_bus_up')).toBe(0);
    expect(sample(text, 'burrow_draining')).toBe(1);
  });

  test('lease series read 0 when the relay renews no leases', async () => {
    const m = new RelayMetrics({ nodeId: 'n', version: 'v', sources: fakeSources(newState(), false), processMetrics: false });
    const text = await m.metricsText();
    for (const result of ['renewed', 'reclaimed', 'lost', 'failed']) expect(sample(text, `burrow_lease_renewals_total{result="${result}"}`)).toBe(0);
  });

  test('registrations and disconnects; unknown disconnect codes fold into "other"', async () => {
    const m = new RelayMetrics({ nodeId: 'n', version: 'v', sources: fakeSources(newState()), processMetrics: false });
    let text = await m.metricsText();
    expect(sample(text, 'burrow_agent_registrations_total{kind="new"}')).toBe(0);
    expect(sample(text, 'burrow_agent_registrations_total{kind="reconnect"}')).toBe(0);
    m.agentRegistered(false);
    m.agentRegistered(false);
    m.agentRegistered(true);
    m.agentDisconnected('BURROW_ERR_HEARTBEAT_TIMEOUT');
    m.agentDisconnected('BURROW_ERR_AGENT_DISCONNECTED');
    m.agentDisconnected('BURROW_ERR_AGENT_DISCONNECTED');
    m.agentDisconnected('something a peer made up');
    m.agentDisconnected('__proto__');
    text = await m.metricsText();
    expect(sample(text, 'burrow_agent_registrations_total{kind="new"}')).toBe(2);
    expect(sample(text, 'burrow_agent_registrations_total{kind="reconnect"}')).toBe(1);
    expect(sample(text, 'burrow_agent_disconnects_total{code="BURROW_ERR_HEARTBEAT_TIMEOUT"}')).toBe(1);
    expect(sample(text, 'burrow_agent_disconnects_total{code="BURROW_ERR_AGENT_DISCONNECTED"}')).toBe(2);
    expect(sample(text, 'burrow_agent_disconnects_total{code="other"}')).toBe(2);
  });

  test('two relays in one process keep separate counts; process metrics are prefixed and appear once', async () => {
    const a = new RelayMetrics({ nodeId: 'a', version: 'v', sources: fakeSources(newState()) });
    const b = new RelayMetrics({ nodeId: 'b', version: 'v', sources: fakeSources(newState()) });
    a.requestDone('http', 200, 1, 1, 0, 0);
    const textA = await a.metricsText();
    const textB = await b.metricsText();
    expect(sample(textA, 'burrow_requests_total{kind="http",status_class="2xx"}')).toBe(1);
    expect(sample(textB, 'burrow_requests_total{kind="http",status_class="2xx"}')).toBe(0);
    expect(textA).toMatch(/^burrow_process_resident_memory_bytes \d+/m);
    expect(textA).toMatch(/^burrow_nodejs_heap_size_used_bytes \d+/m);
    expect(textA.match(/^# TYPE burrow_process_cpu_seconds_total /gm)).toHaveLength(1);
    expect(a.contentType).toMatch(/^text\/plain; version=0\.0\.4/);
    // No series without the prefix.
    const names = textA
      .split('\n')
      .filter((l) => l !== '' && !l.startsWith('#'))
      .map((l) => l.split(/[{ ]/, 1)[0]);
    expect(names.filter((n) => !n?.startsWith('burrow_'))).toEqual([]);
  });
});
