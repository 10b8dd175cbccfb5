/**
 * The soak's judges, without any process: how the ledger attributes failures to fault windows
 * (bench/soak/ledger.ts), how the memory verdict reads a curve (bench/soak/memory.ts), and how
 * the options are read (bench/soak/options.ts). Each case shows the judge can say no.
 */
import { GRACE_MS, Ledger, OFFLINE_SLACK_MS, type OpOutcome } from '../bench/soak/ledger';
import { levelling, type MemoryPoint } from '../bench/soak/memory';
import { parseDuration, parseSoakOptions } from '../bench/soak/options';

const failed: OpOutcome = { ok: false, error: 'HTTP 502 BURROW_ERR_AGENT_DISCONNECTED', bytes: 0, units: 1 };
const wrongBytes: OpOutcome = { ok: false, error: 'echo differs', defect: true, bytes: 10, units: 1 };

/** A ledger whose clock is set by hand: `at(ms)` moves it. */
function books(): { ledger: Ledger; at(ms: number): void } {
  const ledger = new Ledger();
  let now = 0;
  ledger.now = () => now;
  return {
    ledger,
    at: (ms) => {
      now = ms;
    },
  };
}

const op = (tunnel: string, start: number, end: number, crossNode = false) =>
  ({ kind: 'get', tunnel, ingress: 'a', holder: crossNode ? 'b' : 'a', crossNode, start, end }) as const;

describe('attribution of failures (ledger)', () => {
  test('a failure overlapping its tunnel’s fault window, or the time until its agent is back plus the grace, is expected; after that it is not', () => {
    const { ledger, at } = books();
    at(1000);
    const w = ledger.openWindow('stall', 't01', 'test');
    at(1500);
    ledger.agentOffline('t01', 'no frame');
    at(4000);
    ledger.heal(w);
    at(4500);
    ledger.agentOnline('t01', true);
    ledger.record(op('t01', 900, 1100), failed); // overlaps the start
    ledger.record(op('t01', 4400 + GRACE_MS, 4600 + GRACE_MS), failed); // within the grace after the agent came back
    ledger.record(op('t01', 4600 + GRACE_MS, 4700 + GRACE_MS), failed); // after it
    ledger.record(op('t01', 200, 800), failed); // before the window
    const c = ledger.classify(10_000);
    expect(c.expected.map((f) => f.start)).toEqual([900, 4400 + GRACE_MS]);
    expect(c.unexpected.map((f) => f.start)).toEqual([4600 + GRACE_MS, 200]);
    expect(c.unexplainedOffline).toEqual([]);
    expect(ledger.counts.get).toMatchObject({ total: 4, ok: 0, failed: 4 });
  });

  test('a failure on another tunnel (the control group) during a fault is unexpected', () => {
    const { ledger, at } = books();
    at(1000);
    const w = ledger.openWindow('reset', 't01', 'test');
    ledger.heal(w);
    ledger.record(op('t02', 900, 1100), failed);
    expect(ledger.classify(5000).unexpected).toHaveLength(1);
  });

  test('wrong bytes are unexpected even inside a fault window', () => {
    const { ledger, at } = books();
    at(1000);
    ledger.openWindow('slow', 't01', 'test');
    ledger.record(op('t01', 1100, 1200), wrongBytes);
    const c = ledger.classify(5000);
    expect(c.expected).toEqual([]);
    expect(c.unexpected[0]).toMatchObject({ tunnel: 't01', defect: true });
  });

  test('a Redis window excuses cross-node failures until the bus is back plus the grace, never same-node ones', () => {
    const { ledger, at } = books();
    at(1000);
    const w = ledger.openWindow('redis', 'bus', 'test');
    at(3000);
    ledger.heal(w);
    w.recoveredAt = 3500;
    ledger.record(op('t05', 2000, 2010, true), failed);
    ledger.record(op('t05', 3400 + GRACE_MS, 3600 + GRACE_MS, true), failed);
    ledger.record(op('t05', 3600 + GRACE_MS, 3700 + GRACE_MS, true), failed);
    ledger.record(op('t06', 2000, 2010, false), failed);
    const c = ledger.classify(10_000);
    expect(c.expected.map((f) => [f.tunnel, f.start])).toEqual([
      ['t05', 2000],
      ['t05', 3400 + GRACE_MS],
    ]);
    expect(c.unexpected.map((f) => [f.tunnel, f.start])).toEqual([
      ['t05', 3600 + GRACE_MS],
      ['t06', 2000],
    ]);
  });

  test('an agent going offline outside every window of its tunnel is unexplained; one going offline soon after a heal is not', () => {
    const { ledger, at } = books();
    at(1000);
    const w = ledger.openWindow('stall', 't01', 'test');
    at(2000);
    ledger.heal(w);
    at(2000 + OFFLINE_SLACK_MS - 100);
    ledger.agentOffline('t01', 'late notice');
    at(7000);
    ledger.agentOnline('t01', true);
    at(9000);
    ledger.agentOffline('t02', 'out of the blue');
    expect(ledger.isDisturbed('t02')).toBe(true);
    at(9500);
    ledger.agentOnline('t02', true);
    expect(ledger.isDisturbed('t02')).toBe(false);
    const c = ledger.classify(10_000);
    expect(c.explainedOffline).toBe(1);
    expect(c.unexplainedOffline.map((o) => o.tunnel)).toEqual(['t02']);
    expect(ledger.reconnections).toEqual({ t01: 1, t02: 1 });
  });
});

describe('memory verdict', () => {
  const MiB = 1024 * 1024;
  /** A sample every 5 s for `minutes`: heap and external after GC, RSS, as functions of t. */
  const curve = (
    minutes: number,
    heap: (t: number) => number,
    external: (t: number) => number = () => 2 * MiB,
    rss: (t: number) => number = () => 100 * MiB,
  ) => {
    const out: MemoryPoint[] = [];
    for (let t = 0; t <= minutes * 60_000; t += 5000) {
      const h = heap(t);
      const e = external(t);
      out.push({
        t,
        phase: t === 0 ? 'before' : 'traffic',
        rss: rss(t),
        heapUsed: h,
        heapTotal: 2 * h,
        liveHeap: h,
        liveExternal: e,
        live: h + e,
        rssAfterGc: rss(t),
        gcMs: 5,
        sockets: 10,
        timers: 0,
        handles: 12,
        cpuMs: t / 10,
        streamsIngress: 3,
        streamsAgent: 3,
        sessions: 10,
      });
    }
    return out;
  };
  /** 0, 1, 2, 0, 1, 2, …: sampling noise. */
  const wobble = (t: number): number => (t / 5000) % 3;

  test('a curve that rose during warm-up and then stays flat, with bodies in flight coming and going, has levelled off', () => {
    const v = levelling(
      curve(
        10,
        (t) => Math.min(20, 12 + t / 10_000) * MiB + wobble(t) * 0.3 * MiB,
        (t) => (2 + wobble(t) * 4) * MiB,
      ),
      600_000,
      10,
    );
    expect(v).toMatchObject({ judged: true, passed: true });
    expect(v.measures?.map((m) => [m.name, m.ok])).toEqual([
      ['heap', true],
      ['external', true],
      ['rss', true],
    ]);
  });

  test('a heap that keeps growing fails; so do a rising floor of external memory and a growing RSS', () => {
    const heap = levelling(
      curve(10, (t) => (20 + t / 20_000) * MiB),
      600_000,
      10,
    );
    expect(heap).toMatchObject({ judged: true, passed: false });
    expect(heap.reason).toMatch(/^still growing: heap \+/);
    const external = levelling(
      curve(
        10,
        () => 20 * MiB,
        (t) => (2 + t / 30_000 + wobble(t) * 4) * MiB,
      ),
      600_000,
      10,
    );
    expect(external).toMatchObject({ judged: true, passed: false });
    expect(external.reason).toMatch(/^still growing: external \+/);
    const rss = levelling(
      curve(
        10,
        () => 20 * MiB,
        () => 2 * MiB,
        (t) => (80 + t / 5000) * MiB,
      ),
      600_000,
      10,
    );
    expect(rss).toMatchObject({ judged: true, passed: false });
    expect(rss.reason).toMatch(/^still growing: rss \+/);
  });

  test('a run too short is not judged', () => {
    expect(
      levelling(
        curve(0.5, () => 20 * MiB),
        30_000,
        10,
      ),
    ).toMatchObject({ judged: false, passed: true });
  });
});

describe('options', () => {
  test('durations', () => {
    expect(parseDuration('10m')).toBe(600_000);
    expect(parseDuration('90s')).toBe(90_000);
    expect(parseDuration('1m30s')).toBe(90_000);
    expect(parseDuration('500ms')).toBe(500);
    expect(parseDuration('45')).toBe(45_000);
    expect(() => parseDuration('10 minutes')).toThrow(/not a duration/);
    expect(() => parseDuration('m')).toThrow(/not a duration/);
  });

  test('flags over BURROW_SOAK_* env over defaults', () => {
    const parsed = parseSoakOptions(['--tunnels', '8', '--json=/tmp/x.json'], { BURROW_SOAK_DURATION: '3m', BURROW_SOAK_TUNNELS: '4', BURROW_SOAK_SEED: '7' });
    expect(parsed).toMatchObject({ kind: 'run', options: { durationMs: 180_000, tunnels: 8, jsonPath: '/tmp/x.json', seed: 7, nodes: 2 } });
    expect(parseSoakOptions([], {})).toMatchObject({ kind: 'run', options: { durationMs: 600_000, tunnels: 20 } });
    expect(() => parseSoakOptions(['--tunnels', '1'], {})).toThrow(/at least 2/);
    expect(() => parseSoakOptions(['--bogus'], {})).toThrow(/unknown option/);
    expect(parseSoakOptions(['--help'], {})).toEqual({ kind: 'help' });
  });
});
