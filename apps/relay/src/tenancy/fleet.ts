/**
 * Fleet-wide tenancy state beside the registry: each tenant's tunnel slots (its maxTunnels quota,
 * counted over every node), the live-tunnel listing the admin API shows, and the shared request
 * counters of the per-tenant rate limit. In memory on one node; in Redis (the bus's own
 * connection) when nodes share one. Everything here expires by itself: a node that dies takes its
 * slots and listings with it within a lease period.
 */
import { type Bus, RedisBus, type RedisClient } from '@burrow/bus';
import type { LiveTunnel } from './types';

export interface Fleet {
  /** Takes one of `tenant`'s tunnel slots for `sessionId`, unless it holds `max` already. */
  acquireSlot(tenant: string, sessionId: string, max: number): Promise<boolean>;
  releaseSlot(tenant: string, sessionId: string): Promise<void>;
  /** Publishes this node's live sessions (replacing what it published before) and keeps their slots. */
  refresh(live: readonly LiveTunnel[]): Promise<void>;
  /** Adds or updates one session in this node's listing (a registration), without a full refresh. */
  upsert(live: LiveTunnel): Promise<void>;
  /** Drops one session from this node's listing. */
  remove(sessionId: string): Promise<void>;
  /** Live tunnels on every node. */
  list(): Promise<LiveTunnel[]>;
  /** Adds `delta` requests to `tenant`'s count for `minute`; resolves to the fleet-wide count. */
  addRequests(tenant: string, minute: number, delta: number): Promise<number>;
}

/** One node: everything is local. */
export class MemoryFleet implements Fleet {
  private readonly slots = new Map<string, Set<string>>();
  private live: readonly LiveTunnel[] = [];
  private readonly counts = new Map<string, { minute: number; count: number }>();

  constructor(private readonly localLive: () => LiveTunnel[]) {}

  async acquireSlot(tenant: string, sessionId: string, max: number): Promise<boolean> {
    let held = this.slots.get(tenant);
    if (held === undefined) {
      held = new Set();
      this.slots.set(tenant, held);
    }
    if (held.has(sessionId)) return true;
    if (held.size >= max) return false;
    held.add(sessionId);
    return true;
  }

  async releaseSlot(tenant: string, sessionId: string): Promise<void> {
    const held = this.slots.get(tenant);
    held?.delete(sessionId);
    if (held?.size === 0) this.slots.delete(tenant);
  }

  async refresh(live: readonly LiveTunnel[]): Promise<void> {
    this.live = live;
  }

  async upsert(): Promise<void> {
    // list() reads the sessions themselves: nothing is kept to update.
  }

  async remove(): Promise<void> {}

  async list(): Promise<LiveTunnel[]> {
    return this.localLive();
  }

  async addRequests(tenant: string, minute: number, delta: number): Promise<number> {
    let c = this.counts.get(tenant);
    if (c === undefined || c.minute !== minute) {
      c = { minute, count: 0 };
      this.counts.set(tenant, c);
    }
    c.count += delta;
    return c.count;
  }

  /** Published listing (for tests of the refresh path). */
  get published(): readonly LiveTunnel[] {
    return this.live;
  }
}

/** acquire: KEYS slots; ARGV sessionId, max, nowMs, expiresAtMs, keyTtlMs → 1 taken, 0 full. */
const ACQUIRE = `
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[3])
if redis.call('ZSCORE', KEYS[1], ARGV[1]) then
  redis.call('ZADD', KEYS[1], ARGV[4], ARGV[1])
  return 1
end
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then return 0 end
redis.call('ZADD', KEYS[1], ARGV[4], ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[5])
return 1
`;

/** Several relay nodes on one Redis (standalone or cluster): keys are hash-tagged per tenant and per node. */
export class RedisFleet implements Fleet {
  private readonly prefix = 'burrow:';

  constructor(
    private readonly bus: RedisBus,
    private readonly leaseTtlMs: number,
  ) {}

  private slotsKey(tenant: string): string {
    return `${this.prefix}{t:${tenant}}:slots`;
  }
  private liveKey(node: string): string {
    return `${this.prefix}{n:${node}}:live`;
  }
  private get nodesKey(): string {
    return `${this.prefix}live:nodes`;
  }

  acquireSlot(tenant: string, sessionId: string, max: number): Promise<boolean> {
    const now = Date.now();
    return this.bus.command('acquire tunnel slot', async (c) => {
      const r = await c.eval(ACQUIRE, 1, this.slotsKey(tenant), sessionId, max, now, now + this.leaseTtlMs, 2 * this.leaseTtlMs);
      return Number(r) === 1;
    });
  }

  releaseSlot(tenant: string, sessionId: string): Promise<void> {
    return this.bus.command('release tunnel slot', async (c) => {
      await c.zrem(this.slotsKey(tenant), sessionId);
    });
  }

  refresh(live: readonly LiveTunnel[]): Promise<void> {
    const node = this.bus.nodeId;
    const now = Date.now();
    return this.bus.command('refresh live tunnels', async (c: RedisClient) => {
      const key = this.liveKey(node);
      const fields: string[] = [];
      for (const t of live) fields.push(t.sessionId, JSON.stringify(t));
      const ops: Promise<unknown>[] = [c.del(key)];
      if (fields.length > 0) ops.push(c.hset(key, ...fields), c.pexpire(key, 2 * this.leaseTtlMs));
      ops.push(c.zadd(this.nodesKey, now + 2 * this.leaseTtlMs, node), c.zremrangebyscore(this.nodesKey, '-inf', now));
      // Each tenant's slots live as long as its sessions do.
      for (const t of live) if (t.tenant !== undefined) ops.push(c.zadd(this.slotsKey(t.tenant), 'XX', now + this.leaseTtlMs, t.sessionId));
      await Promise.all(ops);
    });
  }

  upsert(live: LiveTunnel): Promise<void> {
    const node = this.bus.nodeId;
    const key = this.liveKey(node);
    const ttl = 2 * this.leaseTtlMs;
    return this.bus.command('publish a live tunnel', async (c) => {
      await Promise.all([c.hset(key, live.sessionId, JSON.stringify(live)), c.pexpire(key, ttl), c.zadd(this.nodesKey, Date.now() + ttl, node)]);
    });
  }

  remove(sessionId: string): Promise<void> {
    return this.bus.command('unpublish a live tunnel', async (c) => {
      await c.hdel(this.liveKey(this.bus.nodeId), sessionId);
    });
  }

  list(): Promise<LiveTunnel[]> {
    return this.bus.command('list live tunnels', async (c) => {
      const nodes = await c.zrangebyscore(this.nodesKey, Date.now(), '+inf');
      const hashes = await Promise.all(nodes.map((n) => c.hvals(this.liveKey(n))));
      const out: LiveTunnel[] = [];
      for (const values of hashes) for (const v of values) out.push(JSON.parse(v) as LiveTunnel);
      return out;
    });
  }

  addRequests(tenant: string, minute: number, delta: number): Promise<number> {
    const key = `${this.prefix}{t:${tenant}}:rate:${minute}`;
    return this.bus.command('count requests', async (c) => {
      const [total] = await Promise.all([c.incrby(key, delta), c.pexpire(key, 120_000)]);
      return Number(total);
    });
  }
}

export function makeFleet(bus: Bus, localLive: () => LiveTunnel[]): Fleet {
  return bus instanceof RedisBus ? new RedisFleet(bus, bus.leaseTtlMs) : new MemoryFleet(localLive);
}
