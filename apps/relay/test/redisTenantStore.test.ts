/**
 * RedisTenantStore: the TenantStore contract on a standalone redis-server and (core tests only)
 * on a 3-master cluster, each store under its own key prefix; then fail-fast behaviour when
 * Redis is away, key layout, and crash-order safety.
 */
import { randomBytes } from 'node:crypto';
import { BurrowError } from '@burrow/protocol';
import { Redis } from 'ioredis';
import { type RedisCluster, type RedisServer, startRedis, startRedisCluster } from '../../../test/redis';
import { RedisTenantStore } from '../src/tenancy/redisStore';
import type { TenantStore } from '../src/tenancy/types';
import { tenantStoreContract } from './tenantStore.contract';

const prefix = (): string => `t${randomBytes(4).toString('hex')}:`;

let server: RedisServer;
let cluster: RedisCluster;
beforeAll(async () => {
  [server, cluster] = await Promise.all([startRedis(), startRedisCluster(3)]);
}, 60_000);
afterAll(async () => {
  await Promise.all([server?.stop(), cluster?.stop()]);
});

tenantStoreContract('RedisTenantStore (standalone)', async () => {
  const keyPrefix = prefix();
  let current: TenantStore = new RedisTenantStore({ url: server.url, keyPrefix });
  return {
    store: current,
    async reopen() {
      await current.close();
      current = new RedisTenantStore({ url: server.url, keyPrefix });
      return current;
    },
    close: () => current.close(),
  };
});

tenantStoreContract(
  'RedisTenantStore (cluster)',
  async () => {
    const store = new RedisTenantStore({ cluster: cluster.seeds, keyPrefix: prefix() });
    return { store, close: () => store.close() };
  },
  { small: true },
);

describe('RedisTenantStore', () => {
  const open: TenantStore[] = [];
  afterEach(async () => {
    await Promise.all(open.splice(0).map((s) => s.close()));
  });
  const make = (options: ConstructorParameters<typeof RedisTenantStore>[0]): RedisTenantStore => {
    const s = new RedisTenantStore(options);
    open.push(s);
    return s;
  };

  test('needs exactly one of url or cluster', () => {
    expect(() => new RedisTenantStore({})).toThrow(/exactly one of url/);
    expect(() => new RedisTenantStore({ url: server.url, cluster: ['127.0.0.1:1'] })).toThrow(/exactly one of url/);
  });

  test('rejects with BURROW_ERR_BUS_UNAVAILABLE when Redis is unreachable, and recovers when it is back', async () => {
    const down = await startRedis();
    const store = make({ url: down.url, keyPrefix: prefix(), connectTimeoutMs: 300, commandTimeoutMs: 300 });
    await store.createTenant({ id: 'acme', name: 'Acme' });
    await down.kill();
    const err = await store.getTenant('acme').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(BurrowError);
    expect((err as BurrowError).code).toBe('BURROW_ERR_BUS_UNAVAILABLE');
    await expect(store.authenticate(`burrow_${'a'.repeat(12)}_${'A'.repeat(43)}`)).rejects.toMatchObject({ code: 'BURROW_ERR_BUS_UNAVAILABLE' });
    await down.restart();
    const deadline = Date.now() + 5000;
    for (;;) {
      try {
        await store.createTenant({ id: 'again', name: 'Again' });
        break;
      } catch (e) {
        if (Date.now() > deadline) throw e;
        await new Promise((r) => setTimeout(r, 50));
      }
    }
    await down.stop();
  });

  test('a store that never reached Redis fails fast at the first call', async () => {
    const store = make({ url: 'redis://127.0.0.1:1', connectTimeoutMs: 200 });
    const started = Date.now();
    await expect(store.listTenants()).rejects.toMatchObject({ code: 'BURROW_ERR_BUS_UNAVAILABLE' });
    expect(Date.now() - started).toBeLessThan(2000);
  });

  test('keys are hash-tagged per tenant, token and name; no secret is stored', async () => {
    const keyPrefix = prefix();
    const store = make({ url: server.url, keyPrefix });
    await store.createTenant({ id: 'acme', name: 'Acme', reservedNames: ['shop'] });
    const { token, info } = await store.createToken('acme');
    await store.recordHistory('acme', { at: Date.now(), kind: 'connect', label: 'l', node: 'n', sessionId: 's', peer: 'p' });
    const redis = new Redis(server.url);
    try {
      const keys = (await redis.keys(`${keyPrefix}*`)).sort();
      expect(keys).toEqual(
        [
          `${keyPrefix}reserved:{shop}`,
          `${keyPrefix}tenant:{acme}`,
          `${keyPrefix}tenant:{acme}:history`,
          `${keyPrefix}tenant:{acme}:tokens`,
          `${keyPrefix}tenants`,
          `${keyPrefix}token:{${info.id}}`,
        ].sort(),
      );
      const stored = await redis.hgetall(`${keyPrefix}token:{${info.id}}`);
      expect(stored).toMatchObject({ tenant: 'acme' });
      expect(JSON.stringify(stored)).not.toContain(token.split('_')[2]);
      expect(await redis.pttl(`${keyPrefix}tenant:{acme}:history`)).toBeGreaterThan(0);
      // A crash after deleteTenant's first step (the tenant hash) leaves token keys that do not authenticate.
      await redis.del(`${keyPrefix}tenant:{acme}`);
      expect(await store.authenticate(token)).toBeUndefined();
      expect(await store.validTokenIds([info.id])).toEqual(new Set());
    } finally {
      redis.disconnect();
    }
  });

  test('a crash between listing and making a token leaves a set entry that listTokens skips and cleans', async () => {
    const keyPrefix = prefix();
    const store = make({ url: server.url, keyPrefix });
    await store.createTenant({ id: 'acme', name: 'Acme' });
    const redis = new Redis(server.url);
    try {
      await redis.sadd(`${keyPrefix}tenant:{acme}:tokens`, 'aaaaaaaaaaaa');
      expect(await store.listTokens('acme')).toEqual([]);
      expect(await redis.scard(`${keyPrefix}tenant:{acme}:tokens`)).toBe(0);
    } finally {
      redis.disconnect();
    }
  });
});
