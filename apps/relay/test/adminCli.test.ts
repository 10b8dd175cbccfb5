/**
 * `burrow-relay admin`: runAdminCli against a real admin server on port 0 (FileTenantStore in
 * memory, a fake LiveTunnels): each command, --table, exit codes 0/1/2, env defaults.
 */
import { runAdminCli } from '../src/adminCli';
import { type AdminServer, startAdminServer } from '../src/adminServer';
import { RelayMetrics } from '../src/metrics';
import { FileTenantStore } from '../src/tenancy/fileStore';
import { FakeTunnels, tunnel } from './fakeTunnels';

const TOKEN = 'cli-admin-token-0123456789';
const metrics = new RelayMetrics({
  nodeId: 'n1',
  version: 'v',
  processMetrics: false,
  sources: {
    relayStats: () => ({ sessions: 0, activeSessions: 0, tunnels: 0, ingressStreams: 0, agentStreams: 0 }),
    busStats: () => ({ published: 0, publishedBytes: 0, received: 0, receivedBytes: 0, undelivered: 0, errors: 0 }),
    busUp: () => true,
    draining: () => false,
  },
});

let server: AdminServer;
let store: FileTenantStore;
beforeEach(async () => {
  store = new FileTenantStore();
  const tunnels = new FakeTunnels([tunnel('app1', 'acme'), tunnel('other')]);
  server = await startAdminServer({
    listen: '127.0.0.1:0',
    nodeId: 'n1',
    metrics,
    readiness: () => ({ listening: true, busUp: true, draining: false, closing: false }),
    admin: { token: TOKEN, store, tunnels },
  });
});
afterEach(async () => {
  await server.close();
  await store.close();
});

async function cli(argv: string[], env: Record<string, string | undefined> = {}) {
  let out = '';
  let err = '';
  const code = await runAdminCli(argv, {
    env: { BURROW_ADMIN_URL: server.url, BURROW_ADMIN_TOKEN: TOKEN, ...env },
    stdout: { write: (t: string) => (out += t) },
    stderr: { write: (t: string) => (err += t) },
  });
  return { code, out, err, json: () => JSON.parse(out) };
}

describe('burrow-relay admin', () => {
  test('tenants create, list, show, update (quotas merged), delete', async () => {
    const created = await cli(['tenants', 'create', '--id', 'acme', '--name', 'Acme Inc', '--max-tunnels', '3', '--max-streams=50', '--reserve', 'acme,shop']);
    expect(created.code).toBe(0);
    expect(created.json()).toMatchObject({ id: 'acme', name: 'Acme Inc', quotas: { maxTunnels: 3, maxStreams: 50 }, reservedNames: ['acme', 'shop'] });

    const list = await cli(['tenants', 'list']);
    expect(list.json().tenants.map((t: { id: string }) => t.id)).toEqual(['acme']);
    expect((await cli(['tenants', 'show', 'acme'])).json().name).toBe('Acme Inc');

    const updated = await cli(['tenants', 'update', 'acme', '--requests-per-minute', '600', '--max-streams', 'none', '--reserve', '']);
    expect(updated.code).toBe(0);
    expect(updated.json()).toMatchObject({ quotas: { maxTunnels: 3, requestsPerMinute: 600 }, reservedNames: [] });
    expect(updated.json().quotas.maxStreams).toBeUndefined();

    expect((await cli(['tenants', 'delete', 'acme'])).json()).toEqual({ deleted: true, id: 'acme' });
    const gone = await cli(['tenants', 'show', 'acme']);
    expect(gone.code).toBe(1);
    expect(gone.err).toBe('burrow-relay admin: not_found: no tenant acme\n');
  });

  test('tokens create, list, revoke; history; --table', async () => {
    await cli(['tenants', 'create', '--id', 'acme', '--name', 'Acme']);
    const made = await cli(['tokens', 'create', 'acme', '--description', 'ci runner']);
    expect(made.code).toBe(0);
    const { token, info } = made.json();
    expect(token).toMatch(/^burrow_/);
    expect((await store.authenticate(token))?.tenant.id).toBe('acme');

    const listed = await cli(['tokens', 'list', 'acme', '--table']);
    expect(listed.out.split('\n')[0]).toMatch(/^ID\s+TENANTID\s+CREATEDAT\s+DESCRIPTION$/);
    expect(listed.out).toContain(info.id);
    expect(listed.out).toContain('ci runner');
    expect(listed.out).not.toContain(token);

    expect((await cli(['tokens', 'revoke', info.id])).json()).toEqual({ revoked: true, id: info.id });
    expect(await store.authenticate(token)).toBeUndefined();

    await store.recordHistory('acme', { at: Date.now(), kind: 'connect', label: 'app1', node: 'n1', sessionId: 's', peer: '10.0.0.1' });
    expect((await cli(['history', 'acme', '--limit', '5'])).json().events).toHaveLength(1);
    expect((await cli(['history', 'acme', '--table'])).out).toContain('10.0.0.1');
  });

  test('tunnels list (filtered) and disconnect', async () => {
    expect((await cli(['tunnels', 'list'])).json().tunnels).toHaveLength(2);
    expect((await cli(['tunnels', 'list', '--tenant', 'acme'])).json().tunnels.map((t: { label: string }) => t.label)).toEqual(['app1']);
    expect((await cli(['tunnels', 'list', '--table'])).out).toMatch(/^LABEL\s+NAMES\s+TENANT/);
    expect((await cli(['tunnels', 'disconnect', 'app1'])).json()).toEqual({ disconnected: true, label: 'app1' });
    const again = await cli(['tunnels', 'disconnect', 'app1']);
    expect(again.code).toBe(1);
    expect(again.err).toContain('not_found');
  });

  test('API errors exit 1 with code and message', async () => {
    const bad = await cli(['tenants', 'create', '--id', 'Bad_Id', '--name', 'x']);
    expect(bad.code).toBe(1);
    expect(bad.err).toMatch(/^burrow-relay admin: invalid: /);
    const wrong = await cli(['tenants', 'list'], { BURROW_ADMIN_TOKEN: 'not-the-token-0123456789' });
    expect(wrong.code).toBe(1);
    expect(wrong.err).toContain('unauthorized');
    const flag = await cli(['tenants', 'list', '--admin-token', TOKEN], { BURROW_ADMIN_TOKEN: 'wrong' });
    expect(flag.code).toBe(0);
    const away = await cli(['tenants', 'list', '--admin-url', 'http://127.0.0.1:1']);
    expect(away.code).toBe(1);
    expect(away.err).toContain('cannot reach the admin API at http://127.0.0.1:1');
  });

  test('usage errors exit 2; --help exits 0', async () => {
    for (const argv of [
      [],
      ['nope'],
      ['tenants'],
      ['tenants', 'create'],
      ['tenants', 'create', '--name', 'x', '--max-tunnels', '0'],
      ['tenants', 'show'],
      ['tenants', 'show', 'a', 'b'],
      ['tenants', 'update', 'acme'],
      ['tokens', 'list', 'acme', '--limit', '3'],
      ['history', 'acme', '--limit', 'x'],
      ['tunnels', 'list', '--bogus'],
      ['tenants', 'list', '--admin-token'],
    ]) {
      const r = await cli(argv);
      expect([argv, r.code]).toEqual([argv, 2]);
    }
    expect((await cli(['tenants', 'list'], { BURROW_ADMIN_TOKEN: undefined })).code).toBe(2);
    expect((await cli(['tenants', 'list', '--admin-url', 'ftp://x'])).code).toBe(2);
    const help = await cli(['--help']);
    expect(help.code).toBe(0);
    expect(help.out).toContain('Usage: burrow-relay admin');
  });
});
