/**
 * The Bus contract: what every Bus implementation (MemoryBus now, Redis later) must do.
 * Not a test file itself: a *.test.ts file calls busContract(name, makeBuses) to run it.
 *
 * makeBuses returns two nodes `a` and `b` on one medium (one hub, one Redis), NOT yet subscribed
 * (the contract subscribes them), and a close() that releases everything. Labels, names and
 * session ids are unique per test, so a shared medium (a real Redis) needs no flushing.
 *
 * Deliberately not in the contract (implementation-specific):
 * - synchronous delivery and pass-by-reference payloads (memory only).
 * - how long released labels are remembered as offline (options of each implementation).
 * - lease expiry without renewal (Redis only: in-process leases live as long as the process).
 */
import { randomBytes } from 'node:crypto';
import type { Bus, BusMessage, Holder, UndeliveredReason } from '@burrow/bus';
import { FLAG_FIN, FrameType } from '@burrow/protocol';

export interface BusPair {
  readonly a: Bus;
  readonly b: Bus;
  close(): Promise<void>;
}

/** Messages received by one node, with a way to wait for the nth (no fixed sleeps). */
class Inbox {
  readonly messages: BusMessage[] = [];
  readonly undelivered: Array<{ nodeId: string; messages: readonly BusMessage[]; reason: UndeliveredReason }> = [];
  readonly handlers = {
    message: (m: BusMessage): void => this.handler(m),
    undelivered: (nodeId: string, messages: readonly BusMessage[], reason: UndeliveredReason): void => {
      this.undelivered.push({ nodeId, messages, reason });
    },
  };
  private waiters: Array<{ n: number; resolve: () => void }> = [];
  readonly handler = (m: BusMessage): void => {
    this.messages.push(m);
    this.waiters = this.waiters.filter((w) => {
      if (this.messages.length < w.n) return true;
      w.resolve();
      return false;
    });
  };
  /** Resolves once `n` messages have arrived; rejects after `ms`. */
  waitFor(n: number, ms = 2000): Promise<void> {
    if (this.messages.length >= n) return Promise.resolve();
    return new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`only ${this.messages.length} of ${n} messages arrived within ${ms} ms`)), ms);
      this.waiters.push({
        n,
        resolve: () => {
          clearTimeout(timer);
          resolve();
        },
      });
    });
  }
}

const uniq = (prefix: string): string => `${prefix}-${randomBytes(6).toString('hex')}`;
/** Port numbers for the TCP port tests: a random base per process, then fresh ones per test (a shared Redis needs no flushing). */
let nextPortBase = 1000 + Math.floor(Math.random() * 50_000);

export function busContract(name: string, makeBuses: () => Promise<BusPair>): void {
  describe(`Bus contract: ${name}`, () => {
    let pair: BusPair;
    let inboxA: Inbox;
    let inboxB: Inbox;

    beforeEach(async () => {
      pair = await makeBuses();
      inboxA = new Inbox();
      inboxB = new Inbox();
      await pair.a.subscribe(inboxA.handlers);
      await pair.b.subscribe(inboxB.handlers);
    });

    afterEach(async () => {
      await pair.close();
    });

    test('the two nodes have distinct ids', () => {
      expect(typeof pair.a.nodeId).toBe('string');
      expect(pair.a.nodeId.length).toBeGreaterThan(0);
      expect(pair.a.nodeId).not.toBe(pair.b.nodeId);
    });

    describe('publish / subscribe', () => {
      test('a toSession message published to b reaches b only, payload bytes intact', async () => {
        const payload = Buffer.from([0x00, 0xff, 0x10, 0x80, 0x7f, 0x0a, 0x0d, 0x00]);
        const message: BusMessage = {
          kind: 'toSession',
          sessionId: uniq('session'),
          replyNode: pair.a.nodeId,
          frame: { type: FrameType.DATA, flags: FLAG_FIN, streamId: 0xffff_fffd, payload },
        };
        pair.a.publish(pair.b.nodeId, message);
        await inboxB.waitFor(1);
        expect(inboxB.messages).toHaveLength(1);
        const got = inboxB.messages[0];
        if (got?.kind !== 'toSession') throw new Error(`unexpected message ${JSON.stringify(got)}`);
        expect(got.sessionId).toBe(message.sessionId);
        expect(got.replyNode).toBe(pair.a.nodeId);
        expect(got.frame.type).toBe(FrameType.DATA);
        expect(got.frame.flags).toBe(FLAG_FIN);
        expect(got.frame.streamId).toBe(0xffff_fffd);
        expect(Buffer.isBuffer(got.frame.payload)).toBe(true);
        expect(got.frame.payload.toString('hex')).toBe('00ff10807f0a0d00');
        expect(inboxA.messages).toHaveLength(0);
      });

      test('toIngress and sessionReplaced messages arrive, in publish order, both directions', async () => {
        const big = Buffer.alloc(70_000);
        for (let i = 0; i < big.length; i++) big[i] = (i * 31) & 0xff;
        const toA: BusMessage[] = [
          { kind: 'toIngress', frame: { type: FrameType.RESPONSE, flags: 0, streamId: 1, payload: Buffer.from('head') } },
          { kind: 'toIngress', frame: { type: FrameType.DATA, flags: 0, streamId: 1, payload: big } },
          { kind: 'toIngress', frame: { type: FrameType.END, flags: 0, streamId: 1, payload: Buffer.alloc(0) } },
        ];
        const replaced: BusMessage = { kind: 'sessionReplaced', sessionId: uniq('session') };
        for (const m of toA) pair.b.publish(pair.a.nodeId, m);
        pair.a.publish(pair.b.nodeId, replaced);
        await inboxA.waitFor(3);
        await inboxB.waitFor(1);
        const plain = (m: BusMessage | undefined): unknown =>
          m?.kind === 'toIngress'
            ? { kind: m.kind, type: m.frame.type, flags: m.frame.flags, streamId: m.frame.streamId, payload: Buffer.from(m.frame.payload).toString('base64') }
            : m;
        expect(inboxA.messages.map(plain)).toStrictEqual(toA.map(plain));
        expect(inboxB.messages).toStrictEqual([replaced]);
      });

      test('a node does not receive what it publishes to the other', async () => {
        pair.a.publish(pair.b.nodeId, { kind: 'sessionReplaced', sessionId: 'x' });
        pair.b.publish(pair.b.nodeId, { kind: 'sessionReplaced', sessionId: 'marker' });
        await inboxB.waitFor(2);
        expect(inboxA.messages).toHaveLength(0);
      });

      test('many messages to one node arrive complete and in order', async () => {
        const n = 2000;
        for (let i = 0; i < n; i++) {
          const payload = Buffer.alloc(i % 300);
          payload.fill(i & 0xff);
          pair.a.publish(pair.b.nodeId, { kind: 'toIngress', frame: { type: FrameType.DATA, flags: 0, streamId: i + 1, payload } });
        }
        await inboxB.waitFor(n, 10_000);
        inboxB.messages.forEach((m, i) => {
          if (m.kind !== 'toIngress') throw new Error(`message ${i} is ${m.kind}`);
          expect(m.frame.streamId).toBe(i + 1);
          expect(m.frame.payload.length).toBe(i % 300);
          if (m.frame.payload.length > 0) expect(m.frame.payload[0]).toBe(i & 0xff);
        });
      });

      test('a message to a node nobody listens on is reported undelivered (no-listener), never delivered', async () => {
        const ghost = uniq('ghost-node');
        const message: BusMessage = { kind: 'sessionReplaced', sessionId: uniq('session') };
        pair.a.publish(ghost, message);
        expect(inboxA.undelivered).toHaveLength(0); // asynchronous, never inside publish()
        const deadline = Date.now() + 2000;
        while (inboxA.undelivered.length === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 5));
        expect(inboxA.undelivered).toHaveLength(1);
        expect(inboxA.undelivered[0]?.nodeId).toBe(ghost);
        expect(inboxA.undelivered[0]?.reason).toBe('no-listener');
        expect(inboxA.undelivered[0]?.messages).toStrictEqual([message]);
        expect(inboxB.messages).toHaveLength(0);
      });

      test('absentNodes names the nodes that do not listen, and a node once it closes', async () => {
        const ghost = uniq('ghost-node');
        expect(await pair.a.absentNodes([pair.a.nodeId, pair.b.nodeId, ghost])).toStrictEqual(new Set([ghost]));
        expect(await pair.a.absentNodes([])).toStrictEqual(new Set());
        await pair.b.close();
        expect(await pair.a.absentNodes([pair.b.nodeId])).toStrictEqual(new Set([pair.b.nodeId]));
      });

      test('stats() counts published, received and undelivered messages and their payload bytes', async () => {
        const zero = { published: 0, publishedBytes: 0, received: 0, receivedBytes: 0, undelivered: 0, errors: 0 };
        expect(pair.a.stats()).toMatchObject(zero);
        const frame = (n: number) => ({ type: FrameType.DATA, flags: 0, streamId: n, payload: Buffer.alloc(n) });
        pair.a.publish(pair.b.nodeId, { kind: 'toIngress', frame: frame(10) });
        pair.a.publish(pair.b.nodeId, { kind: 'toSession', sessionId: uniq('session'), replyNode: pair.a.nodeId, frame: frame(5) });
        pair.a.publish(pair.b.nodeId, { kind: 'sessionReplaced', sessionId: uniq('session') });
        pair.a.publish(uniq('ghost-node'), { kind: 'toIngress', frame: frame(3) });
        await inboxB.waitFor(3);
        const deadline = Date.now() + 2000;
        while (inboxA.undelivered.length === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 5));
        expect(pair.a.stats()).toMatchObject({ published: 4, publishedBytes: 18, received: 0, receivedBytes: 0, undelivered: 1 });
        expect(pair.b.stats()).toMatchObject({ published: 0, publishedBytes: 0, received: 3, receivedBytes: 15, undelivered: 0 });
      });

      test('the bus is up and has a positive lease period', () => {
        expect(pair.a.isUp()).toBe(true);
        expect(pair.a.leaseTtlMs).toBeGreaterThan(0);
      });
    });

    describe('registry', () => {
      const holder = (nodeId: string, sessionId = uniq('session'), keyId = uniq('key')): Holder => ({ nodeId, sessionId, keyId });

      test('claim then lookup from either node: online with the holder', async () => {
        const label = uniq('label');
        const h = holder(pair.a.nodeId);
        expect(await pair.a.registry.claim(label, h)).toBeUndefined();
        expect(await pair.a.registry.lookup(label)).toStrictEqual({ state: 'online', holder: h });
        expect(await pair.b.registry.lookup(label)).toStrictEqual({ state: 'online', holder: h });
      });

      test('a holder policy travels with the lease: claim, lookup and reclaim keep it', async () => {
        const label = uniq('label');
        const h: Holder = {
          ...holder(pair.a.nodeId),
          policy: { tenant: 't1', maxBodyBytes: 1000, requestsPerMinute: 60, access: { allowCidrs: ['10.0.0.0/8'], basicAuth: [{ user: 'u', sha256: 'x' }] } },
        };
        await pair.a.registry.claim(label, h);
        expect(await pair.b.registry.lookup(label)).toStrictEqual({ state: 'online', holder: h });
        const other = holder(pair.b.nodeId);
        expect(await pair.b.registry.claim(label, other)).toStrictEqual(h);
        const gone = uniq('label');
        expect(await pair.a.registry.renew([{ label: gone, holder: h }])).toStrictEqual(['reclaimed']);
        expect(await pair.b.registry.lookup(gone)).toStrictEqual({ state: 'online', holder: h });
      });

      test('a label never seen is unknown', async () => {
        expect(await pair.a.registry.lookup(uniq('never'))).toStrictEqual({ state: 'unknown' });
      });

      test('a claim by a second session returns the previous holder and takes over', async () => {
        const label = uniq('label');
        const first = holder(pair.a.nodeId);
        const second = holder(pair.b.nodeId, uniq('session'), first.keyId);
        await pair.a.registry.claim(label, first);
        expect(await pair.b.registry.claim(label, second)).toStrictEqual(first);
        expect(await pair.a.registry.lookup(label)).toStrictEqual({ state: 'online', holder: second });
      });

      test('a claim by the same session again returns undefined', async () => {
        const label = uniq('label');
        const h = holder(pair.a.nodeId);
        await pair.a.registry.claim(label, h);
        expect(await pair.a.registry.claim(label, { ...h })).toBeUndefined();
        expect(await pair.b.registry.lookup(label)).toStrictEqual({ state: 'online', holder: h });
      });

      test('release by the holder: the label looks offline, not unknown', async () => {
        const label = uniq('label');
        const h = holder(pair.a.nodeId);
        await pair.a.registry.claim(label, h);
        await pair.a.registry.release(label, h.sessionId);
        expect(await pair.a.registry.lookup(label)).toStrictEqual({ state: 'offline' });
        expect(await pair.b.registry.lookup(label)).toStrictEqual({ state: 'offline' });
      });

      test('release by a session that is not the holder is a no-op', async () => {
        const label = uniq('label');
        const first = holder(pair.a.nodeId);
        const second = holder(pair.b.nodeId);
        await pair.a.registry.claim(label, first);
        await pair.b.registry.claim(label, second);
        await pair.a.registry.release(label, first.sessionId); // replaced session cleaning up late
        expect(await pair.a.registry.lookup(label)).toStrictEqual({ state: 'online', holder: second });
        await pair.a.registry.release(uniq('label'), first.sessionId); // a label never claimed
        expect(await pair.b.registry.lookup(label)).toStrictEqual({ state: 'online', holder: second });
      });

      test('an offline label claimed again is online; a claim after release returns undefined', async () => {
        const label = uniq('label');
        const first = holder(pair.a.nodeId);
        await pair.a.registry.claim(label, first);
        await pair.a.registry.release(label, first.sessionId);
        const next = holder(pair.b.nodeId);
        expect(await pair.b.registry.claim(label, next)).toBeUndefined();
        expect(await pair.a.registry.lookup(label)).toStrictEqual({ state: 'online', holder: next });
      });

      test('labels are independent', async () => {
        const [l1, l2] = [uniq('label'), uniq('label')];
        const h = holder(pair.a.nodeId);
        await pair.a.registry.claim(l1, h);
        expect(await pair.a.registry.lookup(l2)).toStrictEqual({ state: 'unknown' });
        await pair.a.registry.release(l2, h.sessionId);
        expect(await pair.a.registry.lookup(l1)).toStrictEqual({ state: 'online', holder: h });
      });

      test('two concurrent claims by different sessions: exactly one of them reports the other as replaced', async () => {
        const label = uniq('label');
        const ha = holder(pair.a.nodeId);
        const hb = holder(pair.b.nodeId);
        const [ra, rb] = await Promise.all([pair.a.registry.claim(label, ha), pair.b.registry.claim(label, hb)]);
        const lookup = await pair.a.registry.lookup(label);
        if (ra === undefined) {
          expect(rb).toStrictEqual(ha);
          expect(lookup).toStrictEqual({ state: 'online', holder: hb });
        } else {
          expect(ra).toStrictEqual(hb);
          expect(rb).toBeUndefined();
          expect(lookup).toStrictEqual({ state: 'online', holder: ha });
        }
      });
    });

    describe('reconnect grace and renewal', () => {
      const holder = (nodeId: string, sessionId = uniq('session'), keyId = uniq('key')): Holder => ({ nodeId, sessionId, keyId });

      test('release with a grace: reconnecting until the grace ends, then offline', async () => {
        const label = uniq('label');
        const h = holder(pair.a.nodeId);
        await pair.a.registry.claim(label, h);
        const before = Date.now();
        await pair.a.registry.release(label, h.sessionId, 300);
        const during = await pair.b.registry.lookup(label);
        if (during.state !== 'reconnecting') throw new Error(`expected reconnecting, got ${JSON.stringify(during)}`);
        expect(during.untilMs).toBeGreaterThanOrEqual(before + 300 - 50);
        expect(during.untilMs).toBeLessThanOrEqual(Date.now() + 300 + 50);
        const deadline = Date.now() + 3000;
        let state = during.state as string;
        while (state === 'reconnecting' && Date.now() < deadline) {
          await new Promise((r) => setTimeout(r, 20));
          state = (await pair.a.registry.lookup(label)).state;
        }
        expect(state).toBe('offline');
      });

      test('a claim during the grace makes the label online again, and returns no previous holder', async () => {
        const label = uniq('label');
        const first = holder(pair.a.nodeId);
        await pair.a.registry.claim(label, first);
        await pair.a.registry.release(label, first.sessionId, 5000);
        const next = holder(pair.b.nodeId, uniq('session'), first.keyId);
        expect(await pair.b.registry.claim(label, next)).toBeUndefined();
        expect(await pair.a.registry.lookup(label)).toStrictEqual({ state: 'online', holder: next });
      });

      test('release without a grace is offline at once', async () => {
        const label = uniq('label');
        const h = holder(pair.a.nodeId);
        await pair.a.registry.claim(label, h);
        await pair.a.registry.release(label, h.sessionId, 0);
        expect(await pair.b.registry.lookup(label)).toStrictEqual({ state: 'offline' });
      });

      test('renew: renewed for its own lease, reclaimed where none is, lost where another session holds it', async () => {
        const [mine, gone, taken] = [uniq('label'), uniq('label'), uniq('label')];
        const h = holder(pair.a.nodeId);
        await pair.a.registry.claim(mine, h);
        await pair.a.registry.claim(taken, h);
        const other = holder(pair.b.nodeId);
        await pair.b.registry.claim(taken, other);
        const results = await pair.a.registry.renew([
          { label: mine, holder: h },
          { label: gone, holder: h },
          { label: taken, holder: h },
        ]);
        expect(results).toStrictEqual(['renewed', 'reclaimed', 'lost']);
        expect(await pair.b.registry.lookup(gone)).toStrictEqual({ state: 'online', holder: h });
        expect(await pair.b.registry.lookup(taken)).toStrictEqual({ state: 'online', holder: other });
        expect(await pair.a.registry.renew([])).toStrictEqual([]);
      });
    });

    describe('bindName', () => {
      test('the first key to bind a name owns it; later binders are told the owner', async () => {
        const name = uniq('app');
        const [k1, k2] = [uniq('key'), uniq('key')];
        expect(await pair.a.registry.bindName(name, k1)).toBe(k1);
        expect(await pair.b.registry.bindName(name, k2)).toBe(k1);
        expect(await pair.a.registry.bindName(name, k1)).toBe(k1);
        expect(await pair.b.registry.bindName(name, k2)).toBe(k1);
      });

      test('different names bind independently', async () => {
        const [n1, n2] = [uniq('app'), uniq('app')];
        const [k1, k2] = [uniq('key'), uniq('key')];
        expect(await pair.a.registry.bindName(n1, k1)).toBe(k1);
        expect(await pair.a.registry.bindName(n2, k2)).toBe(k2);
      });

      test('concurrent binds from both nodes agree on one owner', async () => {
        const name = uniq('app');
        const [k1, k2] = [uniq('key'), uniq('key')];
        const [r1, r2] = await Promise.all([pair.a.registry.bindName(name, k1), pair.b.registry.bindName(name, k2)]);
        expect(r1).toBe(r2);
        expect([k1, k2]).toContain(r1);
      });

      test('a bound name that no session holds looks offline, not unknown', async () => {
        const name = uniq('app');
        await pair.a.registry.bindName(name, uniq('key'));
        expect(await pair.b.registry.lookup(name)).toStrictEqual({ state: 'offline' });
      });
    });

    describe('TCP ports', () => {
      /** A range of port numbers no other test uses (the registry only stores numbers; nothing binds them). */
      const range = (n: number): { first: number; last: number } => {
        const first = nextPortBase;
        nextPortBase += n + 1;
        return { first, last: first + n - 1 };
      };

      test('a label gets the lowest free port; every node reads it; unallocated ports read undefined', async () => {
        const r = range(3);
        const label = uniq('label');
        expect(await pair.a.registry.allocatePort(label, uniq('session'), r)).toBe(r.first);
        expect(await pair.b.registry.portLabel(r.first)).toBe(label);
        expect(await pair.a.registry.portLabel(r.first + 1)).toBeUndefined();
      });

      test('a new session of the same label gets the same port back; other labels get the next free one; a full range gives undefined', async () => {
        const r = range(2);
        const [l1, l2, l3] = [uniq('label'), uniq('label'), uniq('label')];
        expect(await pair.a.registry.allocatePort(l1, uniq('session'), r)).toBe(r.first);
        expect(await pair.b.registry.allocatePort(l1, uniq('session'), r)).toBe(r.first);
        expect(await pair.b.registry.allocatePort(l2, uniq('session'), r)).toBe(r.last);
        expect(await pair.a.registry.allocatePort(l3, uniq('session'), r)).toBeUndefined();
      });

      test('release frees the port for others; a release by another session is a no-op', async () => {
        const r = range(1);
        const [l1, l2] = [uniq('label'), uniq('label')];
        const s1 = uniq('session');
        expect(await pair.a.registry.allocatePort(l1, s1, r)).toBe(r.first);
        await pair.b.registry.releasePort(r.first, uniq('session'));
        expect(await pair.a.registry.portLabel(r.first)).toBe(l1);
        await pair.b.registry.releasePort(r.first, s1);
        expect(await pair.a.registry.portLabel(r.first)).toBeUndefined();
        expect(await pair.b.registry.allocatePort(l2, uniq('session'), r)).toBe(r.first);
      });

      test('release with a keep period: the port still reads its label until it ends', async () => {
        const r = range(1);
        const label = uniq('label');
        const s1 = uniq('session');
        await pair.a.registry.allocatePort(label, s1, r);
        await pair.a.registry.releasePort(r.first, s1, 150);
        expect(await pair.b.registry.portLabel(r.first)).toBe(label);
        await new Promise((resolve) => setTimeout(resolve, 300));
        expect(await pair.b.registry.portLabel(r.first)).toBeUndefined();
      });

      test("a label's last port is preferred over a lower free one", async () => {
        const r = range(3);
        const [l1, l2] = [uniq('label'), uniq('label')];
        const [s1, s2] = [uniq('session'), uniq('session')];
        expect(await pair.a.registry.allocatePort(l2, s2, r)).toBe(r.first);
        expect(await pair.a.registry.allocatePort(l1, s1, r)).toBe(r.first + 1);
        await pair.a.registry.releasePort(r.first, s2);
        await pair.a.registry.releasePort(r.first + 1, s1);
        expect(await pair.b.registry.allocatePort(l1, uniq('session'), r)).toBe(r.first + 1);
      });

      test('renewPorts takes a port back that expired meanwhile, and leaves one another label holds', async () => {
        const r = range(2);
        const [l1, l2] = [uniq('label'), uniq('label')];
        const s1 = uniq('session');
        await pair.a.registry.allocatePort(l1, s1, r);
        await pair.a.registry.releasePort(r.first, s1);
        await pair.a.registry.renewPorts([{ port: r.first, label: l1, sessionId: s1 }]);
        expect(await pair.b.registry.portLabel(r.first)).toBe(l1);
        await pair.b.registry.allocatePort(l2, uniq('session'), { first: r.last, last: r.last });
        await pair.a.registry.renewPorts([{ port: r.last, label: l1, sessionId: s1 }]);
        expect(await pair.b.registry.portLabel(r.last)).toBe(l2);
      });

      test('concurrent allocations from both nodes never hand out one port twice', async () => {
        const r = range(8);
        const labels = Array.from({ length: 8 }, () => uniq('label'));
        const ports = await Promise.all(labels.map((l, i) => (i % 2 === 0 ? pair.a : pair.b).registry.allocatePort(l, uniq('session'), r)));
        expect(new Set(ports).size).toBe(8);
        for (const p of ports) expect(p).toBeGreaterThanOrEqual(r.first);
        expect(await pair.a.registry.allocatePort(uniq('label'), uniq('session'), r)).toBeUndefined();
      });
    });

    describe('close', () => {
      test('close() is idempotent', async () => {
        await expect(pair.a.close()).resolves.toBeUndefined();
        await expect(pair.a.close()).resolves.toBeUndefined();
        await expect(pair.b.close()).resolves.toBeUndefined();
      });

      test('a closed node no longer receives messages', async () => {
        await pair.b.close();
        pair.a.publish(pair.b.nodeId, { kind: 'sessionReplaced', sessionId: 'after-close' });
        // a publishes to itself as a marker: once it arrives, an earlier message to b would have too.
        pair.a.publish(pair.a.nodeId, { kind: 'sessionReplaced', sessionId: 'marker' });
        await inboxA.waitFor(1);
        expect(inboxB.messages).toHaveLength(0);
      });
    });
  });
}
