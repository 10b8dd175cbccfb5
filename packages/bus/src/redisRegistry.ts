/**
 * The label registry kept in Redis. Every key of one label shares the hash tag `{l:<label>}`, so
 * each Lua script below touches one cluster slot and runs atomically in standalone and cluster mode.
 *
 *   <prefix>{l:<label>}:lease   hash s=sessionId n=nodeId k=keyId p=policy JSON ('' for none), PX leaseTtlMs → online
 *   <prefix>{l:<label>}:reconn  string untilMs (epoch ms, releasing node's clock), PX graceMs → reconnecting
 *   <prefix>{l:<label>}:seen    "1", PX offlineMemoryMs (+ leaseTtlMs while held)      → offline
 *   <prefix>{l:<label>}:name    keyId bound to the friendly name, no expiry            → offline
 *   <prefix>names:count         number of bound names (bounded by maxNames)
 *   <prefix>{l:<label>}:port    the TCP port the label had last, PX 24 h (the same key gets it back while free)
 *   <prefix>{p:<port>}          hash l=label s=sessionId, PX leaseTtlMs, renewed with the leases → port allocated
 */
import { BurrowError } from '@burrow/protocol';
import type { Cluster, Redis } from 'ioredis';
import type { Holder, Lookup, PortLease, PortRange, Registry, RenewResult, TunnelPolicy } from './bus';

/** claim: KEYS lease, reconn, seen; ARGV sessionId, nodeId, keyId, leaseTtlMs, seenTtlMs, policy → previous holder of another session, or nil. */
const CLAIM = `
local prev = redis.call('HMGET', KEYS[1], 's', 'n', 'k', 'p')
redis.call('DEL', KEYS[1], KEYS[2])
redis.call('HSET', KEYS[1], 's', ARGV[1], 'n', ARGV[2], 'k', ARGV[3], 'p', ARGV[6])
redis.call('PEXPIRE', KEYS[1], ARGV[4])
redis.call('SET', KEYS[3], '1', 'PX', ARGV[5])
if prev[1] and prev[1] ~= ARGV[1] then return prev end
return false
`;

/** release: KEYS lease, reconn, seen; ARGV sessionId, graceMs, untilMs, offlineMemoryMs → 1 if released. */
const RELEASE = `
if redis.call('HGET', KEYS[1], 's') ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[1])
if tonumber(ARGV[2]) > 0 then redis.call('SET', KEYS[2], ARGV[3], 'PX', ARGV[2]) end
redis.call('SET', KEYS[3], '1', 'PX', ARGV[4])
return 1
`;

/** renew: KEYS lease, reconn, seen; ARGV sessionId, nodeId, keyId, leaseTtlMs, seenTtlMs, policy → 0 renewed, 1 reclaimed, 2 lost. */
const RENEW = `
local s = redis.call('HGET', KEYS[1], 's')
if s == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[4])
  redis.call('SET', KEYS[3], '1', 'PX', ARGV[5])
  return 0
end
if s then return 2 end
redis.call('DEL', KEYS[1], KEYS[2])
redis.call('HSET', KEYS[1], 's', ARGV[1], 'n', ARGV[2], 'k', ARGV[3], 'p', ARGV[6])
redis.call('PEXPIRE', KEYS[1], ARGV[4])
redis.call('SET', KEYS[3], '1', 'PX', ARGV[5])
return 1
`;

/** lookup: KEYS lease, reconn, seen, name → {'online', s, n, k, p} | {'reconnecting', untilMs} | {'offline'} | {'unknown'}. */
const LOOKUP = `
local h = redis.call('HMGET', KEYS[1], 's', 'n', 'k', 'p')
if h[1] then return {'online', h[1], h[2], h[3], h[4] or ''} end
local u = redis.call('GET', KEYS[2])
if u then return {'reconnecting', u} end
if redis.call('EXISTS', KEYS[3], KEYS[4]) > 0 then return {'offline'} end
return {'unknown'}
`;

/** bind: KEYS name; ARGV keyId → the existing owner, or nil after binding keyId. */
const BIND = `
local v = redis.call('GET', KEYS[1])
if v then return v end
redis.call('SET', KEYS[1], ARGV[1])
return false
`;

/** port take: KEYS port; ARGV label, sessionId, leaseTtlMs → 1 taken (free, or already this label's), 0 held by another label. */
const PORT_TAKE = `
local l = redis.call('HGET', KEYS[1], 'l')
if l and l ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'l', ARGV[1], 's', ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return 1
`;

/** port renew: KEYS port; ARGV label, sessionId, leaseTtlMs → 0 renewed, 1 taken back (it had expired), 2 held by another session. */
const PORT_RENEW = `
local s = redis.call('HGET', KEYS[1], 's')
if s == ARGV[2] then
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
  return 0
end
if s then return 2 end
redis.call('HSET', KEYS[1], 'l', ARGV[1], 's', ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return 1
`;

/** port release: KEYS port; ARGV sessionId, keepMs → 1 if released (or set to expire). */
const PORT_RELEASE = `
if redis.call('HGET', KEYS[1], 's') ~= ARGV[1] then return 0 end
if tonumber(ARGV[2]) > 0 then redis.call('PEXPIRE', KEYS[1], ARGV[2]) else redis.call('DEL', KEYS[1]) end
return 1
`;

/** How long a label's last TCP port is remembered for it. */
const LAST_PORT_TTL_MS = 24 * 60 * 60 * 1000;

export const REGISTRY_SCRIPTS = {
  burrowPortTake: { numberOfKeys: 1, lua: PORT_TAKE },
  burrowPortRenew: { numberOfKeys: 1, lua: PORT_RENEW },
  burrowPortRelease: { numberOfKeys: 1, lua: PORT_RELEASE },
  burrowClaim: { numberOfKeys: 3, lua: CLAIM },
  burrowRelease: { numberOfKeys: 3, lua: RELEASE },
  burrowRenew: { numberOfKeys: 3, lua: RENEW },
  burrowLookup: { numberOfKeys: 4, lua: LOOKUP },
  burrowBind: { numberOfKeys: 1, lua: BIND },
} as const;

type ScriptName = keyof typeof REGISTRY_SCRIPTS;
/** Labels renewed per round trip. */
const RENEW_CHUNK = 1000;
type Client = Redis | Cluster;

/** Installs the registry scripts on a client (EVALSHA, falling back to EVAL after a Redis restart). */
export function defineRegistryScripts(client: Client): void {
  for (const [name, def] of Object.entries(REGISTRY_SCRIPTS)) client.defineCommand(name, def);
}

export interface RegistrySettings {
  readonly keyPrefix: string;
  readonly leaseTtlMs: number;
  readonly offlineMemoryMs: number;
  readonly maxNames: number;
}

/** What the registry needs from the bus: a ready client, and errors mapped to BUS_UNAVAILABLE. */
export interface RegistryHost {
  /** Runs `fn` on the command client; rejects with BurrowError BURROW_ERR_BUS_UNAVAILABLE when Redis cannot be reached. */
  command<T>(what: string, fn: (client: Client) => Promise<T>): Promise<T>;
}

function script(client: Client, name: ScriptName, ...args: Array<string | number>): Promise<unknown> {
  return (client as unknown as Record<ScriptName, (...a: Array<string | number>) => Promise<unknown>>)[name](...args);
}

/** The policy as stored in the lease hash: JSON, or '' for none. */
function policyText(holder: Holder): string {
  return holder.policy === undefined ? '' : JSON.stringify(holder.policy);
}

/** A holder from the lease hash fields (s, n, k, p). */
function holderOf(s: unknown, n: unknown, k: unknown, p: unknown): Holder {
  const holder = { nodeId: String(n), sessionId: String(s), keyId: String(k) };
  if (typeof p !== 'string' || p === '') return holder;
  try {
    return { ...holder, policy: JSON.parse(p) as TunnelPolicy };
  } catch {
    // Written by this code only; an unreadable policy must not open the tunnel up: refuse everything.
    return { ...holder, policy: { access: { allowCidrs: [] } } };
  }
}

export class RedisRegistry implements Registry {
  private readonly countKey: string;
  constructor(
    private readonly host: RegistryHost,
    private readonly settings: RegistrySettings,
  ) {
    this.countKey = `${settings.keyPrefix}names:count`;
  }

  /** Keys of one label, all in one cluster slot. */
  keys(label: string): { lease: string; reconn: string; seen: string; name: string } {
    const base = `${this.settings.keyPrefix}{l:${label}}`;
    return { lease: `${base}:lease`, reconn: `${base}:reconn`, seen: `${base}:seen`, name: `${base}:name` };
  }

  private get heldSeenTtlMs(): number {
    return this.settings.offlineMemoryMs + this.settings.leaseTtlMs;
  }

  claim(label: string, holder: Holder): Promise<Holder | undefined> {
    const k = this.keys(label);
    return this.host.command('claim', async (c) => {
      const prev = await script(
        c,
        'burrowClaim',
        k.lease,
        k.reconn,
        k.seen,
        holder.sessionId,
        holder.nodeId,
        holder.keyId,
        this.settings.leaseTtlMs,
        this.heldSeenTtlMs,
        policyText(holder),
      );
      if (!Array.isArray(prev)) return undefined;
      return holderOf(prev[0], prev[1], prev[2], prev[3]);
    });
  }

  release(label: string, sessionId: string, graceMs = 0): Promise<void> {
    const k = this.keys(label);
    const grace = Math.max(0, Math.ceil(graceMs));
    // untilMs is the releasing node's clock (Date.now() + grace); the marker itself expires by Redis' clock (PX grace).
    const untilMs = Date.now() + grace;
    return this.host.command('release', async (c) => {
      await script(c, 'burrowRelease', k.lease, k.reconn, k.seen, sessionId, grace, untilMs, this.settings.offlineMemoryMs);
    });
  }

  lookup(label: string): Promise<Lookup> {
    const k = this.keys(label);
    return this.host.command('lookup', async (c) => {
      const r = (await script(c, 'burrowLookup', k.lease, k.reconn, k.seen, k.name)) as string[];
      switch (r[0]) {
        case 'online':
          return { state: 'online', holder: holderOf(r[1], r[2], r[3], r[4]) };
        case 'reconnecting':
          return { state: 'reconnecting', untilMs: Number(r[1]) };
        case 'offline':
          return { state: 'offline' };
        default:
          return { state: 'unknown' };
      }
    });
  }

  async renew(leases: ReadonlyArray<{ readonly label: string; readonly holder: Holder }>): Promise<RenewResult[]> {
    if (leases.length === 0) return [];
    const { leaseTtlMs } = this.settings;
    const seenTtl = this.heldSeenTtlMs;
    // One EVALSHA per label; ioredis auto-pipelining sends them in one write per node (per shard in
    // cluster mode). Chunks keep any one command from waiting behind thousands (commandTimeout).
    return this.host.command('renew', async (c) => {
      const results: RenewResult[] = [];
      for (let start = 0; start < leases.length; start += RENEW_CHUNK) {
        const chunk = leases.slice(start, start + RENEW_CHUNK);
        const codes = await Promise.all(
          chunk.map(({ label, holder }) => {
            const k = this.keys(label);
            return script(c, 'burrowRenew', k.lease, k.reconn, k.seen, holder.sessionId, holder.nodeId, holder.keyId, leaseTtlMs, seenTtl, policyText(holder));
          }),
        );
        for (const r of codes) results.push(r === 0 ? 'renewed' : r === 1 ? 'reclaimed' : 'lost');
      }
      return results;
    });
  }

  /** The key of one TCP port (its own slot). */
  portKey(port: number): string {
    return `${this.settings.keyPrefix}{p:${port}}`;
  }

  allocatePort(label: string, sessionId: string, range: PortRange): Promise<number | undefined> {
    const lastKey = `${this.settings.keyPrefix}{l:${label}}:port`;
    return this.host.command('allocatePort', async (c) => {
      const last = Number(await c.get(lastKey));
      const tried = Number.isInteger(last) && last >= range.first && last <= range.last ? last : undefined;
      // One port at a time, lowest first: each take is atomic on its own key (slot), so two nodes never hand out one port twice.
      const take = async (port: number): Promise<boolean> =>
        (await script(c, 'burrowPortTake', this.portKey(port), label, sessionId, this.settings.leaseTtlMs)) === 1;
      const remember = async (port: number): Promise<number> => {
        await c.set(lastKey, String(port), 'PX', LAST_PORT_TTL_MS);
        return port;
      };
      if (tried !== undefined && (await take(tried))) return remember(tried);
      for (let port = range.first; port <= range.last; port++) {
        if (port !== tried && (await take(port))) return remember(port);
      }
      return undefined;
    });
  }

  portLabel(port: number): Promise<string | undefined> {
    return this.host.command('portLabel', async (c) => (await c.hget(this.portKey(port), 'l')) ?? undefined);
  }

  async renewPorts(ports: ReadonlyArray<PortLease>): Promise<void> {
    if (ports.length === 0) return;
    await this.host.command('renewPorts', async (c) => {
      await Promise.all(ports.map((p) => script(c, 'burrowPortRenew', this.portKey(p.port), p.label, p.sessionId, this.settings.leaseTtlMs)));
    });
  }

  releasePort(port: number, sessionId: string, keepMs = 0): Promise<void> {
    return this.host.command('releasePort', async (c) => {
      await script(c, 'burrowPortRelease', this.portKey(port), sessionId, Math.max(0, Math.ceil(keepMs)));
    });
  }

  bindName(name: string, keyId: string): Promise<string> {
    const nameKey = this.keys(name).name;
    return this.host.command('bindName', async (c) => {
      const owner = await c.get(nameKey);
      if (owner !== null) return owner;
      // The count lives in another slot than the name, so it is reserved first and given back if unused.
      const count = await c.incr(this.countKey);
      if (count > this.settings.maxNames) {
        await c.decr(this.countKey);
        throw new BurrowError(
          'BURROW_ERR_NAME_LIMIT',
          `the relay fleet already holds ${this.settings.maxNames} friendly names; use the key's own URL, or ask the operator to raise --max-names`,
        );
      }
      const existing = await script(c, 'burrowBind', nameKey, keyId);
      if (existing === null || existing === undefined) return keyId;
      await c.decr(this.countKey);
      return String(existing);
    });
  }
}
