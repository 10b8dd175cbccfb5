/**
 * Multi-tenancy end to end: token registration, revocation, quotas (tunnels, streams, rate,
 * body size, reserved names) and visitor access control, with real relays, agents and apps, on
 * one node and across nodes on a real Redis. Each test includes the attempts that must fail.
 */
import { connect } from '@burrow/agent';
import { RedisBus } from '@burrow/bus';
import { FileTenantStore, RedisTenantStore, type TenantStore } from '@burrow/relay';
import WebSocket from 'ws';
import { cleanup, cleanups, hostOf, newKey, request, startApp, startRelay, startTunnel, waitFor } from '../kit';
import { type RedisServer, startRedis } from '../redis';

afterEach(cleanup);

const ADMIN_TOKEN = 'admin-token-for-tests-0123456789';
const hostOn = (label: string, port: number): string => `${label}.localhost:${port}`;

/** One relay with a memory tenant store, in token mode unless told otherwise. */
async function tokenRelay(overrides: Parameters<typeof startRelay>[0] = {}, store: TenantStore = new FileTenantStore()) {
  const r = await startRelay({ auth: 'token', adminToken: ADMIN_TOKEN, ...overrides }, undefined, { tenantStore: store });
  return { ...r, store };
}

/** An app that counts the requests that reached it. */
async function countingApp(handler?: (req: import('node:http').IncomingMessage, res: import('node:http').ServerResponse) => void) {
  const seen: Array<{ url: string; headers: import('node:http').IncomingHttpHeaders }> = [];
  const app = await startApp((req, res) => {
    seen.push({ url: req.url ?? '', headers: req.headers });
    if (handler !== undefined) handler(req, res);
    else res.end('app');
  });
  return { ...app, seen };
}

/** Resolves with the agent's fatal error, or rejects if it comes online. */
function refused(relayUrl: string, to: number, options: Partial<Parameters<typeof connect>[0]> = {}): Promise<Error> {
  return connect({ relay: relayUrl, to, keyPair: newKey(), timeoutMs: 5000, ...options }).then(
    (t) => {
      cleanups.push(() => t.close());
      throw new Error('the agent came online but should have been refused');
    },
    (err: Error) => err,
  );
}

describe('tenant tokens', () => {
  test('token mode: no token and a wrong token are refused with clear codes; a valid token registers', async () => {
    const { port: appPort } = await startApp((_req, res) => res.end('ok'));
    const r = await tokenRelay();
    const tenant = await r.store.createTenant({ name: 'Acme' });
    const { token } = await r.store.createToken(tenant.id);
    const none = await refused(r.url, appPort);
    expect((none as { code?: string }).code).toBe('BURROW_ERR_TOKEN_REQUIRED');
    const wrong = await refused(r.url, appPort, { token: `${token.slice(0, -4)}AAAA` });
    expect((wrong as { code?: string }).code).toBe('BURROW_ERR_TOKEN_INVALID');
    const garbage = await refused(r.url, appPort, { token: 'not-a-token' });
    expect((garbage as { code?: string }).code).toBe('BURROW_ERR_TOKEN_INVALID');
    const tunnel = await startTunnel(r.url, appPort, { token });
    expect((await request(r.port, hostOf(tunnel.url))).text).toBe('ok');
    expect(r.relay.stats().sessions).toBe(1);
  });

  test('open mode: no token is fine, a wrong token is still refused, a valid one brings its tenant', async () => {
    const { port: appPort } = await startApp((_req, res) => res.end('ok'));
    const r = await tokenRelay({ auth: 'open' });
    const tenant = await r.store.createTenant({ name: 'Acme', quotas: { maxTunnels: 1 } });
    const { token } = await r.store.createToken(tenant.id);
    await startTunnel(r.url, appPort);
    expect(((await refused(r.url, appPort, { token: 'burrow_nope_nope' })) as { code?: string }).code).toBe('BURROW_ERR_TOKEN_INVALID');
    await startTunnel(r.url, appPort, { token });
    // The tenant's quota applies to the tokened agent only.
    expect(((await refused(r.url, appPort, { token })) as { code?: string }).code).toBe('BURROW_ERR_QUOTA_TUNNELS');
    await startTunnel(r.url, appPort);
  });

  test('tokens are stored as digests only: the data dir never holds a token', async () => {
    const { mkdtempSync, readdirSync, readFileSync, rmSync } = await import('node:fs');
    const { tmpdir } = await import('node:os');
    const { join } = await import('node:path');
    const dir = mkdtempSync(join(tmpdir(), 'burrow-tenants-'));
    cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
    const store = new FileTenantStore({ dataDir: dir });
    cleanups.push(() => store.close());
    const tenant = await store.createTenant({ name: 'Acme' });
    const { token } = await store.createToken(tenant.id);
    const secret = token.split('_').slice(2).join('_');
    await waitFor(() => readdirSync(dir).length > 0, 2000, 'tenant file written');
    await new Promise((r) => setTimeout(r, 50));
    for (const f of readdirSync(dir)) expect(readFileSync(join(dir, f), 'utf8')).not.toContain(secret);
    expect(await store.authenticate(token)).toEqual(expect.objectContaining({ tenant: expect.objectContaining({ id: tenant.id }) }));
  });

  test('revoking a token closes its live sessions within seconds; the agent stops with TOKEN_REVOKED (bound: 2.5 s)', async () => {
    const { port: appPort } = await startApp((_req, res) => res.end('ok'));
    const r = await tokenRelay();
    const tenant = await r.store.createTenant({ name: 'Acme' });
    const { token, info } = await r.store.createToken(tenant.id);
    const other = await r.store.createToken(tenant.id);
    const doomed = await startTunnel(r.url, appPort, { token });
    const kept = await startTunnel(r.url, appPort, { token: other.token });
    const fatal = new Promise<Error>((res) => doomed.agent.once('fatal', res));
    const started = Date.now();
    expect(await r.store.revokeToken(info.id)).toBe(true);
    const err = await fatal;
    expect((err as { code?: string }).code).toBe('BURROW_ERR_TOKEN_REVOKED');
    expect(Date.now() - started).toBeLessThan(2500);
    // Only that token's session: the other token of the same tenant still works.
    expect((await request(r.port, hostOf(kept.url))).text).toBe('ok');
    expect(((await refused(r.url, appPort, { token })) as { code?: string }).code).toBe('BURROW_ERR_TOKEN_INVALID');
  });
});

describe('tenant quotas', () => {
  test('maxTunnels: one more tunnel than the quota is refused; closing one frees its slot', async () => {
    const { port: appPort } = await startApp((_req, res) => res.end('ok'));
    const r = await tokenRelay();
    const tenant = await r.store.createTenant({ name: 'Acme', quotas: { maxTunnels: 2 } });
    const { token } = await r.store.createToken(tenant.id);
    const first = await startTunnel(r.url, appPort, { token });
    await startTunnel(r.url, appPort, { token });
    const err = await refused(r.url, appPort, { token });
    expect((err as { code?: string }).code).toBe('BURROW_ERR_QUOTA_TUNNELS');
    await first.close();
    await waitFor(() => r.relay.stats().sessions === 1, 2000, 'first session gone');
    await startTunnel(r.url, appPort, { token });
  });

  test('requestsPerMinute: beyond it 429 with Retry-After, and the agent never sees those requests', async () => {
    const app = await countingApp();
    const r = await tokenRelay();
    const tenant = await r.store.createTenant({ name: 'Acme', quotas: { requestsPerMinute: 5 } });
    const { token } = await r.store.createToken(tenant.id);
    const tunnel = await startTunnel(r.url, app.port, { token });
    // Windows are UTC minutes: start well inside one so the count cannot reset mid-test.
    const intoMinute = Date.now() % 60_000;
    if (intoMinute > 55_000) await new Promise((res) => setTimeout(res, 60_500 - intoMinute));
    const statuses: number[] = [];
    let retryAfter: string | undefined;
    for (let i = 0; i < 8; i++) {
      const res = await request(r.port, hostOf(tunnel.url));
      statuses.push(res.status);
      if (res.status === 429) {
        retryAfter = res.headers['retry-after'] as string;
        expect(res.headers['x-burrow-error']).toBe('BURROW_ERR_RATE_LIMITED');
      }
    }
    expect(statuses.filter((s) => s === 200)).toHaveLength(5);
    expect(statuses.filter((s) => s === 429)).toHaveLength(3);
    expect(Number(retryAfter)).toBeGreaterThanOrEqual(1);
    expect(Number(retryAfter)).toBeLessThanOrEqual(60);
    expect(app.seen).toHaveLength(5);
  });

  test('maxBodyBytes overrides the relay limit both ways: 413 for a request, 502 for a response', async () => {
    const app = await countingApp((req, res) => {
      if (req.url === '/big') res.end(Buffer.alloc(5000, 1));
      else req.resume().on('end', () => res.end('small'));
    });
    const r = await tokenRelay();
    const tenant = await r.store.createTenant({ name: 'Acme', quotas: { maxBodyBytes: 2000 } });
    const { token } = await r.store.createToken(tenant.id);
    const tunnel = await startTunnel(r.url, app.port, { token });
    expect((await request(r.port, hostOf(tunnel.url), { method: 'POST', body: Buffer.alloc(1500) })).text).toBe('small');
    const tooBig = await request(r.port, hostOf(tunnel.url), { method: 'POST', body: Buffer.alloc(3000) });
    expect(tooBig.status).toBe(413);
    const bigResponse = await request(r.port, hostOf(tunnel.url), { path: '/big' });
    expect(bigResponse.status).toBe(502);
    expect(bigResponse.headers['x-burrow-error']).toBe('BURROW_ERR_RESPONSE_TOO_LARGE');
  });

  test('maxStreams: the request beyond the tenant quota gets 503 BURROW_ERR_QUOTA_STREAMS', async () => {
    const release: Array<() => void> = [];
    const app = await countingApp((_req, res) => release.push(() => res.end('done')));
    const r = await tokenRelay();
    const tenant = await r.store.createTenant({ name: 'Acme', quotas: { maxStreams: 2 } });
    const { token } = await r.store.createToken(tenant.id);
    const tunnel = await startTunnel(r.url, app.port, { token });
    const held = [request(r.port, hostOf(tunnel.url)), request(r.port, hostOf(tunnel.url))];
    await waitFor(() => release.length === 2, 3000, 'two requests at the app');
    const third = await request(r.port, hostOf(tunnel.url));
    expect(third.status).toBe(503);
    expect(third.headers['x-burrow-error']).toBe('BURROW_ERR_QUOTA_STREAMS');
    for (const f of release) f();
    for (const h of await Promise.all(held)) expect(h.text).toBe('done');
    // Slots come back once requests end.
    const again = request(r.port, hostOf(tunnel.url));
    await waitFor(() => release.length === 3, 3000, 'a new request at the app');
    release[2]?.();
    expect((await again).text).toBe('done');
    expect(app.seen).toHaveLength(3);
  });

  test('reserved names: only the reserving tenant may bind them', async () => {
    const { port: appPort } = await startApp((_req, res) => res.end('ok'));
    const r = await tokenRelay();
    const acme = await r.store.createTenant({ name: 'Acme', reservedNames: ['shop'] });
    const other = await r.store.createTenant({ name: 'Other' });
    const acmeToken = (await r.store.createToken(acme.id)).token;
    const otherToken = (await r.store.createToken(other.id)).token;
    const err = await refused(r.url, appPort, { token: otherToken, subdomain: 'shop' });
    expect((err as { code?: string }).code).toBe('BURROW_ERR_NAME_RESERVED');
    const tunnel = await startTunnel(r.url, appPort, { token: acmeToken, subdomain: 'shop' });
    expect(tunnel.url).toContain('://shop.');
  });
});

describe('visitor access control (enforced at the relay, before the agent)', () => {
  test('basic auth: 401 with a challenge, then 200 with the login; the app never sees the credential', async () => {
    const app = await countingApp((req, res) => res.end(`auth:${req.headers.authorization ?? 'none'}`));
    const r = await startRelay();
    const tunnel = await startTunnel(r.url, app.port, { access: { basicAuth: [{ user: 'ann', sha256: digest('ann:s3cret') }] } });
    const anon = await request(r.port, hostOf(tunnel.url));
    expect(anon.status).toBe(401);
    expect(anon.headers['www-authenticate']).toMatch(/^Basic realm="burrow"/);
    expect(anon.headers['x-burrow-error']).toBe('BURROW_ERR_VISITOR_UNAUTHORIZED');
    const wrong = await request(r.port, hostOf(tunnel.url), { headers: { authorization: basic('ann', 'nope') } });
    expect(wrong.status).toBe(401);
    expect(app.seen).toHaveLength(0);
    const ok = await request(r.port, hostOf(tunnel.url), { headers: { authorization: basic('ann', 's3cret') } });
    expect(ok.status).toBe(200);
    expect(ok.text).toBe('auth:none');
    expect(app.seen).toHaveLength(1);
  });

  test('allow-cidr: a visitor outside the list gets 403, inside gets through; a WebSocket too', async () => {
    const app = await countingApp();
    const r = await startRelay();
    const outside = await startTunnel(r.url, app.port, { access: { allowCidrs: ['10.0.0.0/8'] } });
    const inside = await startTunnel(r.url, app.port, { access: { allowCidrs: ['127.0.0.0/8', '::1/128'] } });
    const denied = await request(r.port, hostOf(outside.url));
    expect(denied.status).toBe(403);
    expect(denied.headers['x-burrow-error']).toBe('BURROW_ERR_VISITOR_FORBIDDEN');
    const ws = new WebSocket(`ws://127.0.0.1:${r.port}/`, { headers: { host: hostOf(outside.url) } });
    const wsStatus = await new Promise<number>((resolve) => {
      ws.on('unexpected-response', (_req, res) => resolve(res.statusCode ?? 0));
      ws.on('open', () => resolve(101));
      ws.on('error', () => {});
    });
    expect(wsStatus).toBe(403);
    expect(app.seen).toHaveLength(0);
    expect((await request(r.port, hostOf(inside.url))).status).toBe(200);
    expect(app.seen).toHaveLength(1);
  });

  test('bearer token for webhooks, enforced by another node too (the rules travel with the lease)', async () => {
    const redis: RedisServer = await startRedis();
    cleanups.push(() => redis.stop());
    const app = await countingApp();
    const a = await startRelay({ nodeId: 'ta', leaseTtlMs: 2000 }, new RedisBus({ nodeId: 'ta', url: redis.url, leaseTtlMs: 2000 }));
    const b = await startRelay({ nodeId: 'tb', leaseTtlMs: 2000 }, new RedisBus({ nodeId: 'tb', url: redis.url, leaseTtlMs: 2000 }));
    const tunnel = await startTunnel(a.url, app.port, {
      access: { headers: [{ name: 'authorization', sha256: digest('Bearer hook-secret') }] },
    });
    const host = hostOn(tunnel.label, b.port);
    expect((await request(b.port, host)).status).toBe(401);
    expect((await request(b.port, host, { headers: { authorization: 'Bearer wrong' } })).status).toBe(401);
    expect(app.seen).toHaveLength(0);
    const ok = await request(b.port, host, { headers: { authorization: 'Bearer hook-secret' } });
    expect(ok.status).toBe(200);
    expect(app.seen[0]?.headers.authorization).toBeUndefined();
  });
});

describe('tenancy across nodes (Redis)', () => {
  let redis: RedisServer;
  beforeAll(async () => {
    redis = await startRedis();
  });
  afterAll(async () => {
    await redis.stop();
  });

  async function node(id: string) {
    const store = new RedisTenantStore({ url: redis.url });
    cleanups.push(() => store.close());
    const bus = new RedisBus({ nodeId: id, url: redis.url, leaseTtlMs: 2000 });
    const r = await startRelay({ nodeId: id, leaseTtlMs: 2000, auth: 'token', adminToken: ADMIN_TOKEN }, bus, { tenantStore: store });
    return { ...r, store };
  }

  test('maxTunnels counts over every node; revocation closes sessions on every node within seconds (bound: 2.5 s)', async () => {
    const { port: appPort } = await startApp((_req, res) => res.end('ok'));
    const suffix = Math.random().toString(36).slice(2, 8);
    const a = await node(`qa-${suffix}`);
    const b = await node(`qb-${suffix}`);
    const tenant = await a.store.createTenant({ name: 'Fleet', quotas: { maxTunnels: 2 } });
    const { token, info } = await a.store.createToken(tenant.id);
    const onA = await startTunnel(a.url, appPort, { token });
    const onB = await startTunnel(b.url, appPort, { token });
    const third = await refused(b.url, appPort, { token });
    expect((third as { code?: string }).code).toBe('BURROW_ERR_QUOTA_TUNNELS');
    const fatalA = new Promise<Error>((res) => onA.agent.once('fatal', res));
    const fatalB = new Promise<Error>((res) => onB.agent.once('fatal', res));
    const started = Date.now();
    await b.store.revokeToken(info.id);
    const [ea, eb] = await Promise.all([fatalA, fatalB]);
    expect((ea as { code?: string }).code).toBe('BURROW_ERR_TOKEN_REVOKED');
    expect((eb as { code?: string }).code).toBe('BURROW_ERR_TOKEN_REVOKED');
    expect(Date.now() - started).toBeLessThan(2500);
  });
});

describe('admin API over the fleet (Redis)', () => {
  let redis: RedisServer;
  beforeAll(async () => {
    redis = await startRedis();
  });
  afterAll(async () => {
    await redis.stop();
  });

  async function adminNode(id: string, leaseTtlMs = 1500) {
    const bus = new RedisBus({ nodeId: id, url: redis.url, leaseTtlMs });
    const store = new RedisTenantStore({ url: redis.url });
    cleanups.push(() => store.close());
    const r = await startRelay({ nodeId: id, leaseTtlMs, auth: 'token', adminToken: ADMIN_TOKEN, adminListen: '127.0.0.1:0' }, bus, {
      tenantStore: store,
    });
    return { ...r, admin: r.relay.adminUrl() as string };
  }

  async function api(base: string, method: string, path: string, body?: unknown, token = ADMIN_TOKEN) {
    const res = await fetch(`${base}${path}`, {
      method,
      headers: { authorization: `Bearer ${token}`, ...(body !== undefined ? { 'content-type': 'application/json' } : {}) },
      ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
    });
    const text = await res.text();
    return { status: res.status, json: text === '' ? undefined : (JSON.parse(text) as Record<string, unknown>) };
  }

  test('the fleet listing follows a registration and a departure at once, not at the next periodic refresh (bound: 2 s; refresh every 10 s)', async () => {
    const { port: appPort } = await startApp((_req, res) => res.end('ok'));
    const suffix = Math.random().toString(36).slice(2, 8);
    const a = await adminNode(`la-${suffix}`, 30_000);
    const b = await adminNode(`lb-${suffix}`, 30_000);
    await api(a.admin, 'POST', '/v1/tenants', { id: `list-${suffix}`, name: 'List' });
    const token = (await api(a.admin, 'POST', `/v1/tenants/list-${suffix}/tokens`, {})).json?.token as string;
    const listed = async (): Promise<string[]> => {
      const body = (await api(b.admin, 'GET', `/v1/tunnels?tenant=list-${suffix}`)).json as { tunnels: Array<{ label: string }> };
      return body.tunnels.map((t) => t.label);
    };
    // Both nodes have published once (at start); from now on only the incremental path can change the listing for 10 s.
    const tunnel = await startTunnel(a.url, appPort, { token });
    await waitFor(async () => (await listed()).includes(tunnel.label), 2000, 'the new tunnel listed through the other node');
    await tunnel.close();
    await waitFor(async () => !(await listed()).includes(tunnel.label), 2000, 'the tunnel gone from the listing');
  });

  test('tenants and tokens through the API; live tunnels listed from every node; a disconnect reaches the holding node; history records it', async () => {
    const { port: appPort } = await startApp((_req, res) => res.end('ok'));
    const suffix = Math.random().toString(36).slice(2, 8);
    const a = await adminNode(`aa-${suffix}`);
    const b = await adminNode(`ab-${suffix}`);
    // Without the admin token nothing is revealed.
    expect((await api(a.admin, 'GET', '/v1/tenants', undefined, 'wrong-token-wrong-token')).status).toBe(401);
    const created = await api(a.admin, 'POST', '/v1/tenants', { id: `acme-${suffix}`, name: 'Acme', quotas: { maxTunnels: 5 } });
    expect(created.status).toBe(201);
    expect((await api(a.admin, 'POST', '/v1/tenants', { name: 'x', quotas: { maxTunnels: -1 } })).status).toBe(400);
    const tok = await api(b.admin, 'POST', `/v1/tenants/acme-${suffix}/tokens`, { description: 'ci' });
    expect(tok.status).toBe(201);
    const token = tok.json?.token as string;
    const onA = await startTunnel(a.url, appPort, { token, reconnectInitialMs: 3000, reconnectMaxMs: 3000 });
    const onB = await startTunnel(b.url, appPort, { token });
    // Either node lists both tunnels, with the node holding each.
    await waitFor(
      async () => {
        const list = (await api(b.admin, 'GET', `/v1/tunnels?tenant=acme-${suffix}`)).json as unknown as
          | { tunnels?: Array<{ label: string; node: string }> }
          | Array<{ label: string; node: string }>;
        const items = Array.isArray(list) ? list : (list.tunnels ?? []);
        return (
          items.some((t) => t.label === onA.label && t.node === `aa-${suffix}` && (t as { kind?: string }).kind === 'http') &&
          items.some((t) => t.label === onB.label && t.node === `ab-${suffix}`)
        );
      },
      4000,
      'both tunnels listed',
    );
    // Disconnect the tunnel held by A, through B's admin API.
    const offline = new Promise((res) => onA.agent.once('offline', res));
    expect((await api(b.admin, 'DELETE', `/v1/tunnels/${onA.label}`)).status).toBeLessThan(300);
    await offline;
    expect((await api(b.admin, 'DELETE', '/v1/tunnels/nosuchlabel')).status).toBe(404);
    await waitFor(
      async () => {
        const h = (await api(a.admin, 'GET', `/v1/tenants/acme-${suffix}/history`)).json as unknown as
          | { events?: Array<{ kind: string; reason?: string; label: string }> }
          | Array<{ kind: string; reason?: string; label: string }>;
        const events = Array.isArray(h) ? h : (h.events ?? []);
        return events.some((e) => e.kind === 'disconnect' && e.label === onA.label && e.reason === 'BURROW_ERR_ADMIN_DISCONNECT');
      },
      4000,
      'the disconnect in the history',
    );
  });
});

function digest(text: string): string {
  return require('node:crypto').createHash('sha256').update(text, 'utf8').digest('base64url') as string;
}

function basic(user: string, pass: string): string {
  return `Basic ${Buffer.from(`${user}:${pass}`, 'utf8').toString('base64')}`;
}
