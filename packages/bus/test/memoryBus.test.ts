import { type BusMessage, type Holder, MemoryBus, MemoryHub } from '@burrow/bus';
import { FrameType } from '@burrow/protocol';
import { busContract } from './bus.contract';

busContract('MemoryBus', async () => {
  const hub = new MemoryHub();
  const a = new MemoryBus('node-a', hub);
  const b = new MemoryBus('node-b', hub);
  return {
    a,
    b,
    async close() {
      await a.close();
      await b.close();
    },
  };
});

const holder = (sessionId: string, nodeId = 'node-a'): Holder => ({ nodeId, sessionId, keyId: `key-of-${sessionId}` });

describe('MemoryBus specifics', () => {
  const message: BusMessage = { kind: 'toIngress', frame: { type: FrameType.DATA, flags: 0, streamId: 3, payload: Buffer.from('x') } };

  /** A subscribed bus and what it received, including undelivered reports. */
  async function node(id: string, hub: MemoryHub) {
    const bus = new MemoryBus(id, hub);
    const got: BusMessage[] = [];
    const undelivered: Array<{ nodeId: string; messages: readonly BusMessage[]; reason: string }> = [];
    await bus.subscribe({ message: (m) => got.push(m), undelivered: (nodeId, messages, reason) => undelivered.push({ nodeId, messages, reason }) });
    return { bus, got, undelivered };
  }

  test('publish to a node nobody subscribed as is reported undelivered, asynchronously', async () => {
    const hub = new MemoryHub();
    const a = await node('a', hub);
    a.bus.publish('nobody', message);
    const idle = new MemoryBus('idle', hub); // constructed, never subscribed
    a.bus.publish(idle.nodeId, message);
    expect(a.undelivered).toHaveLength(0); // never from inside publish()
    await Promise.resolve();
    expect(a.undelivered).toStrictEqual([
      { nodeId: 'nobody', messages: [message], reason: 'no-listener' },
      { nodeId: 'idle', messages: [message], reason: 'no-listener' },
    ]);
    expect(await a.bus.absentNodes(['a', 'nobody', 'idle'])).toStrictEqual(new Set(['nobody', 'idle']));
  });

  test('publish to a node that closed is reported undelivered', async () => {
    const hub = new MemoryHub();
    const a = await node('a', hub);
    const b = await node('b', hub);
    a.bus.publish('b', message);
    await b.bus.close();
    a.bus.publish('b', message);
    await Promise.resolve();
    expect(b.got).toHaveLength(1);
    expect(a.undelivered.map((u) => u.nodeId)).toStrictEqual(['b']);
    expect(await a.bus.absentNodes(['b'])).toStrictEqual(new Set(['b']));
  });

  test('delivery is synchronous and passes the payload by reference', async () => {
    const hub = new MemoryHub();
    const a = await node('a', hub);
    const b = await node('b', hub);
    a.bus.publish('b', message);
    expect(b.got).toHaveLength(1);
    expect(b.got[0]).toBe(message);
  });

  test('a node can publish to itself', async () => {
    const solo = await node('solo', new MemoryHub());
    solo.bus.publish('solo', message);
    expect(solo.got).toStrictEqual([message]);
    await solo.bus.close();
  });

  test('buses without a shared hub are separate media', async () => {
    const a = await node('same', new MemoryHub());
    const b = await node('other', new MemoryHub());
    a.bus.publish('other', message);
    await Promise.resolve();
    expect(b.got).toHaveLength(0);
    expect(a.undelivered).toHaveLength(1);
    await a.bus.registry.claim('label', holder('s1'));
    expect(await b.bus.registry.lookup('label')).toStrictEqual({ state: 'unknown' });
    await a.bus.close();
    await b.bus.close();
  });

  test('attaching a node id twice throws', async () => {
    const hub = new MemoryHub();
    hub.attach('x', () => {});
    expect(() => hub.attach('x', () => {})).toThrow(/already attached/);
    const first = await node('dup', hub);
    const second = new MemoryBus('dup', hub);
    await expect(second.subscribe({ message: () => {} })).rejects.toThrow(/already attached/);
    // The failed bus cleaning up must not detach the node that holds the id.
    await second.close();
    new MemoryBus('sender', hub).publish('dup', message);
    expect(first.got).toHaveLength(1);
    // Once the first closes, the id is free again.
    await first.bus.close();
    const third = new MemoryBus('dup', hub);
    await expect(third.subscribe({ message: () => {} })).resolves.toBeUndefined();
    await third.close();
  });

  test('subscribing the same bus twice throws', async () => {
    const bus = new MemoryBus('twice');
    await bus.subscribe({ message: () => {} });
    await expect(bus.subscribe({ message: () => {} })).rejects.toThrow(/twice/);
    await bus.close();
  });

  test('close() before subscribe is a no-op and does not detach another bus with the same id', async () => {
    const hub = new MemoryHub();
    const live = await node('n', hub);
    const idle = new MemoryBus('n', hub);
    await idle.close();
    new MemoryBus('p', hub).publish('n', message);
    expect(live.got).toHaveLength(1);
    await live.bus.close();
  });

  test('is always up; leaseTtlMs comes from the hub', () => {
    const bus = new MemoryBus('x', new MemoryHub({ leaseTtlMs: 1234 }));
    expect(bus.isUp()).toBe(true);
    expect(bus.leaseTtlMs).toBe(1234);
    expect(new MemoryBus('y').leaseTtlMs).toBe(10_000);
  });
});

describe('MemoryHub offline memory', () => {
  let now = 1_000_000;
  let spy: jest.SpyInstance<number, []>;
  beforeEach(() => {
    now = 1_000_000;
    spy = jest.spyOn(Date, 'now').mockImplementation(() => now);
  });
  afterEach(() => {
    spy.mockRestore();
  });

  test('a released label is offline for offlineMemoryMs (inclusive), then unknown', async () => {
    const hub = new MemoryHub({ offlineMemoryMs: 1000 });
    await hub.registry.claim('l', holder('s'));
    await hub.registry.release('l', 's');
    now += 1000;
    expect(await hub.registry.lookup('l')).toStrictEqual({ state: 'offline' });
    now += 1;
    expect(await hub.registry.lookup('l')).toStrictEqual({ state: 'unknown' });
    // Forgotten for good, even if the clock went back.
    now -= 1000;
    expect(await hub.registry.lookup('l')).toStrictEqual({ state: 'unknown' });
  });

  test('a bound name stays offline after the label memory expires', async () => {
    const hub = new MemoryHub({ offlineMemoryMs: 10 });
    await hub.registry.bindName('app', 'k');
    await hub.registry.claim('app', holder('s'));
    await hub.registry.release('app', 's');
    now += 11;
    expect(await hub.registry.lookup('app')).toStrictEqual({ state: 'offline' });
  });

  test('the default memory is 24 hours', async () => {
    const hub = new MemoryHub();
    await hub.registry.claim('l', holder('s'));
    await hub.registry.release('l', 's');
    now += 24 * 60 * 60 * 1000;
    expect(await hub.registry.lookup('l')).toStrictEqual({ state: 'offline' });
    now += 1;
    expect(await hub.registry.lookup('l')).toStrictEqual({ state: 'unknown' });
  });

  test('maxOfflineLabels: the oldest released labels are forgotten first', async () => {
    const hub = new MemoryHub({ maxOfflineLabels: 2 });
    const r = hub.registry;
    for (const l of ['l1', 'l2']) {
      await r.claim(l, holder(`s-${l}`));
      await r.release(l, `s-${l}`);
    }
    // l1 comes back and goes again: now it is the newest, l2 the oldest.
    await r.claim('l1', holder('s-l1b'));
    await r.release('l1', 's-l1b');
    await r.claim('l3', holder('s-l3'));
    await r.release('l3', 's-l3');
    expect(await r.lookup('l2')).toStrictEqual({ state: 'unknown' });
    expect(await r.lookup('l1')).toStrictEqual({ state: 'offline' });
    expect(await r.lookup('l3')).toStrictEqual({ state: 'offline' });
    // Online labels do not count against the limit.
    await r.claim('l4', holder('s-l4'));
    expect(await r.lookup('l1')).toStrictEqual({ state: 'offline' });
    expect(await r.lookup('l4')).toStrictEqual({ state: 'online', holder: holder('s-l4') });
  });
});

describe('MemoryHub offline memory on the real clock', () => {
  test('with a tiny offlineMemoryMs the label turns unknown soon after release', async () => {
    const hub = new MemoryHub({ offlineMemoryMs: 5 });
    await hub.registry.claim('l', holder('s'));
    await hub.registry.release('l', 's');
    const releasedAt = Date.now();
    const deadline = releasedAt + 2000;
    let state = (await hub.registry.lookup('l')).state;
    while (state !== 'unknown') {
      if (Date.now() > deadline) throw new Error('label never expired');
      expect(state).toBe('offline');
      await new Promise((r) => setImmediate(r));
      state = (await hub.registry.lookup('l')).state;
    }
    expect(Date.now() - releasedAt).toBeGreaterThanOrEqual(5);
  });
});

describe('MemoryHub name bindings', () => {
  test('maxNames bounds the table: a new name beyond it is refused, existing ones still resolve', async () => {
    const hub = new MemoryHub({ maxNames: 2 });
    expect(await hub.registry.bindName('a', 'k1')).toBe('k1');
    expect(await hub.registry.bindName('b', 'k2')).toBe('k2');
    await expect(hub.registry.bindName('c', 'k3')).rejects.toMatchObject({ code: 'BURROW_ERR_NAME_LIMIT' });
    expect(await hub.registry.bindName('a', 'k3')).toBe('k1');
    expect(await hub.registry.bindName('b', 'k2')).toBe('k2');
  });

  test('initial bindings are loaded and new ones reported once, before they take effect', async () => {
    const seen: [string, string][] = [];
    const hub = new MemoryHub({ names: { initial: [['old', 'k0']], onBind: (n, k) => seen.push([n, k]) } });
    expect(await hub.registry.bindName('old', 'k9')).toBe('k0');
    expect(await hub.registry.bindName('new', 'k1')).toBe('k1');
    expect(await hub.registry.bindName('new', 'k1')).toBe('k1');
    expect(seen).toEqual([['new', 'k1']]);
    const failing = new MemoryHub({
      names: {
        initial: [],
        onBind: () => {
          throw new Error('disk full');
        },
      },
    });
    await expect(failing.registry.bindName('x', 'k1')).rejects.toThrow('disk full');
    expect(await failing.registry.lookup('x')).toEqual({ state: 'unknown' });
  });
});
