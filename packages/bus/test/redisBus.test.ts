import { randomBytes } from 'node:crypto';
import { type BusMessage, type Holder, RedisBus, type RedisBusOptions, type UndeliveredReason } from '@burrow/bus';
import { FrameType } from '@burrow/protocol';
import { Redis } from 'ioredis';
import { type RedisServer, startRedis } from '../../../test/redis';
import { busContract } from './bus.contract';

const uniq = (prefix: string): string => `${prefix}-${randomBytes(6).toString('hex')}`;

let server: RedisServer;
beforeAll(async () => {
  server = await startRedis();
});
afterAll(async () => {
  await server?.stop();
});

busContract('RedisBus', async () => {
  const a = new RedisBus({ nodeId: uniq('node-a'), url: server.url });
  const b = new RedisBus({ nodeId: uniq('node-b'), url: server.url });
  return {
    a,
    b,
    async close() {
      await a.close();
      await b.close();
    },
  };
});

/** Polls `check` until it holds or `ms` pass. */
async function eventually(what: string, check: () => boolean | Promise<boolean>, ms = 3000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`${what} did not happen within ${ms} ms`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

interface Node {
  bus: RedisBus;
  got: BusMessage[];
  undelivered: Array<{ nodeId: string; messages: readonly BusMessage[]; reason: UndeliveredReason }>;
  changes: boolean[];
  errors: Error[];
}

const open: RedisBus[] = [];
afterEach(async () => {
  await Promise.all(open.splice(0).map((b) => b.close()));
});

async function node(options: Partial<RedisBusOptions> & { url: string }, subscribe = true): Promise<Node> {
  const errors: Error[] = [];
  const bus = new RedisBus({ nodeId: uniq('node'), onError: (e) => errors.push(e), ...options });
  open.push(bus);
  const n: Node = { bus, got: [], undelivered: [], changes: [], errors };
  if (subscribe) {
    await bus.subscribe({
      message: (m) => n.got.push(m),
      undelivered: (nodeId, messages, reason) => n.undelivered.push({ nodeId, messages, reason }),
      connectionChanged: (up) => n.changes.push(up),
    });
  }
  return n;
}

const holder = (nodeId: string): Holder => ({ nodeId, sessionId: uniq('session'), keyId: uniq('key') });
const data = (streamId: number, payload = Buffer.from([streamId & 0xff])): BusMessage => ({
  kind: 'toIngress',
  frame: { type: FrameType.DATA, flags: 0, streamId, payload },
});

describe('RedisBus on a standalone Redis', () => {
  test('options: exactly one of url or cluster; a node id', () => {
    expect(() => new RedisBus({ nodeId: 'x' })).toThrow(/exactly one of url/);
    expect(() => new RedisBus({ nodeId: 'x', url: server.url, cluster: ['127.0.0.1:1'] })).toThrow(/exactly one of url/);
    expect(() => new RedisBus({ nodeId: '', url: server.url })).toThrow(/nodeId/);
    expect(new RedisBus({ nodeId: 'x', url: server.url }).leaseTtlMs).toBe(10_000);
    expect(new RedisBus({ nodeId: 'x', url: server.url, leaseTtlMs: 1234 }).leaseTtlMs).toBe(1234);
  });

  test('startup fails with BUS_UNAVAILABLE after the bounded wait when Redis is down', async () => {
    const dead = await startRedis();
    await dead.stop();
    const bus = new RedisBus({ nodeId: uniq('node'), url: dead.url, connectTimeoutMs: 300 });
    const t0 = Date.now();
    await expect(bus.subscribe({ message: () => {} })).rejects.toMatchObject({ code: 'BURROW_ERR_BUS_UNAVAILABLE', message: /cannot reach Redis/ });
    expect(Date.now() - t0).toBeLessThan(2000);
    await expect(bus.registry.lookup('x')).rejects.toMatchObject({ code: 'BURROW_ERR_BUS_UNAVAILABLE' });
    expect(bus.isUp()).toBe(false);
    await bus.close();
    await bus.close();
  });

  test('publishing to itself is synchronous and needs no Redis', async () => {
    const a = await node({ url: server.url });
    const m = data(1);
    a.bus.publish(a.bus.nodeId, m);
    expect(a.got).toStrictEqual([m]);
    expect(a.got[0]).toBe(m);
  });

  test('a lease not renewed expires after leaseTtlMs: offline, not unknown; renew brings it back', async () => {
    const a = await node({ url: server.url, leaseTtlMs: 300 });
    const label = uniq('label');
    const h = holder(a.bus.nodeId);
    const t0 = Date.now();
    await a.bus.registry.claim(label, h);
    expect(await a.bus.registry.lookup(label)).toStrictEqual({ state: 'online', holder: h });
    await eventually('lease expiry', async () => (await a.bus.registry.lookup(label)).state !== 'online');
    expect(Date.now() - t0).toBeGreaterThanOrEqual(250);
    expect(await a.bus.registry.lookup(label)).toStrictEqual({ state: 'offline' });
    expect(await a.bus.registry.renew([{ label, holder: h }])).toStrictEqual(['reclaimed']);
    expect(await a.bus.registry.lookup(label)).toStrictEqual({ state: 'online', holder: h });
  });

  test('renewal keeps a lease alive past its ttl', async () => {
    const a = await node({ url: server.url, leaseTtlMs: 300 });
    const label = uniq('label');
    const h = holder(a.bus.nodeId);
    await a.bus.registry.claim(label, h);
    for (let i = 0; i < 6; i++) {
      await new Promise((r) => setTimeout(r, 100));
      expect(await a.bus.registry.renew([{ label, holder: h }])).toStrictEqual(['renewed']);
    }
    expect(await a.bus.registry.lookup(label)).toStrictEqual({ state: 'online', holder: h });
  });

  test('offlineMemoryMs: a released label turns unknown after it', async () => {
    const a = await node({ url: server.url, offlineMemoryMs: 100 });
    const label = uniq('label');
    const h = holder(a.bus.nodeId);
    await a.bus.registry.claim(label, h);
    await a.bus.registry.release(label, h.sessionId);
    expect(await a.bus.registry.lookup(label)).toStrictEqual({ state: 'offline' });
    await eventually('forgetting', async () => (await a.bus.registry.lookup(label)).state === 'unknown');
  });

  test('maxNames bounds the names; existing names still resolve', async () => {
    const prefix = `burrow-${uniq('names')}:`; // own counter
    const a = await node({ url: server.url, maxNames: 2, keyPrefix: prefix });
    const [n1, n2, n3] = [uniq('n'), uniq('n'), uniq('n')];
    expect(await a.bus.registry.bindName(n1, 'k1')).toBe('k1');
    expect(await a.bus.registry.bindName(n2, 'k2')).toBe('k2');
    await expect(a.bus.registry.bindName(n3, 'k3')).rejects.toMatchObject({ code: 'BURROW_ERR_NAME_LIMIT' });
    expect(await a.bus.registry.bindName(n1, 'k3')).toBe('k1');
    expect(await a.bus.registry.lookup(n3)).toStrictEqual({ state: 'unknown' });
  });

  test('renew of 10,000 labels in one call', async () => {
    const a = await node({ url: server.url });
    const leases = Array.from({ length: 10_000 }, () => ({ label: uniq('bulk'), holder: holder(a.bus.nodeId) }));
    let t0 = Date.now();
    const first = await a.bus.registry.renew(leases);
    const reclaimMs = Date.now() - t0;
    expect(first.every((r) => r === 'reclaimed')).toBe(true);
    t0 = Date.now();
    const second = await a.bus.registry.renew(leases);
    const renewMs = Date.now() - t0;
    expect(second.every((r) => r === 'renewed')).toBe(true);
    console.log(`renew 10k labels (standalone): reclaim ${reclaimMs} ms, renew ${renewMs} ms`);
    expect(renewMs).toBeLessThan(3000);
  });

  test('1000 messages published in one tick arrive in order, in few PUBLISH commands', async () => {
    const admin = new Redis(server.url);
    try {
      const [a, b] = [await node({ url: server.url }), await node({ url: server.url })];
      const calls = async (): Promise<number> => Number(/cmdstat_publish:calls=(\d+)/.exec(await admin.info('commandstats'))?.[1] ?? 0);
      const before = await calls();
      for (let i = 0; i < 1000; i++) a.bus.publish(b.bus.nodeId, data(i + 1, Buffer.alloc(i % 100, i & 0xff)));
      await eventually('1000 messages', () => b.got.length >= 1000);
      expect(b.got.map((m) => (m.kind === 'toIngress' ? m.frame.streamId : -1))).toStrictEqual(Array.from({ length: 1000 }, (_, i) => i + 1));
      const published = (await calls()) - before;
      expect(published).toBeLessThanOrEqual(3);
      expect(a.bus.stats()).toMatchObject({ published: 1000, batches: published });
      expect(b.bus.stats()).toMatchObject({ received: 1000 });
    } finally {
      admin.disconnect();
    }
  });

  test('a batch is flushed early once it passes maxBatchBytes', async () => {
    const [a, b] = [await node({ url: server.url, maxBatchBytes: 10_000 }), await node({ url: server.url })];
    for (let i = 0; i < 100; i++) a.bus.publish(b.bus.nodeId, data(i + 1, Buffer.alloc(1000, 7)));
    expect(a.bus.stats().batches).toBeGreaterThanOrEqual(9); // sent from inside publish()
    await eventually('100 messages', () => b.got.length >= 100);
    expect(b.got.map((m) => (m.kind === 'toIngress' ? m.frame.streamId : -1))).toStrictEqual(Array.from({ length: 100 }, (_, i) => i + 1));
  });

  test('garbage on the channel is skipped and counted; later messages still arrive', async () => {
    const [a, b] = [await node({ url: server.url }), await node({ url: server.url })];
    const raw = new Redis(server.url);
    try {
      for (const junk of [Buffer.from('not a batch'), Buffer.from([0xb1, 9, 9]), Buffer.from([0xb1, 2, FrameType.DATA, 0, 0, 0, 0, 1, 0, 0, 0, 9])]) {
        expect(await raw.publish(b.bus.channelOf(b.bus.nodeId), junk)).toBe(1);
      }
    } finally {
      raw.disconnect();
    }
    a.bus.publish(b.bus.nodeId, data(42));
    await eventually('the good message', () => b.got.length >= 1);
    expect(b.got).toHaveLength(1);
    expect(b.bus.stats()).toMatchObject({ badBatches: 3, received: 1 });
    expect(b.bus.stats().errors).toBeGreaterThanOrEqual(3);
    expect(b.errors.map((e) => e.message).join('\n')).toMatch(/undecodable.*unknown format byte/);
  });

  test('stats count messages and payload bytes on both ends, and undelivered messages', async () => {
    const [a, b] = [await node({ url: server.url }), await node({ url: server.url })];
    a.bus.publish(b.bus.nodeId, data(1, Buffer.alloc(10)));
    a.bus.publish(b.bus.nodeId, data(2, Buffer.alloc(5)));
    a.bus.publish(uniq('ghost'), data(3, Buffer.alloc(7)));
    await eventually('delivery', () => b.got.length === 2 && a.undelivered.length === 1);
    expect(a.bus.stats()).toMatchObject({ published: 3, publishedBytes: 22, undelivered: 1, received: 0 });
    expect(b.bus.stats()).toMatchObject({ published: 0, received: 2, receivedBytes: 15 });
  });
});

describe('RedisBus through a Redis outage', () => {
  let own: RedisServer;
  beforeEach(async () => {
    own = await startRedis();
  });
  afterEach(async () => {
    await Promise.all(open.splice(0).map((b) => b.close()));
    await own.stop();
  });

  test('Redis killed: down, registry fails fast, publish bus-down; back: up, resubscribed, leases reclaimed', async () => {
    const [a, b] = [await node({ url: own.url }), await node({ url: own.url })];
    const label = uniq('label');
    const h = holder(a.bus.nodeId);
    await a.bus.registry.claim(label, h);
    a.bus.publish(b.bus.nodeId, data(1));
    await eventually('first message', () => b.got.length === 1);
    expect(a.bus.isUp()).toBe(true);

    await own.kill();
    await eventually('down', () => !a.bus.isUp() && !b.bus.isUp() && a.changes.length === 1 && b.changes.length === 1).catch((e) => {
      throw new Error(`${e.message}: ${JSON.stringify({ a: a.bus.isUp(), b: b.bus.isUp(), ac: a.changes, bc: b.changes })}`);
    });
    expect(a.changes).toStrictEqual([false]);
    for (const call of [() => a.bus.registry.lookup(label), () => a.bus.registry.renew([{ label, holder: h }]), () => a.bus.absentNodes([b.bus.nodeId])]) {
      const t0 = Date.now();
      await expect(call()).rejects.toMatchObject({ code: 'BURROW_ERR_BUS_UNAVAILABLE' });
      expect(Date.now() - t0).toBeLessThan(1000);
    }
    // Local delivery keeps working.
    a.bus.publish(a.bus.nodeId, data(7));
    expect(a.got).toHaveLength(1);
    const lost = data(2);
    a.bus.publish(b.bus.nodeId, lost);
    expect(a.undelivered).toHaveLength(0); // never inside publish()
    await eventually('bus-down report', () => a.undelivered.length === 1);
    expect(a.undelivered[0]).toMatchObject({ nodeId: b.bus.nodeId, reason: 'bus-down' });
    expect(a.undelivered[0]?.messages).toStrictEqual([lost]);

    await own.restart(); // same port, empty data
    await eventually('up again', () => a.bus.isUp() && b.bus.isUp(), 5000);
    expect(a.changes).toStrictEqual([false, true]);
    expect(b.changes).toStrictEqual([false, true]);
    a.bus.publish(b.bus.nodeId, data(3));
    await eventually('message after recovery', () => b.got.length === 2);
    expect(await a.bus.absentNodes([a.bus.nodeId, b.bus.nodeId])).toStrictEqual(new Set());
    // Redis came back empty: the lease is gone, renewal claims it again.
    expect(await b.bus.registry.lookup(label)).toStrictEqual({ state: 'unknown' });
    expect(await a.bus.registry.renew([{ label, holder: h }])).toStrictEqual(['reclaimed']);
    expect(await b.bus.registry.lookup(label)).toStrictEqual({ state: 'online', holder: h });
    expect(a.errors.length).toBeGreaterThan(0);
  });

  test('Redis restarted empty while up: renew reclaims the leases, lookups are online again', async () => {
    const a = await node({ url: own.url });
    const leases = Array.from({ length: 50 }, () => ({ label: uniq('label'), holder: holder(a.bus.nodeId) }));
    expect(new Set(await a.bus.registry.renew(leases))).toStrictEqual(new Set(['reclaimed']));
    await own.restart();
    await eventually('up again', () => a.bus.isUp(), 5000);
    expect(await a.bus.registry.lookup(leases[0]?.label as string)).toStrictEqual({ state: 'unknown' });
    expect(new Set(await a.bus.registry.renew(leases))).toStrictEqual(new Set(['reclaimed']));
    expect(new Set(await a.bus.registry.renew(leases))).toStrictEqual(new Set(['renewed']));
    expect(await a.bus.registry.lookup(leases[0]?.label as string)).toStrictEqual({ state: 'online', holder: leases[0]?.holder });
  });

  test('close() while Redis is down returns promptly', async () => {
    const a = await node({ url: own.url });
    await own.kill();
    await eventually('down', () => !a.bus.isUp());
    a.bus.publish(uniq('other'), data(1));
    const t0 = Date.now();
    await a.bus.close();
    expect(Date.now() - t0).toBeLessThan(1500);
  });
});

describe('RedisBus throughput (loopback)', () => {
  test('messages per second between two nodes', async () => {
    const [a, b] = [await node({ url: server.url }), await node({ url: server.url })];
    const n = 50_000;
    const payload = Buffer.alloc(1024, 1);
    const t0 = process.hrtime.bigint();
    // Publish in chunks so the producer yields, as a relay would between socket reads.
    for (let sent = 0; sent < n; ) {
      for (let i = 0; i < 1000; i++, sent++) a.bus.publish(b.bus.nodeId, data(sent + 1, payload));
      await new Promise((r) => setImmediate(r));
    }
    await eventually(`${n} messages`, () => b.got.length >= n, 15_000);
    const s = Number(process.hrtime.bigint() - t0) / 1e9;
    console.log(
      `RedisBus loopback: ${n} x 1 KiB messages in ${(s * 1000).toFixed(0)} ms = ${Math.round(n / s)} msg/s, ${((n * 1024) / s / 1e6).toFixed(1)} MB/s`,
    );
    expect(b.got.at(-1)).toMatchObject({ frame: { streamId: n } });
  });
});
