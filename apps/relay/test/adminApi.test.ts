/**
 * The admin API on the admin app over real HTTP on port 0 (light-my-request, behind Fastify's
 * inject, cannot load under jest here: its cookie dependency is ESM-only): bearer auth on every /v1 route (probes stay
 * open), each route's answers and coded errors, schema validation, the API off without a token,
 * and 503 `unavailable` when the store's Redis is down.
 */

import type { AddressInfo } from 'node:net';
import { BurrowError } from '@burrow/protocol';
import type { FastifyInstance } from 'fastify';
import { buildAdminApp, type ReadinessState } from '../src/adminServer';
import { RelayMetrics } from '../src/metrics';
import { FileTenantStore } from '../src/tenancy/fileStore';
import type { LiveTunnel, TenantStore } from '../src/tenancy/types';
import { FakeTunnels, tunnel } from './fakeTunnels';

const TOKEN = 'admin-token-0123456789';
const READY: ReadinessState = { listening: true, busUp: true, draining: false, closing: false };

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

let app: FastifyInstance;
let store: TenantStore;
let tunnels: FakeTunnels;

beforeEach(async () => {
  store = new FileTenantStore();
  tunnels = new FakeTunnels([tunnel('app1', 'acme'), tunnel('app2', 'other'), tunnel('anon')]);
  app = await listen(buildAdminApp({ nodeId: 'n1', metrics, readiness: () => READY, admin: { token: TOKEN, store, tunnels } }));
});
afterEach(async () => {
  await app.close();
  await store.close();
});

async function listen(a: FastifyInstance): Promise<FastifyInstance> {
  await a.listen({ port: 0, host: '127.0.0.1' });
  return a;
}

interface Raw {
  readonly method?: string;
  readonly url: string;
  readonly headers?: Record<string, string>;
  readonly payload?: string;
}

/** One request to `a` (default: the app of this test); the raw body as text. */
async function raw(r: Raw, a: FastifyInstance = app): Promise<{ statusCode: number; headers: Headers; body: string }> {
  const port = (a.server.address() as AddressInfo).port;
  const res = await fetch(`http://127.0.0.1:${port}${r.url}`, {
    method: r.method ?? 'GET',
    headers: r.headers ?? {},
    ...(r.payload !== undefined ? { body: r.payload } : {}),
  });
  return { statusCode: res.status, headers: res.headers, body: await res.text() };
}

async function call(method: string, url: string, body?: unknown, token: string | null = TOKEN) {
  const res = await raw({
    method,
    url,
    headers: {
      ...(token === null ? {} : { authorization: `Bearer ${token}` }),
      ...(body !== undefined ? { 'content-type': 'application/json' } : {}),
    },
    ...(body !== undefined ? { payload: JSON.stringify(body) } : {}),
  });
  const headers = Object.fromEntries(res.headers);
  return { status: res.statusCode, headers, body: res.body === '' ? undefined : JSON.parse(res.body) };
}

describe('admin API auth', () => {
  test('every /v1 route needs the bearer token; probes do not', async () => {
    for (const [method, url] of [
      ['GET', '/v1/tenants'],
      ['POST', '/v1/tenants'],
      ['GET', '/v1/tenants/acme'],
      ['DELETE', '/v1/tokens/aaaaaaaaaaaa'],
      ['GET', '/v1/tunnels'],
      ['GET', '/v1/nope'],
    ] as const) {
      const r = await call(method, url, method === 'POST' ? { name: 'x' } : undefined, null);
      expect(r.status).toBe(401);
      expect(r.body).toEqual({ error: { code: 'unauthorized', message: expect.stringContaining('Bearer') } });
      expect(r.headers['www-authenticate']).toBe('Bearer realm="burrow-admin"');
    }
    expect((await call('GET', '/v1/tenants', undefined, 'wrong-token-0123456789')).body.error).toEqual({
      code: 'unauthorized',
      message: 'the admin token is not valid',
    });
    expect((await call('GET', '/v1/tenants', undefined, `${TOKEN}x`)).status).toBe(401);
    const basic = await raw({ url: '/v1/tenants', headers: { authorization: `Basic ${TOKEN}` } });
    expect(basic.statusCode).toBe(401);
    expect((await call('GET', '/healthz', undefined, null)).status).toBe(200);
    expect((await call('GET', '/readyz', undefined, null)).status).toBe(200);
    // Nothing was created by the unauthenticated POST.
    expect((await call('GET', '/v1/tenants')).body).toEqual({ tenants: [] });
  });

  test('without an admin token the API is off: /v1 is 404, probes work', async () => {
    const off = await listen(buildAdminApp({ nodeId: 'n1', metrics, readiness: () => READY }));
    const r = await raw({ url: '/v1/tenants', headers: { authorization: `Bearer ${TOKEN}` } }, off);
    expect(r.statusCode).toBe(404);
    expect(JSON.parse(r.body)).toEqual({ error: { code: 'not_found', message: expect.stringContaining('--admin-token') } });
    expect((await raw({ url: '/healthz' }, off)).statusCode).toBe(200);
    await off.close();
  });
});

describe('admin API tenants', () => {
  test('create, list, show, update, delete', async () => {
    const created = await call('POST', '/v1/tenants', { id: 'acme', name: 'Acme', quotas: { maxTunnels: 5 }, reservedNames: ['acme'] });
    expect(created.status).toBe(201);
    expect(created.body).toMatchObject({ id: 'acme', name: 'Acme', quotas: { maxTunnels: 5 }, reservedNames: ['acme'] });
    expect(created.headers['cache-control']).toBe('no-store');
    const generated = await call('POST', '/v1/tenants', { name: 'Generated' });
    expect(generated.status).toBe(201);

    expect((await call('GET', '/v1/tenants')).body.tenants.map((t: { id: string }) => t.id)).toEqual(['acme', generated.body.id]);
    expect((await call('GET', '/v1/tenants/acme')).body).toEqual(created.body);

    const patched = await call('PATCH', '/v1/tenants/acme', { quotas: { requestsPerMinute: 60 }, reservedNames: [] });
    expect(patched.status).toBe(200);
    expect(patched.body).toMatchObject({ id: 'acme', name: 'Acme', quotas: { requestsPerMinute: 60 }, reservedNames: [] });

    expect(await call('DELETE', '/v1/tenants/acme')).toMatchObject({ status: 200, body: { deleted: true, id: 'acme' } });
    expect(await call('GET', '/v1/tenants/acme')).toMatchObject({ status: 404, body: { error: { code: 'not_found' } } });
    expect(await call('PATCH', '/v1/tenants/acme', { name: 'x' })).toMatchObject({ status: 404, body: { error: { code: 'not_found' } } });
    expect(await call('DELETE', '/v1/tenants/acme')).toMatchObject({ status: 404, body: { error: { code: 'not_found' } } });
  });

  test('conflicts: duplicate id, a name reserved by another tenant', async () => {
    await call('POST', '/v1/tenants', { id: 'acme', name: 'Acme', reservedNames: ['shop'] });
    expect(await call('POST', '/v1/tenants', { id: 'acme', name: 'Again' })).toMatchObject({ status: 409, body: { error: { code: 'conflict' } } });
    expect(await call('POST', '/v1/tenants', { id: 'other', name: 'Other', reservedNames: ['shop'] })).toMatchObject({
      status: 409,
      body: { error: { code: 'conflict', message: expect.stringContaining('shop') } },
    });
  });

  test.each([
    ['missing name', { id: 'x' }],
    ['empty name', { name: '' }],
    ['blank name', { name: '   ' }],
    ['long name', { name: 'n'.repeat(101) }],
    ['bad id', { id: 'Not_OK', name: 'x' }],
    ['unknown property', { name: 'x', admin: true }],
    ['unknown quota', { name: 'x', quotas: { maxEverything: 1 } }],
    ['zero quota', { name: 'x', quotas: { maxTunnels: 0 } }],
    ['fractional quota', { name: 'x', quotas: { maxTunnels: 1.5 } }],
    ['string quota', { name: 'x', quotas: { maxTunnels: '5' } }],
    ['bad reserved name', { name: 'x', reservedNames: ['-no'] }],
    ['name is a number', { name: 5 }],
  ])('400 invalid: %s', async (_what, body) => {
    const r = await call('POST', '/v1/tenants', body);
    expect(r.status).toBe(400);
    expect(r.body.error.code).toBe('invalid');
    expect(typeof r.body.error.message).toBe('string');
  });

  test('400 invalid: bad params, queries, empty patch, malformed JSON; 413 for a huge body', async () => {
    expect((await call('GET', '/v1/tenants/UPPER')).body.error.code).toBe('invalid');
    expect((await call('GET', '/v1/tenants?x=1')).body.error.code).toBe('invalid');
    await call('POST', '/v1/tenants', { id: 'acme', name: 'Acme' });
    expect((await call('PATCH', '/v1/tenants/acme', {})).status).toBe(400);
    expect((await call('PATCH', '/v1/tenants/acme', { id: 'other' })).status).toBe(400);
    const bad = await raw({
      method: 'POST',
      url: '/v1/tenants',
      headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' },
      payload: '{"name":',
    });
    expect(bad.statusCode).toBe(400);
    expect(JSON.parse(bad.body).error.code).toBe('invalid');
    const huge = await call('POST', '/v1/tenants', { name: 'x', pad: 'p'.repeat(70_000) });
    expect(huge.status).toBe(413);
    expect(huge.body.error.code).toBe('invalid');
  });
});

describe('admin API tokens', () => {
  test('create (shown once), list, revoke', async () => {
    await call('POST', '/v1/tenants', { id: 'acme', name: 'Acme' });
    const created = await call('POST', '/v1/tenants/acme/tokens', { description: 'ci' });
    expect(created.status).toBe(201);
    expect(created.body.token).toMatch(/^burrow_[a-z2-7]{12}_[A-Za-z0-9_-]{43}$/);
    expect(created.body.info).toMatchObject({ tenantId: 'acme', description: 'ci' });
    expect(created.headers['cache-control']).toBe('no-store');
    expect((await store.authenticate(created.body.token))?.tenant.id).toBe('acme');

    // No body at all is fine.
    const bare = await raw({ method: 'POST', url: '/v1/tenants/acme/tokens', headers: { authorization: `Bearer ${TOKEN}` } });
    expect(bare.statusCode).toBe(201);

    const listed = await call('GET', '/v1/tenants/acme/tokens');
    expect(listed.body.tokens).toHaveLength(2);
    expect(JSON.stringify(listed.body)).not.toContain(created.body.token);

    expect(await call('DELETE', `/v1/tokens/${created.body.info.id}`)).toMatchObject({ status: 200, body: { revoked: true, id: created.body.info.id } });
    expect(await store.authenticate(created.body.token)).toBeUndefined();
    expect(await call('DELETE', `/v1/tokens/${created.body.info.id}`)).toMatchObject({ status: 404, body: { error: { code: 'not_found' } } });
    expect((await call('DELETE', '/v1/tokens/not-a-token-id')).status).toBe(400);
  });

  test('tokens of an unknown tenant are 404; unknown body fields 400', async () => {
    expect((await call('POST', '/v1/tenants/nobody/tokens', {})).status).toBe(404);
    expect((await call('GET', '/v1/tenants/nobody/tokens')).status).toBe(404);
    await call('POST', '/v1/tenants', { id: 'acme', name: 'Acme' });
    expect((await call('POST', '/v1/tenants/acme/tokens', { description: 'x', tenant: 'other' })).status).toBe(400);
    expect((await call('POST', '/v1/tenants/acme/tokens', { description: 'd'.repeat(201) })).status).toBe(400);
  });
});

describe('admin API tunnels and history', () => {
  test('lists live tunnels, filtered by tenant; disconnects by label', async () => {
    expect((await call('GET', '/v1/tunnels')).body.tunnels.map((t: LiveTunnel) => t.label)).toEqual(['app1', 'app2', 'anon']);
    expect((await call('GET', '/v1/tunnels?tenant=acme')).body.tunnels.map((t: LiveTunnel) => t.label)).toEqual(['app1']);
    expect((await call('GET', '/v1/tunnels?tenant=Bad!')).status).toBe(400);
    expect(await call('DELETE', '/v1/tunnels/app2')).toMatchObject({ status: 200, body: { disconnected: true, label: 'app2' } });
    expect(await call('DELETE', '/v1/tunnels/app2')).toMatchObject({ status: 404, body: { error: { code: 'not_found' } } });
    expect((await call('GET', '/v1/tunnels')).body.tunnels).toHaveLength(2);
  });

  test('history newest first, with a limit', async () => {
    await call('POST', '/v1/tenants', { id: 'acme', name: 'Acme' });
    for (let i = 1; i <= 3; i++) {
      await store.recordHistory('acme', { at: Date.now() + i, kind: 'connect', label: `l${i}`, node: 'n1', sessionId: `s${i}`, peer: 'p' });
    }
    expect((await call('GET', '/v1/tenants/acme/history')).body.events.map((e: { label: string }) => e.label)).toEqual(['l3', 'l2', 'l1']);
    expect((await call('GET', '/v1/tenants/acme/history?limit=1')).body.events.map((e: { label: string }) => e.label)).toEqual(['l3']);
    expect((await call('GET', '/v1/tenants/acme/history?limit=0')).status).toBe(400);
    expect((await call('GET', '/v1/tenants/acme/history?limit=x')).status).toBe(400);
    expect((await call('GET', '/v1/tenants/nobody/history')).status).toBe(404);
  });
});

describe('admin API failures', () => {
  test('a store whose Redis is down answers 503 unavailable', async () => {
    const down: TenantStore = new Proxy({} as TenantStore, {
      get: () => async () => {
        throw new BurrowError('BURROW_ERR_BUS_UNAVAILABLE', 'Redis at redis://x is unreachable');
      },
    });
    const a = await listen(buildAdminApp({ nodeId: 'n1', metrics, readiness: () => READY, admin: { token: TOKEN, store: down, tunnels } }));
    const r = await raw({ url: '/v1/tenants', headers: { authorization: `Bearer ${TOKEN}` } }, a);
    expect(r.statusCode).toBe(503);
    expect(JSON.parse(r.body).error).toMatchObject({ code: 'unavailable', message: expect.stringContaining('Redis') });
    await a.close();
  });

  test('an unexpected error is 500 internal without its details', async () => {
    const broken = new FakeTunnels();
    broken.list = async () => {
      throw new Error('secret detail');
    };
    const a = await listen(buildAdminApp({ nodeId: 'n1', metrics, readiness: () => READY, admin: { token: TOKEN, store, tunnels: broken } }));
    const r = await raw({ url: '/v1/tunnels', headers: { authorization: `Bearer ${TOKEN}` } }, a);
    expect(r.statusCode).toBe(500);
    expect(JSON.parse(r.body).error.code).toBe('internal');
    expect(r.body).not.toContain('secret detail');
    await a.close();
  });
});
