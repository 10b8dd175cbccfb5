/**
 * Keeps infra/grafana/burrow-relay.json in step with the code: every burrow_* series its queries
 * use must appear in a RelayMetrics scrape (histograms by their _bucket/_sum/_count samples), and
 * every panel reads the DS_PROMETHEUS datasource variable. Reads files only; starts nothing.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { RelayMetrics } from '../src/metrics';

const root = join(__dirname, '..', '..', '..');
/** Grafana's reference to the dashboard's DS_PROMETHEUS variable. */
const DS_UID = ['$', '{DS_PROMETHEUS}'].join('');

interface Target {
  expr?: string;
}
interface Panel {
  type: string;
  title?: string;
  datasource?: { uid?: string };
  targets?: Target[];
  panels?: Panel[];
}

const dashboard = JSON.parse(readFileSync(join(root, 'infra', 'grafana', 'burrow-relay.json'), 'utf8')) as {
  panels: Panel[];
  templating: { list: { name: string; type: string; definition?: string }[] };
};
const panels = dashboard.panels.flatMap((p) => [p, ...(p.panels ?? [])]).filter((p) => p.type !== 'row');
const exprs = [...panels.flatMap((p) => (p.targets ?? []).map((t) => t.expr ?? '')), ...dashboard.templating.list.map((v) => v.definition ?? '')].filter(
  (e) => e !== '',
);
const used = [...new Set(exprs.flatMap((e) => e.match(/\bburrow_[a-z0-9_]+/g) ?? []))].sort();

async function exposedNames(): Promise<Set<string>> {
  const m = new RelayMetrics({
    nodeId: 'n',
    version: 'v',
    sources: {
      relayStats: () => ({ sessions: 0, activeSessions: 0, tunnels: 0, ingressStreams: 0, agentStreams: 0 }),
      busStats: () => ({ published: 0, publishedBytes: 0, received: 0, receivedBytes: 0, undelivered: 0, errors: 0 }),
      busUp: () => true,
      draining: () => false,
      leaseStats: () => ({ renewed: 0, reclaimed: 0, lost: 0, failed: 0 }),
    },
  });
  m.agentDisconnected('BURROW_ERR_AGENT_DISCONNECTED');
  const text = await m.metricsText();
  return new Set(
    text
      .split('\n')
      .filter((l) => l !== '' && !l.startsWith('#'))
      .map((l) => l.split(/[{ ]/, 1)[0] as string),
  );
}

describe('infra/grafana/burrow-relay.json', () => {
  test('queries something', () => {
    expect(panels.length).toBeGreaterThan(10);
    expect(used.length).toBeGreaterThan(15);
  });

  test('every metric its queries use is exposed by RelayMetrics', async () => {
    const exposed = await exposedNames();
    expect(used.filter((name) => !exposed.has(name))).toEqual([]);
  });

  test('the core relay series all have a panel', () => {
    for (const name of [
      'burrow_requests_total',
      'burrow_request_head_seconds_bucket',
      'burrow_request_duration_seconds_bucket',
      'burrow_received_bytes_total',
      'burrow_sent_bytes_total',
      'burrow_tunnels',
      'burrow_agent_sessions',
      'burrow_streams_open',
      'burrow_bus_published_messages_total',
      'burrow_bus_errors_total',
      'burrow_lease_renewals_total',
      'burrow_agent_registrations_total',
      'burrow_agent_disconnects_total',
      'burrow_bus_up',
      'burrow_draining',
      'burrow_process_resident_memory_bytes',
    ]) {
      expect(used).toContain(name);
    }
  });

  test('every panel reads the DS_PROMETHEUS datasource variable', () => {
    expect(dashboard.templating.list.find((v) => v.name === 'DS_PROMETHEUS')?.type).toBe('datasource');
    for (const p of panels) expect({ panel: p.title, uid: p.datasource?.uid }).toEqual({ panel: p.title, uid: DS_UID });
  });
});

describe('infra/prometheus.yml', () => {
  test('scrapes /metrics on the admin port', () => {
    const text = readFileSync(join(root, 'infra', 'prometheus.yml'), 'utf8');
    expect(text).toMatch(/metrics_path: \/metrics/);
    expect(text).toMatch(/:9091/);
  });
});
