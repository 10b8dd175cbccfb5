/**
 * TenantStore in Redis (standalone or Cluster), shared by every relay node. Its own ioredis
 * connection, fail-fast like RedisBus: nothing queues while Redis is away, and every call then
 * rejects with BURROW_ERR_BUS_UNAVAILABLE.
 *
 * Keys (prefix `burrow:` by default). A tenant's keys share the hash tag {<id>}, so what changes
 * them together runs as one Lua script on one slot, in cluster mode too:
 *   <p>tenant:{<id>}            hash: id, name, createdAt, quotas (JSON), reserved (JSON), gen
 *   <p>tenant:{<id>}:tokens     set of its token ids
 *   <p>tenant:{<id>}:history    list of JSON events, newest first (LPUSH, LTRIM, PEXPIRE)
 *   <p>tenants                  set of tenant ids (listing)
 *   <p>token:{<tokenId>}        hash: tenant, gen, digest (SHA-256 of the secret), createdAt, description
 *   <p>reserved:{<name>}        string: the tenant id that reserved the name
 * Operations spanning slots are sequences of single-slot commands, ordered so a crash between
 * them leaves nothing usable: a token authenticates only if its hash exists AND its tenant
 * exists with the same `gen` (a random value fixed at creation), so deleting the tenant hash
 * alone revokes every token, even one re-created tenant of the same id would otherwise revive.
 */
import { randomBytes } from 'node:crypto';
import { errorOf, parseClusterSeed, redactRedisUrl, redisRetryStrategy, waitReady, withTimeout } from '@burrow/bus';
import { BurrowError } from '@burrow/protocol';
import { Cluster, Redis, type RedisOptions } from 'ioredis';
import { AdminError } from './adminError';
import {
  checkCreate,
  checkDescription,
  checkHistoryLimit,
  checkPatch,
  HISTORY_MAX_AGE_MS,
  HISTORY_MAX_EVENTS,
  isHistoryEvent,
  MAX_TENANTS,
  MAX_TOKENS_PER_TENANT,
} from './tenantRules';
import { generateToken, isTokenId, parseToken, secretMatches } from './tokens';
import type { Authenticated, HistoryEvent, Tenant, TenantQuotas, TenantStore, TokenInfo } from './types';

export interface RedisTenantStoreOptions {
  /** Standalone Redis: redis://… or rediss://… */
  readonly url?: string;
  /** Redis Cluster seed nodes, host:port. */
  readonly cluster?: readonly string[];
  /** Prefix of every key. Default 'burrow:'. */
  readonly keyPrefix?: string;
  /** How long the first call waits for Redis before failing. Default 5 s. */
  readonly connectTimeoutMs?: number;
  /** A command without an answer for this long fails. Default 1 s. */
  readonly commandTimeoutMs?: number;
  /** Connection errors, for logging. */
  readonly onError?: (err: Error) => void;
  readonly historyMaxEvents?: number;
  readonly historyMaxAgeMs?: number;
  readonly now?: () => number;
}

type Client = Redis | Cluster;

const DEFAULT_CONNECT_TIMEOUT_MS = 5000;
const DEFAULT_COMMAND_TIMEOUT_MS = 1000;

/** KEYS: tenant. ARGV: field/value pairs. Creates the hash unless it exists. */
const CREATE_TENANT = `
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV))
return 1`;
/** KEYS: tenant. ARGV: field/value pairs. Changes the hash only if it exists. */
const UPDATE_TENANT = `
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV))
return 1`;
/** KEYS: tenant, tokens, history. Deletes all three; returns {reserved JSON, token ids…} or nil. */
const DELETE_TENANT = `
local reserved = redis.call('HGET', KEYS[1], 'reserved')
if not reserved then return nil end
local tokens = redis.call('SMEMBERS', KEYS[2])
redis.call('DEL', KEYS[1], KEYS[2], KEYS[3])
table.insert(tokens, 1, reserved)
return tokens`;
/** KEYS: tenant, tokens. ARGV: gen, token id, max. 1 added; 0 tenant gone (or re-created); -1 at max. */
const ADD_TOKEN = `
if redis.call('HGET', KEYS[1], 'gen') ~= ARGV[1] then return 0 end
if redis.call('SCARD', KEYS[2]) >= tonumber(ARGV[3]) then return -1 end
redis.call('SADD', KEYS[2], ARGV[2])
return 1`;
/** KEYS: tenant, history. ARGV: event JSON, max events, ttl ms. Records only for an existing tenant. */
const RECORD_HISTORY = `
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('LPUSH', KEYS[2], ARGV[1])
redis.call('LTRIM', KEYS[2], 0, tonumber(ARGV[2]) - 1)
redis.call('PEXPIRE', KEYS[2], ARGV[3])
return 1`;
/** KEYS: key. ARGV: value. Deletes the key if it holds value. */
const DELETE_IF = `
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0`;

function parseJson<T>(text: string | undefined, fallback: T): T {
  if (text === undefined) return fallback;
  try {
    return JSON.parse(text) as T;
  } catch {
    return fallback;
  }
}

export class RedisTenantStore implements TenantStore {
  private readonly p: string;
  private readonly where: string;
  private readonly connectTimeoutMs: number;
  private readonly commandTimeoutMs: number;
  private readonly onError: (err: Error) => void;
  private readonly maxEvents: number;
  private readonly maxAgeMs: number;
  private readonly now: () => number;
  private starting: Promise<Client> | undefined;
  private closed = false;
  private closing: Promise<void> | undefined;
  private lastError = '';

  constructor(private readonly options: RedisTenantStoreOptions) {
    if ((options.url === undefined) === (options.cluster === undefined || options.cluster.length === 0)) {
      throw new TypeError('RedisTenantStore needs exactly one of url (standalone Redis) or cluster (seed host:port list)');
    }
    this.p = options.keyPrefix ?? 'burrow:';
    this.where = options.url !== undefined ? redactRedisUrl(options.url) : `cluster ${options.cluster?.join(',')}`;
    this.connectTimeoutMs = options.connectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS;
    this.commandTimeoutMs = options.commandTimeoutMs ?? DEFAULT_COMMAND_TIMEOUT_MS;
    this.onError = options.onError ?? (() => {});
    this.maxEvents = options.historyMaxEvents ?? HISTORY_MAX_EVENTS;
    this.maxAgeMs = options.historyMaxAgeMs ?? HISTORY_MAX_AGE_MS;
    this.now = options.now ?? Date.now;
  }

  // ---------------------------------------------------------------- keys

  private tenantKey(id: string): string {
    return `${this.p}tenant:{${id}}`;
  }
  private tokensKey(id: string): string {
    return `${this.p}tenant:{${id}}:tokens`;
  }
  private historyKey(id: string): string {
    return `${this.p}tenant:{${id}}:history`;
  }
  private tenantsKey(): string {
    return `${this.p}tenants`;
  }
  private tokenKey(tokenId: string): string {
    return `${this.p}token:{${tokenId}}`;
  }
  private reservedKey(name: string): string {
    return `${this.p}reserved:{${name}}`;
  }

  // ---------------------------------------------------------------- connection

  private connect(): Promise<Client> {
    if (this.closed) return Promise.reject(new BurrowError('BURROW_ERR_BUS_UNAVAILABLE', 'the Redis tenant store is closed'));
    this.starting ??= this.start().catch((err) => {
      this.starting = undefined;
      throw err;
    });
    return this.starting;
  }

  private async start(): Promise<Client> {
    const redisOptions: RedisOptions = {
      lazyConnect: true,
      connectTimeout: Math.min(this.connectTimeoutMs, 2000),
      connectionName: 'burrow-tenants',
      disconnectTimeout: 200,
      maxRetriesPerRequest: 0,
      autoResendUnfulfilledCommands: false,
      commandTimeout: this.commandTimeoutMs,
    };
    const onError = (err: Error): void => {
      this.lastError = err.message;
      this.onError(err);
    };
    let client: Client;
    if (this.options.cluster !== undefined) {
      client = new Cluster(
        this.options.cluster.map((s) => parseClusterSeed(s)),
        {
          lazyConnect: true,
          enableOfflineQueue: false,
          enableAutoPipelining: true,
          clusterRetryStrategy: redisRetryStrategy,
          slotsRefreshTimeout: Math.min(this.connectTimeoutMs, 2000),
          redisOptions,
        },
      );
      client.on('node error', onError);
    } else {
      client = new Redis(this.options.url as string, {
        ...redisOptions,
        retryStrategy: redisRetryStrategy,
        enableOfflineQueue: false,
        enableAutoPipelining: true,
      });
    }
    client.on('error', onError);
    const ready = waitReady(client);
    client.connect().catch(() => {}); // failures surface as 'error' events; ioredis keeps retrying
    const reached = await withTimeout(ready, this.connectTimeoutMs, () => 'timeout').then(
      () => true,
      () => false,
    );
    if (!reached || this.closed) {
      client.disconnect();
      const last = this.lastError !== '' ? ` (last error: ${this.lastError})` : '';
      throw new BurrowError(
        'BURROW_ERR_BUS_UNAVAILABLE',
        `cannot reach Redis at ${this.where} for tenants: no answer within ${this.connectTimeoutMs} ms${last}`,
      );
    }
    return client;
  }

  /** Runs commands; every failure to reach Redis becomes BURROW_ERR_BUS_UNAVAILABLE, AdminErrors pass. */
  private async run<T>(what: string, fn: (client: Client) => Promise<T>): Promise<T> {
    const client = await this.connect();
    if (this.closed) throw new BurrowError('BURROW_ERR_BUS_UNAVAILABLE', 'the Redis tenant store is closed');
    if (client.status !== 'ready') {
      throw new BurrowError('BURROW_ERR_BUS_UNAVAILABLE', `Redis at ${this.where} is unreachable (connection ${client.status}); ${what} failed`);
    }
    try {
      return await fn(client);
    } catch (err) {
      if (err instanceof AdminError || err instanceof BurrowError) throw err;
      throw new BurrowError('BURROW_ERR_BUS_UNAVAILABLE', `Redis ${what} failed at ${this.where}: ${errorOf(err).message}`);
    }
  }

  // ---------------------------------------------------------------- helpers

  private toTenant(h: Record<string, string>): Tenant | undefined {
    if (h.id === undefined || h.name === undefined) return undefined;
    return {
      id: h.id,
      name: h.name,
      createdAt: Number(h.createdAt),
      quotas: parseJson<TenantQuotas>(h.quotas, {}),
      reservedNames: parseJson<string[]>(h.reserved, []),
    };
  }

  /**
   * Reserves `names` for `tenantId` (SET NX; a name it already holds counts as reserved).
   * On a conflict, releases what this call reserved and throws conflict.
   */
  private async reserve(c: Client, tenantId: string, names: readonly string[]): Promise<string[]> {
    const taken: string[] = [];
    const fresh: string[] = [];
    await Promise.all(
      names.map(async (name) => {
        const key = this.reservedKey(name);
        if ((await c.set(key, tenantId, 'NX')) === 'OK') {
          fresh.push(name);
          return;
        }
        const owner = await c.get(key);
        if (owner !== tenantId) taken.push(`"${name}" (tenant ${owner})`);
      }),
    );
    if (taken.length > 0) {
      await this.release(c, tenantId, fresh);
      throw new AdminError('conflict', `reserved by another tenant: ${taken.join(', ')}`);
    }
    return fresh;
  }

  private async release(c: Client, tenantId: string, names: readonly string[]): Promise<void> {
    await Promise.all(names.map((name) => c.eval(DELETE_IF, 1, this.reservedKey(name), tenantId)));
  }

  // ---------------------------------------------------------------- tenants

  async createTenant(input: { id?: string; name: string; quotas?: TenantQuotas; reservedNames?: readonly string[] }): Promise<Tenant> {
    const valid = checkCreate(input);
    return this.run('createTenant', async (c) => {
      if ((await c.exists(this.tenantKey(valid.id))) === 1) throw new AdminError('conflict', `tenant ${valid.id} exists`);
      if ((await c.scard(this.tenantsKey())) >= MAX_TENANTS) {
        throw new AdminError('conflict', `the store holds ${MAX_TENANTS} tenants, its limit; delete some first`);
      }
      // Names first: a crash after leaves names held by a tenant id that does not exist yet,
      // and creating that tenant again (same id) adopts them.
      const fresh = await this.reserve(c, valid.id, valid.reservedNames);
      await c.sadd(this.tenantsKey(), valid.id);
      const tenant: Tenant = { ...valid, createdAt: this.now() };
      const created = await c.eval(
        CREATE_TENANT,
        1,
        this.tenantKey(tenant.id),
        ...['id', tenant.id, 'name', tenant.name, 'createdAt', String(tenant.createdAt)],
        ...['quotas', JSON.stringify(tenant.quotas), 'reserved', JSON.stringify(tenant.reservedNames), 'gen', randomBytes(8).toString('hex')],
      );
      if (created !== 1) {
        await this.release(c, tenant.id, fresh);
        throw new AdminError('conflict', `tenant ${tenant.id} exists`);
      }
      return tenant;
    });
  }

  async getTenant(id: string): Promise<Tenant | undefined> {
    return this.run('getTenant', async (c) => this.toTenant(await c.hgetall(this.tenantKey(id))));
  }

  async listTenants(): Promise<Tenant[]> {
    return this.run('listTenants', async (c) => {
      const ids = await c.smembers(this.tenantsKey());
      const tenants = await Promise.all(ids.map(async (id) => this.toTenant(await c.hgetall(this.tenantKey(id)))));
      return tenants.filter((t): t is Tenant => t !== undefined).sort((a, b) => a.createdAt - b.createdAt || a.id.localeCompare(b.id));
    });
  }

  async updateTenant(id: string, patch: { name?: string; quotas?: TenantQuotas; reservedNames?: readonly string[] }): Promise<Tenant | undefined> {
    const valid = checkPatch(patch);
    return this.run('updateTenant', async (c) => {
      const old = this.toTenant(await c.hgetall(this.tenantKey(id)));
      if (old === undefined) return undefined;
      const next: Tenant = {
        ...old,
        ...(valid.name !== undefined ? { name: valid.name } : {}),
        ...(valid.quotas !== undefined ? { quotas: valid.quotas } : {}),
        ...(valid.reservedNames !== undefined ? { reservedNames: valid.reservedNames } : {}),
      };
      // Added names are reserved before the tenant lists them; dropped ones released after.
      const added = next.reservedNames.filter((n) => !old.reservedNames.includes(n));
      const dropped = old.reservedNames.filter((n) => !next.reservedNames.includes(n));
      const fresh = await this.reserve(c, id, added);
      const fields = ['name', next.name, 'quotas', JSON.stringify(next.quotas), 'reserved', JSON.stringify(next.reservedNames)];
      if ((await c.eval(UPDATE_TENANT, 1, this.tenantKey(id), ...fields)) !== 1) {
        await this.release(c, id, fresh);
        return undefined;
      }
      await this.release(c, id, dropped);
      return next;
    });
  }

  async deleteTenant(id: string): Promise<boolean> {
    return this.run('deleteTenant', async (c) => {
      // The commit point: once the tenant hash is gone, none of its tokens authenticates.
      const removed = (await c.eval(DELETE_TENANT, 3, this.tenantKey(id), this.tokensKey(id), this.historyKey(id))) as string[] | null;
      if (removed === null) return false;
      const [reserved, ...tokenIds] = removed;
      await Promise.all(tokenIds.map((t) => c.del(this.tokenKey(t))));
      await c.srem(this.tenantsKey(), id);
      await this.release(c, id, parseJson<string[]>(reserved, []));
      return true;
    });
  }

  // ---------------------------------------------------------------- tokens

  async createToken(tenantId: string, description?: string): Promise<{ token: string; info: TokenInfo }> {
    const desc = checkDescription(description);
    return this.run('createToken', async (c) => {
      const gen = await c.hget(this.tenantKey(tenantId), 'gen');
      if (gen === null) throw new AdminError('not_found', `no tenant ${tenantId}`);
      const fresh = generateToken();
      // Listed first, then made: a crash between leaves an id in the set with no token (skipped and cleaned by listTokens).
      const added = await c.eval(ADD_TOKEN, 2, this.tenantKey(tenantId), this.tokensKey(tenantId), gen, fresh.id, String(MAX_TOKENS_PER_TENANT));
      if (added === 0) throw new AdminError('not_found', `no tenant ${tenantId}`);
      if (added === -1) throw new AdminError('conflict', `tenant ${tenantId} has ${MAX_TOKENS_PER_TENANT} tokens, the limit; revoke unused ones first`);
      const info: TokenInfo = { id: fresh.id, tenantId, createdAt: this.now(), ...(desc !== undefined ? { description: desc } : {}) };
      await c.hset(this.tokenKey(fresh.id), {
        tenant: tenantId,
        gen,
        digest: fresh.digest,
        createdAt: String(info.createdAt),
        ...(desc !== undefined ? { description: desc } : {}),
      });
      return { token: fresh.token, info };
    });
  }

  async listTokens(tenantId: string): Promise<TokenInfo[]> {
    return this.run('listTokens', async (c) => {
      const ids = await c.smembers(this.tokensKey(tenantId));
      const infos = await Promise.all(
        ids.map(async (id): Promise<TokenInfo | undefined> => {
          const h = await c.hgetall(this.tokenKey(id));
          if (h.tenant === undefined) {
            await c.srem(this.tokensKey(tenantId), id);
            return undefined;
          }
          if (h.tenant !== tenantId) return undefined;
          return { id, tenantId, createdAt: Number(h.createdAt), ...(h.description !== undefined ? { description: h.description } : {}) };
        }),
      );
      return infos.filter((t): t is TokenInfo => t !== undefined).sort((a, b) => a.createdAt - b.createdAt || a.id.localeCompare(b.id));
    });
  }

  async revokeToken(tokenId: string): Promise<boolean> {
    if (!isTokenId(tokenId)) return false;
    return this.run('revokeToken', async (c) => {
      const tenant = await c.hget(this.tokenKey(tokenId), 'tenant');
      // The commit point is the DEL: the set entry left by a crash after it is cleaned by listTokens.
      const deleted = await c.del(this.tokenKey(tokenId));
      if (tenant !== null) await c.srem(this.tokensKey(tenant), tokenId);
      return deleted === 1;
    });
  }

  async authenticate(token: string): Promise<Authenticated | undefined> {
    const parsed = parseToken(token);
    if (parsed === undefined) return undefined;
    return this.run('authenticate', async (c) => {
      const h = await c.hgetall(this.tokenKey(parsed.id));
      if (h.digest === undefined || h.tenant === undefined || !secretMatches(parsed.secret, h.digest)) return undefined;
      const t = await c.hgetall(this.tenantKey(h.tenant));
      if (t.gen === undefined || t.gen !== h.gen) return undefined;
      const tenant = this.toTenant(t);
      return tenant === undefined ? undefined : { tenant, tokenId: parsed.id };
    });
  }

  async validTokenIds(tokenIds: readonly string[]): Promise<Set<string>> {
    const ids = [...new Set(tokenIds)].filter(isTokenId);
    if (ids.length === 0) return new Set();
    return this.run('validTokenIds', async (c) => {
      const tokens = await Promise.all(ids.map(async (id) => ({ id, fields: await c.hmget(this.tokenKey(id), 'tenant', 'gen') })));
      const tenantIds = [...new Set(tokens.map((t) => t.fields[0]).filter((t): t is string => t !== null && t !== undefined))];
      const gens = new Map(await Promise.all(tenantIds.map(async (t) => [t, await c.hget(this.tenantKey(t), 'gen')] as const)));
      const valid = new Set<string>();
      for (const { id, fields } of tokens) {
        const [tenant, gen] = fields;
        if (tenant != null && gen != null && gens.get(tenant) === gen) valid.add(id);
      }
      return valid;
    });
  }

  async nameReservedBy(name: string): Promise<string | undefined> {
    return this.run('nameReservedBy', async (c) => (await c.get(this.reservedKey(name))) ?? undefined);
  }

  // ---------------------------------------------------------------- history

  async recordHistory(tenantId: string, event: HistoryEvent): Promise<void> {
    await this.run('recordHistory', async (c) => {
      await c.eval(
        RECORD_HISTORY,
        2,
        this.tenantKey(tenantId),
        this.historyKey(tenantId),
        JSON.stringify(event),
        String(this.maxEvents),
        String(this.maxAgeMs),
      );
    });
  }

  async history(tenantId: string, limit?: number): Promise<HistoryEvent[]> {
    const n = checkHistoryLimit(limit);
    return this.run('history', async (c) => {
      const raw = await c.lrange(this.historyKey(tenantId), 0, n - 1);
      const oldest = this.now() - this.maxAgeMs;
      return raw.map((text) => parseJson<unknown>(text, undefined)).filter((e): e is HistoryEvent => isHistoryEvent(e) && e.at >= oldest);
    });
  }

  /** Closes the connection. Idempotent. */
  close(): Promise<void> {
    this.closing ??= (async () => {
      this.closed = true;
      const client = await this.starting?.catch(() => undefined);
      if (client === undefined) return;
      if (client.status === 'ready') {
        let timer: NodeJS.Timeout | undefined;
        const timeout = new Promise<void>((resolve) => {
          timer = setTimeout(resolve, this.commandTimeoutMs);
        });
        await Promise.race([client.quit().catch(() => {}), timeout]).finally(() => clearTimeout(timer));
      }
      client.disconnect();
    })();
    return this.closing;
  }
}
