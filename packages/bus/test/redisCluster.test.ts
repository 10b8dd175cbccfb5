import { randomBytes } from 'node:crypto';
import { type BusMessage, type Holder, keySlot, RedisBus } from '@burrow/bus';
import { FrameType } from '@burrow/protocol';
import { Redis } from 'ioredis';
import { type RedisCluster, startRedisCluster } from '../../../test/redis';
import { busContract } from './bus.contract';

const uniq = (prefix: string): string => `${prefix}-${randomBytes(6).toString('hex')}`;

let cluster: RedisCluster;
/** Slot ranges per master port, from CLUSTER SLOTS. */
let owners: Array<{ from: number; to: number; port: number }>;
beforeAll(async () => {
  cluster = await startRedisCluster(3);
  const admin = new Redis(cluster.ports[0] as number, '127.0.0.1');
  try {
    const slots = await admin.cluster('SLOTS');
    owners = slots.map(([from, to, master]) => ({ from, to, port: Number(master?.[1]) }));
  } finally {
    admin.disconnect();
  }
}, 30_000);
afterAll(async () => {
  await cluster?.stop();
});

const ownerPort = (key: string): number => {
  const slot = keySlot(key);
  const o = owners.find((r) => slot >= r.from && slot <= r.to);
  if (o === undefined) throw new Error(`no owner for slot ${slot}`);
  return o.port;
};

/** A node id whose channel lives on the master at `port`. */
function nodeIdOn(port: number, prefix = 'node'): string {
  for (;;) {
    const id = uniq(prefix);
    if (ownerPort(`burrow:{node:${id}}`) === port) return id;
  }
}

busContract('RedisBus (cluster)', async () => {
  // Different masters for a and b, so every contract test crosses shards.
  const a = new RedisBus({ nodeId: nodeIdOn(cluster.ports[0] as number, 'node-a'), cluster: cluster.seeds });
  const b = new RedisBus({ nodeId: nodeIdOn(cluster.ports[1] as number, 'node-b'), cluster: cluster.seeds });
  return {
    a,
    b,
    async close() {
      await a.close();
      await b.close();
    },
  };
});

async function eventually(what: string, check: () => boolean | Promise<boolean>, ms = 3000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`${what} did not happen within ${ms} ms`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

describe('RedisBus on a Redis Cluster', () => {
  const open: RedisBus[] = [];
  afterEach(async () => {
    await Promise.all(open.splice(0).map((b) => b.close()));
  });

  async function node(nodeId: string): Promise<{ bus: RedisBus; got: BusMessage[] }> {
    const bus = new RedisBus({ nodeId, cluster: cluster.seeds });
    open.push(bus);
    const got: BusMessage[] = [];
    await bus.subscribe({ message: (m) => got.push(m) });
    return { bus, got };
  }

  test('keySlot agrees with CLUSTER KEYSLOT', async () => {
    const admin = new Redis(cluster.ports[0] as number, '127.0.0.1');
    try {
      for (const key of ['foo', 'burrow:{node:x}', 'burrow:{l:some-label}:lease', 'a{}b', 'x{y}z{w}', uniq('k'), 'ünï{cödé}']) {
        expect(await admin.cluster('KEYSLOT', key)).toBe(keySlot(key));
      }
    } finally {
      admin.disconnect();
    }
  });

  test('node channels spread over all masters, and each channel is subscribed on its own shard', async () => {
    const ids = cluster.ports.map((port) => nodeIdOn(port));
    const nodes = await Promise.all(ids.map((id) => node(id)));
    for (const [i, port] of cluster.ports.entries()) {
      const admin = new Redis(port, '127.0.0.1');
      try {
        const channels = (await admin.call('PUBSUB', 'SHARDCHANNELS', 'burrow:*')) as string[];
        expect(channels).toContain(nodes[i]?.bus.channelOf(ids[i] as string));
        for (const [j, id] of ids.entries()) if (j !== i) expect(channels).not.toContain(nodes[j]?.bus.channelOf(id));
      } finally {
        admin.disconnect();
      }
    }
    // 60 random ids land on every master.
    const spread = new Set(Array.from({ length: 60 }, () => ownerPort(`burrow:{node:${uniq('n')}}`)));
    expect(spread).toStrictEqual(new Set(cluster.ports));
  });

  test('messages reach a node whose channel lives on each of the masters', async () => {
    const sender = await node(nodeIdOn(cluster.ports[0] as number, 'sender'));
    const receivers = await Promise.all(cluster.ports.map((port) => node(nodeIdOn(port, 'receiver'))));
    receivers.forEach((r, i) => {
      for (let k = 0; k < 100; k++) {
        sender.bus.publish(r.bus.nodeId, { kind: 'toIngress', frame: { type: FrameType.DATA, flags: 0, streamId: i * 1000 + k, payload: Buffer.from([k]) } });
      }
    });
    await eventually('all messages', () => receivers.every((r) => r.got.length === 100));
    receivers.forEach((r, i) => {
      expect(r.got.map((m) => (m.kind === 'toIngress' ? m.frame.streamId : -1))).toStrictEqual(Array.from({ length: 100 }, (_, k) => i * 1000 + k));
    });
    expect(await sender.bus.absentNodes([...receivers.map((r) => r.bus.nodeId), 'ghost-1', 'ghost-2', 'ghost-3'])).toStrictEqual(
      new Set(['ghost-1', 'ghost-2', 'ghost-3']),
    );
  });

  test('renew of 10,000 labels spanning every slot range', async () => {
    const { bus } = await node(uniq('renewer'));
    const holder = (): Holder => ({ nodeId: bus.nodeId, sessionId: uniq('s'), keyId: uniq('k') });
    const leases = Array.from({ length: 10_000 }, () => ({ label: uniq('bulk'), holder: holder() }));
    let t0 = Date.now();
    expect(new Set(await bus.registry.renew(leases))).toStrictEqual(new Set(['reclaimed']));
    const reclaimMs = Date.now() - t0;
    t0 = Date.now();
    const results = await bus.registry.renew(leases);
    const renewMs = Date.now() - t0;
    expect(new Set(results)).toStrictEqual(new Set(['renewed']));
    console.log(`renew 10k labels (cluster): reclaim ${reclaimMs} ms, renew ${renewMs} ms`);
    expect(await bus.registry.lookup(leases[9999]?.label as string)).toStrictEqual({ state: 'online', holder: leases[9999]?.holder });
  });
});
