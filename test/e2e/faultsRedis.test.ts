/**
 * Fault injection between relay nodes and Redis: two relays in this process, each dialling one
 * real redis-server through its own FaultProxy, and an agent on node A. The Redis connections of
 * one node (the holder A, or the ingress B) are cut, reset or blackholed while requests enter
 * through A (same node) and through B (across the bus). Every case checks, with its bound in its
 * name: same-node traffic never notices; the cross-node request in flight gets a coded 502/503
 * and never waits for the request timeout, and the holder lets go of its half (the app sees the
 * request aborted); cross-node requests sent during the fault are answered within the bound too
 * (200, or a coded 502/503); cross-node traffic answers 200 again within a bound of the fault's
 * end; no stream is left on either node. Then the bus health check on its own.
 */
import { EventEmitter } from 'node:events';
import { RedisBus } from '@burrow/bus';
import type { Relay } from '@burrow/relay';
import { peerProbePeriodMs } from '../../apps/relay/src/peerWatch';
import { FaultProxy } from '../faultProxy';
import { cleanup, cleanups, request, startApp, startRelay, startTunnel, waitFor } from '../kit';
import { type RedisServer, startRedis } from '../redis';

afterEach(cleanup);

const LEASE_TTL_MS = 1500;
/** Far above every bound below: a bound met is never the request timeout answering. */
const REQUEST_TIMEOUT_MS = 6000;
/** Each Redis connection is PINGed this often and dropped when silent for as long. */
const HEALTH_MS = 300;
/** After a silent subscriber a node stays away this long (two of the peers' probe periods, as the relay sets it). */
const REJOIN_DELAY_MS = 2 * peerProbePeriodMs(LEASE_TTL_MS);
/** A cut or reset is seen at once: the request in flight is answered within this. */
const CUT_BOUND_MS = 1000;
/** A blackhole is found by the health check (≤ 2 × HEALTH_MS) and then by the other node's probe. */
const STALL_BOUND_MS = 2000;
/** Any cross-node request sent during the fault is answered within this. */
const DURING_BOUND_MS = 4000;
/** Cross-node traffic answers 200 again within this of the fault's end. */
const BACK_BOUND_MS = 3000;

type FaultKind = 'cut' | 'reset' | 'stall';

let nodeSeq = 0;

interface Node {
  readonly relay: Relay;
  readonly port: number;
  readonly proxy: FaultProxy;
}

function redisBus(nodeId: string, port: number): RedisBus {
  return new RedisBus({
    nodeId,
    url: `redis://127.0.0.1:${port}`,
    leaseTtlMs: LEASE_TTL_MS,
    commandTimeoutMs: HEALTH_MS,
    healthCheckMs: HEALTH_MS,
    rejoinDelayMs: REJOIN_DELAY_MS,
  });
}

/** A relay whose Redis connections go through a fault proxy of its own. */
async function node(redis: RedisServer): Promise<Node> {
  const proxy = await FaultProxy.start({ targetPort: redis.port });
  cleanups.push(() => proxy.close());
  const nodeId = `fr${++nodeSeq}-${process.pid}`;
  const r = await startRelay({ nodeId, leaseTtlMs: LEASE_TTL_MS, requestTimeoutMs: REQUEST_TIMEOUT_MS }, redisBus(nodeId, proxy.port));
  return { relay: r.relay, port: r.port, proxy };
}

/** The local app: /ok answers at once; POST /park holds its answer (no head yet) until the request goes away. */
async function app() {
  const events = new EventEmitter();
  const parked = new Set<string>();
  const { port } = await startApp((req, res) => {
    const url = new URL(req.url ?? '/', 'http://app');
    const id = url.searchParams.get('id') ?? '';
    res.on('close', () => {
      if (!res.writableFinished) events.emit('aborted', id);
    });
    req.resume();
    if (url.pathname === '/park') {
      parked.add(id);
      return;
    }
    res.end('ok');
  });
  return {
    port,
    parked: (id: string): Promise<void> => waitFor(() => parked.has(id), 3000, `request ${id} parked at the app`),
    aborted: (id: string): Promise<number> => new Promise((resolve) => events.on('aborted', (which: string) => which === id && resolve(Date.now()))),
  };
}

interface Answer {
  readonly status: number;
  readonly code: string | undefined;
  readonly ms: number;
}

/** A request that records how it was answered and how long it took; a transport error is status 0. */
async function timed(port: number, host: string, options: Parameters<typeof request>[2] = {}): Promise<Answer> {
  const started = Date.now();
  try {
    const r = await request(port, host, options);
    return { status: r.status, code: r.headers['x-burrow-error'] as string | undefined, ms: Date.now() - started };
  } catch {
    return { status: 0, code: undefined, ms: Date.now() - started };
  }
}

/** Sequential GETs until stopped. */
function loop(port: number, host: string) {
  const answers: Answer[] = [];
  let stop = false;
  const done = (async () => {
    while (!stop) {
      answers.push(await timed(port, host, { path: '/ok' }));
      await new Promise((r) => setTimeout(r, 20));
    }
  })();
  return {
    async stop(): Promise<Answer[]> {
      stop = true;
      await done;
      return answers;
    },
  };
}

const show = (answers: readonly Answer[]): string => answers.map((a) => `${a.status}${a.code !== undefined ? ` ${a.code}` : ''} (${a.ms} ms)`).join(', ');

/** What a cross-node request may get while Redis is out of reach for one node: its answer, or a precise refusal. */
const CODED: Readonly<Record<number, string | undefined>> = { 200: undefined, 502: 'BURROW_ERR_NODE_UNREACHABLE', 503: 'BURROW_ERR_BUS_UNAVAILABLE' };

function applyFault(proxy: FaultProxy, fault: FaultKind): void {
  if (fault === 'cut') proxy.cut();
  else if (fault === 'reset') proxy.reset();
  // The connections in place and every new one: Redis is out of reach for this node until heal().
  else proxy.stall(true);
}

const boundOf = (fault: FaultKind): number => (fault === 'stall' ? STALL_BOUND_MS : CUT_BOUND_MS);

describe('faults between relay nodes and Redis', () => {
  let redis: RedisServer;
  beforeAll(async () => {
    redis = await startRedis();
  });
  afterAll(async () => {
    await redis.stop();
  });

  const CASES = (['cut', 'reset', 'stall'] as const).flatMap((fault) =>
    (['holder', 'ingress'] as const).map((faulted) => [fault, faulted, boundOf(fault), DURING_BOUND_MS, BACK_BOUND_MS] as const),
  );

  test.each(CASES)(
    '%s of the %s node’s Redis connections: same-node traffic untouched; the cross-node request in flight gets a coded 502/503 within %d ms and the holder lets go of it; requests during the fault answered within %d ms; cross-node 200 again within %d ms',
    async (fault, faulted) => {
      const local = await app();
      const a = await node(redis);
      const b = await node(redis);
      const tunnel = await startTunnel(`http://localhost:${a.port}`, local.port);
      const hostA = `${tunnel.label}.localhost:${a.port}`;
      const hostB = `${tunnel.label}.localhost:${b.port}`;
      expect((await timed(b.port, hostB, { path: '/ok' })).status).toBe(200);
      const target = faulted === 'holder' ? a : b;

      const sameNode = loop(a.port, hostA);
      // A POST (never sent twice) across the bus, parked at the app before any response head.
      const inFlight = timed(b.port, hostB, { method: 'POST', path: '/park?id=x', body: 'hello' });
      await local.parked('x');
      let abortedAt: number | undefined;
      void local.aborted('x').then((at) => {
        abortedAt = at;
      });
      const faultAt = Date.now();
      applyFault(target.proxy, fault);
      const crossNode = loop(b.port, hostB);

      const answer = await inFlight;
      // The ingress's own Redis is gone: 503. The holder's is gone: the ingress finds that node unreachable (502),
      // unless the holder's own word (it could not reach Redis: 503) comes first.
      if (faulted === 'ingress') expect([answer.status, answer.code]).toEqual([503, 'BURROW_ERR_BUS_UNAVAILABLE']);
      else
        expect([
          [502, 'BURROW_ERR_NODE_UNREACHABLE'],
          [503, 'BURROW_ERR_BUS_UNAVAILABLE'],
        ]).toContainEqual([answer.status, answer.code]);
      expect(answer.ms).toBeLessThan(boundOf(fault));

      if (fault === 'stall') target.proxy.heal();
      const endedAt = Date.now();
      await waitFor(async () => (await timed(b.port, hostB, { path: '/ok' })).status === 200, BACK_BOUND_MS, 'a cross-node 200 again');
      // The holder let go of the parked request too (told by the ingress, or finding it out itself).
      await waitFor(() => abortedAt !== undefined, BACK_BOUND_MS, 'the parked request aborted at the app');
      expect((abortedAt as number) - endedAt).toBeLessThan(BACK_BOUND_MS);
      if (process.env.BURROW_FAULT_TIMINGS !== undefined) {
        console.log(fault, faulted, { answer, aborted: (abortedAt as number) - faultAt, back: Date.now() - endedAt });
      }

      const during = await crossNode.stop();
      const same = await sameNode.stop();
      expect(same.length).toBeGreaterThan(0);
      expect(show(same.filter((x) => x.status !== 200))).toBe('');
      expect(during.length).toBeGreaterThan(0);
      expect(show(during.filter((x) => !(x.status in CODED) || CODED[x.status] !== x.code || x.ms >= DURING_BOUND_MS))).toBe('');
      if (process.env.BURROW_FAULT_TIMINGS !== undefined) console.log(fault, faulted, 'during:', show(during));
      await waitFor(
        () => [a, b].every((n) => n.relay.stats().ingressStreams === 0 && n.relay.stats().agentStreams === 0),
        3000,
        'streams back to 0 on both nodes',
      );
    },
  );
});

describe('the Redis bus health check', () => {
  let redis: RedisServer;
  beforeAll(async () => {
    redis = await startRedis();
  });
  afterAll(async () => {
    await redis.stop();
  });

  test(`a blackholed Redis: the bus reports itself down within 2 × healthCheckMs (${2 * HEALTH_MS} ms, bound 1.5 s), another node sees it unsubscribed, it stays away ${REJOIN_DELAY_MS} ms after heal(), then is back`, async () => {
    const proxy = await FaultProxy.start({ targetPort: redis.port });
    cleanups.push(() => proxy.close());
    const id = `hc${++nodeSeq}-${process.pid}`;
    const bus = redisBus(id, proxy.port);
    const changes: { up: boolean; at: number }[] = [];
    await bus.subscribe({ message: () => {}, connectionChanged: (up) => changes.push({ up, at: Date.now() }) });
    cleanups.push(() => bus.close());
    const other = redisBus(`${id}-other`, redis.port);
    await other.connect();
    cleanups.push(() => other.close());
    expect(await other.absentNodes([id])).toEqual(new Set());

    const stalledAt = Date.now();
    proxy.stall(true);
    await waitFor(() => !bus.isUp(), 1500, 'the bus to report itself down');
    expect(Date.now() - stalledAt).toBeLessThan(1500);
    // Its silent subscription was dropped: Redis no longer counts it as listening.
    await waitFor(async () => (await other.absentNodes([id])).has(id), 1500, 'the node seen unsubscribed');

    const healedAt = Date.now();
    proxy.heal();
    await waitFor(() => bus.isUp(), 3000, 'the bus back up');
    const backAt = Date.now();
    // It rejoined no sooner than the delay after it could have: every prober had a chance to see it gone.
    expect(backAt - healedAt).toBeGreaterThanOrEqual(REJOIN_DELAY_MS);
    expect(backAt - healedAt).toBeLessThan(3000);
    expect(await other.absentNodes([id])).toEqual(new Set());
    expect(changes.map((c) => c.up)).toEqual([false, true]);
    // Commands work on the new connection: nothing left out of step by the bytes the blackhole ate.
    expect(await bus.registry.lookup('no-such-label')).toEqual({ state: 'unknown' });
  });

  test('a cut (FIN) is not a silence: the subscriber comes back at once, without the rejoin delay', async () => {
    const proxy = await FaultProxy.start({ targetPort: redis.port });
    cleanups.push(() => proxy.close());
    const id = `hc${++nodeSeq}-${process.pid}`;
    const bus = redisBus(id, proxy.port);
    const changes: { up: boolean; at: number }[] = [];
    await bus.subscribe({ message: () => {}, connectionChanged: (up) => changes.push({ up, at: Date.now() }) });
    cleanups.push(() => bus.close());
    proxy.cut();
    await waitFor(() => changes.length === 2, 2000, 'down and up again');
    expect(changes.map((c) => c.up)).toEqual([false, true]);
    // Back within the first redial (50 ms) and a handshake: well under the rejoin delay.
    expect((changes[1]?.at ?? 0) - (changes[0]?.at ?? 0)).toBeLessThan(REJOIN_DELAY_MS);
  });
});
