/**
 * The fault schedule: every `everyMs` one fault, the kinds in turn (cut, stall, redis, slow,
 * reset, …), each on a proxied tunnel that is not disturbed at the time (Redis: on the bus), with
 * its window opened in the ledger at injection and healed when the fault ends. Control tunnels
 * are never touched. stop() waits for every fault in progress to heal.
 *   cut    the agent's link ends with FIN both ways (a peer closing)
 *   reset  the link is destroyed with RST (a crash, a middlebox)
 *   stall  a blackhole for STALL_MS, new links too: the agent's silence watchdog must notice
 *   slow   SLOW_BYTES_PER_S each way plus SLOW_LATENCY_MS per chunk, for SLOW_MS
 *   redis  redis-server killed with SIGKILL, restarted empty after REDIS_DOWN_MS; the window
 *          closes when every node has the bus up and has renewed its leases again
 */
import type { FaultProxy } from '../../test/faultProxy';
import type { RedisServer } from '../../test/redis';
import type { FaultKind, FaultWindow, Ledger } from './ledger';
import type { Random } from './random';
import type { Metrics } from './relayProcess';

const STALL_MS = [3500, 6000] as const;
const SLOW_MS = [3000, 6000] as const;
const SLOW_BYTES_PER_S = 512 * 1024;
const SLOW_LATENCY_MS = 20;
const REDIS_DOWN_MS = [1500, 3000] as const;
/** The bus must be back this long after redis-server answers again. */
const BUS_RECOVERY_DEADLINE_MS = 15_000;

export interface FaultTarget {
  readonly name: string;
  readonly proxy: FaultProxy;
}

export interface BusNode {
  readonly name: string;
  metrics(): Promise<Metrics>;
}

export interface FaultPlan {
  readonly everyMs: number;
  /** First fault this long after the start. */
  readonly firstAtMs: number;
  /** No fault starts after this (ms since the start), so all are healed before the traffic ends. */
  readonly lastStartMs: number;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

function leaseRenewals(m: Metrics): number {
  return (m.get('burrow_lease_renewals_total{result="renewed"}') ?? 0) + (m.get('burrow_lease_renewals_total{result="reclaimed"}') ?? 0);
}

export class FaultInjector {
  private readonly order: FaultKind[];
  private next = 0;
  private timer: NodeJS.Timeout | undefined;
  private readonly running = new Set<Promise<void>>();
  private redisBusy = false;
  private stopped = false;

  constructor(
    private readonly ledger: Ledger,
    private readonly rng: Random,
    private readonly targets: readonly FaultTarget[],
    private readonly redis: { readonly server: RedisServer; readonly nodes: readonly BusNode[] } | undefined,
    private readonly plan: FaultPlan,
  ) {
    this.order = redis !== undefined ? ['cut', 'stall', 'redis', 'slow', 'reset'] : ['cut', 'stall', 'slow', 'reset'];
  }

  start(): void {
    this.timer = setTimeout(() => this.beat(), this.plan.firstAtMs);
  }

  /** Injects no more faults and waits until every one in progress is healed. */
  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    while (this.running.size > 0) await Promise.all([...this.running]);
  }

  private beat(): void {
    if (this.stopped) return;
    const kind = this.order[this.next % this.order.length] as FaultKind;
    const started = this.inject(kind);
    // A kind with nothing free to hit is tried again at the next beat.
    if (started) this.next++;
    if (this.ledger.now() + this.plan.everyMs <= this.plan.lastStartMs) this.timer = setTimeout(() => this.beat(), this.plan.everyMs);
  }

  private inject(kind: FaultKind): boolean {
    let task: Promise<void>;
    if (kind === 'redis') {
      if (this.redis === undefined || this.redisBusy) return false;
      this.redisBusy = true;
      const redis = this.redis;
      task = this.redisFault(redis.server, redis.nodes).finally(() => {
        this.redisBusy = false;
      });
    } else {
      const free = this.targets.filter((t) => !this.ledger.isDisturbed(t.name));
      if (free.length === 0) return false;
      const t = this.rng.pick(free);
      task = this.proxyFault(kind, t);
    }
    const tracked: Promise<void> = task
      .catch((err: unknown) => {
        this.ledger.problems.push(`fault ${kind} could not be injected or healed: ${String(err)}`);
      })
      .finally(() => this.running.delete(tracked));
    this.running.add(tracked);
    return true;
  }

  private async proxyFault(kind: Exclude<FaultKind, 'redis'>, t: FaultTarget): Promise<void> {
    const { proxy } = t;
    let w: FaultWindow;
    switch (kind) {
      case 'cut':
        w = this.ledger.openWindow(kind, t.name, 'FIN both ways');
        proxy.cut();
        this.ledger.heal(w);
        return;
      case 'reset':
        w = this.ledger.openWindow(kind, t.name, 'RST both ways');
        proxy.reset();
        this.ledger.heal(w);
        return;
      case 'stall': {
        const ms = this.rng.int(STALL_MS[0], STALL_MS[1]);
        w = this.ledger.openWindow(kind, t.name, `blackhole for ${ms} ms`);
        proxy.stall();
        await sleep(ms);
        proxy.heal();
        this.ledger.heal(w);
        return;
      }
      case 'slow': {
        const ms = this.rng.int(SLOW_MS[0], SLOW_MS[1]);
        w = this.ledger.openWindow(kind, t.name, `${SLOW_BYTES_PER_S / 1024} KiB/s + ${SLOW_LATENCY_MS} ms per chunk for ${ms} ms`);
        proxy.slow(SLOW_BYTES_PER_S, SLOW_LATENCY_MS);
        await sleep(ms);
        proxy.slow(0);
        this.ledger.heal(w);
        return;
      }
    }
  }

  private async redisFault(server: RedisServer, nodes: readonly BusNode[]): Promise<void> {
    const ms = this.rng.int(REDIS_DOWN_MS[0], REDIS_DOWN_MS[1]);
    const w = this.ledger.openWindow('redis', 'bus', `SIGKILL, restarted empty after ${ms} ms`);
    await server.kill();
    await sleep(ms);
    const before = await Promise.all(nodes.map(async (n) => leaseRenewals(await n.metrics())));
    await server.restart();
    this.ledger.heal(w);
    // Back means: each node says the bus is up and has renewed (or put back) its leases since the restart.
    const deadline = Date.now() + BUS_RECOVERY_DEADLINE_MS;
    const back = new Set<number>();
    while (back.size < nodes.length) {
      if (Date.now() > deadline) {
        this.ledger.problems.push(
          `the bus did not recover within ${BUS_RECOVERY_DEADLINE_MS} ms of the Redis restart at ${w.healedAt} ms (nodes not back: ${nodes
            .filter((_, i) => !back.has(i))
            .map((n) => n.name)
            .join(', ')})`,
        );
        break;
      }
      await Promise.all(
        nodes.map(async (n, i) => {
          if (back.has(i)) return;
          const m = await n.metrics().catch(() => undefined);
          // A node with no tunnel at the moment has no lease to renew.
          if (m !== undefined && m.get('burrow_bus_up') === 1 && (leaseRenewals(m) > (before[i] as number) || m.get('burrow_tunnels') === 0)) back.add(i);
        }),
      );
      if (back.size < nodes.length) await sleep(50);
    }
    w.recoveredAt = this.ledger.now();
  }
}
