/**
 * TenantStore of a single relay: tenants and token digests in memory, persisted (when a data
 * dir is given) to `<dataDir>/tenants.json` by atomic replace (temp file, then rename; mode
 * 0600) before each change resolves. Connection history is a bounded ring per tenant, saved to
 * `<dataDir>/tenant-history.json` at most once per HISTORY_SAVE_DELAY_MS and on close (a crash
 * loses at most that much history, never a tenant or token). No dataDir: memory only.
 */
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { DataDirError } from '../nameStore';
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
import { generateToken, parseToken, secretMatches } from './tokens';
import type { Authenticated, HistoryEvent, Tenant, TenantQuotas, TenantStore, TokenInfo } from './types';

/** Coalesces history writes: connects and disconnects can come in bursts. */
const HISTORY_SAVE_DELAY_MS = 1000;
const FILE_VERSION = 1;

interface StoredToken {
  readonly id: string;
  readonly tenantId: string;
  readonly digest: string;
  readonly createdAt: number;
  readonly description?: string;
}

export interface FileTenantStoreOptions {
  /** Directory of tenants.json and tenant-history.json; unset: memory only. */
  readonly dataDir?: string;
  /** Clock (tests). */
  readonly now?: () => number;
  /** History bounds per tenant (defaults HISTORY_MAX_EVENTS, HISTORY_MAX_AGE_MS). */
  readonly historyMaxEvents?: number;
  readonly historyMaxAgeMs?: number;
}

function copyTenant(t: Tenant): Tenant {
  return { id: t.id, name: t.name, createdAt: t.createdAt, quotas: { ...t.quotas }, reservedNames: [...t.reservedNames] };
}

function tokenInfo(t: StoredToken): TokenInfo {
  return { id: t.id, tenantId: t.tenantId, createdAt: t.createdAt, ...(t.description !== undefined ? { description: t.description } : {}) };
}

export class FileTenantStore implements TenantStore {
  private readonly tenants = new Map<string, Tenant>();
  private readonly tokens = new Map<string, StoredToken>();
  /** Reserved name → tenant id. */
  private readonly reserved = new Map<string, string>();
  /** Tenant id → events, oldest first. */
  private readonly events = new Map<string, HistoryEvent[]>();
  private readonly file: string | undefined;
  private readonly historyFile: string | undefined;
  private readonly now: () => number;
  private readonly maxEvents: number;
  private readonly maxAgeMs: number;
  /** Writes run one at a time, in order. */
  private writes: Promise<void> = Promise.resolve();
  private historyTimer: NodeJS.Timeout | undefined;
  private historyDirty = false;
  private closed = false;

  /** Loads existing files synchronously; throws DataDirError when tenants.json is unreadable. */
  constructor(options: FileTenantStoreOptions = {}) {
    this.now = options.now ?? Date.now;
    this.maxEvents = options.historyMaxEvents ?? HISTORY_MAX_EVENTS;
    this.maxAgeMs = options.historyMaxAgeMs ?? HISTORY_MAX_AGE_MS;
    if (options.dataDir === undefined) return;
    try {
      mkdirSync(options.dataDir, { recursive: true, mode: 0o700 });
    } catch (err) {
      throw new DataDirError(`cannot create --data-dir ${options.dataDir}: ${(err as Error).message}`);
    }
    this.file = join(options.dataDir, 'tenants.json');
    this.historyFile = join(options.dataDir, 'tenant-history.json');
    this.load(this.file, this.historyFile);
  }

  private load(file: string, historyFile: string): void {
    if (existsSync(file)) {
      let data: { version?: unknown; tenants?: unknown; tokens?: unknown };
      try {
        data = JSON.parse(readFileSync(file, 'utf8'));
      } catch (err) {
        throw new DataDirError(`${file} is not readable JSON (${(err as Error).message}); restore it from a backup or remove it`);
      }
      if (data.version !== FILE_VERSION || !Array.isArray(data.tenants) || !Array.isArray(data.tokens)) {
        throw new DataDirError(`${file} is not a version ${FILE_VERSION} tenants file`);
      }
      for (const raw of data.tenants as Record<string, unknown>[]) {
        let t: Tenant;
        try {
          const input = checkCreate({ id: raw.id ?? '', name: raw.name, quotas: raw.quotas, reservedNames: raw.reservedNames });
          if (typeof raw.createdAt !== 'number') throw new AdminError('invalid', 'createdAt must be a number');
          t = { ...input, createdAt: raw.createdAt };
        } catch (err) {
          throw new DataDirError(`${file}: tenant ${JSON.stringify(raw.id)} is not valid: ${(err as Error).message}`);
        }
        this.tenants.set(t.id, t);
        for (const name of t.reservedNames) this.reserved.set(name, t.id);
      }
      for (const raw of data.tokens as Record<string, unknown>[]) {
        const { id, tenantId, digest, createdAt, description } = raw;
        if (typeof id !== 'string' || typeof tenantId !== 'string' || typeof digest !== 'string' || typeof createdAt !== 'number') {
          throw new DataDirError(`${file}: token ${JSON.stringify(id)} needs string id, tenantId, digest and numeric createdAt`);
        }
        if (!this.tenants.has(tenantId)) continue;
        this.tokens.set(id, { id, tenantId, digest, createdAt, ...(typeof description === 'string' ? { description } : {}) });
      }
    }
    if (existsSync(historyFile)) {
      // History is a convenience: a damaged file is dropped, not a reason to refuse to start.
      try {
        const data = JSON.parse(readFileSync(historyFile, 'utf8')) as { events?: Record<string, unknown> };
        for (const [tenantId, list] of Object.entries(data.events ?? {})) {
          if (!this.tenants.has(tenantId) || !Array.isArray(list)) continue;
          this.events.set(tenantId, list.filter(isHistoryEvent));
          this.trim(tenantId);
        }
      } catch {
        this.events.clear();
      }
    }
  }

  // ---------------------------------------------------------------- persistence

  /** Replaces `file` with `text` atomically: a crash leaves the old file or the new, never half. */
  private async replaceFile(file: string, text: string): Promise<void> {
    const tmp = `${file}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`;
    try {
      await writeFile(tmp, text, { mode: 0o600 });
      await rename(tmp, file);
    } catch (err) {
      await rm(tmp, { force: true }).catch(() => {});
      throw err;
    }
  }

  /** Queues a write of tenants.json with the state as it is now; resolves when it is on disk. */
  private saveTenants(): Promise<void> {
    const file = this.file;
    if (file === undefined) return Promise.resolve();
    const text = JSON.stringify({
      version: FILE_VERSION,
      tenants: [...this.tenants.values()],
      tokens: [...this.tokens.values()],
    });
    const write = this.writes.then(() => this.replaceFile(file, text));
    this.writes = write.catch(() => {});
    return write.catch((err: unknown) => {
      throw new AdminError('unavailable', `cannot save ${file}: ${(err as Error).message}`);
    });
  }

  private scheduleHistorySave(): void {
    if (this.historyFile === undefined) return;
    this.historyDirty = true;
    if (this.historyTimer !== undefined || this.closed) return;
    this.historyTimer = setTimeout(() => {
      this.historyTimer = undefined;
      void this.saveHistory().catch(() => {});
    }, HISTORY_SAVE_DELAY_MS);
    this.historyTimer.unref();
  }

  private saveHistory(): Promise<void> {
    const file = this.historyFile;
    if (file === undefined || !this.historyDirty) return Promise.resolve();
    this.historyDirty = false;
    const text = JSON.stringify({ version: FILE_VERSION, events: Object.fromEntries(this.events) });
    const write = this.writes.then(() => this.replaceFile(file, text));
    this.writes = write.catch(() => {});
    return write;
  }

  // ---------------------------------------------------------------- tenants

  private checkOpen(): void {
    if (this.closed) throw new AdminError('unavailable', 'the tenant store is closed');
  }

  /** Throws conflict when another tenant holds one of `names`. */
  private checkNamesFree(tenantId: string, names: readonly string[]): void {
    for (const name of names) {
      const owner = this.reserved.get(name);
      if (owner !== undefined && owner !== tenantId) throw new AdminError('conflict', `name "${name}" is reserved by tenant ${owner}`);
    }
  }

  async createTenant(input: { id?: string; name: string; quotas?: TenantQuotas; reservedNames?: readonly string[] }): Promise<Tenant> {
    this.checkOpen();
    const valid = checkCreate(input);
    if (this.tenants.has(valid.id)) throw new AdminError('conflict', `tenant ${valid.id} exists`);
    if (this.tenants.size >= MAX_TENANTS) throw new AdminError('conflict', `the store holds ${MAX_TENANTS} tenants, its limit; delete some first`);
    this.checkNamesFree(valid.id, valid.reservedNames);
    const tenant: Tenant = { ...valid, createdAt: this.now() };
    this.tenants.set(tenant.id, tenant);
    for (const name of tenant.reservedNames) this.reserved.set(name, tenant.id);
    await this.saveTenants();
    return copyTenant(tenant);
  }

  async getTenant(id: string): Promise<Tenant | undefined> {
    this.checkOpen();
    const t = this.tenants.get(id);
    return t === undefined ? undefined : copyTenant(t);
  }

  async listTenants(): Promise<Tenant[]> {
    this.checkOpen();
    return [...this.tenants.values()].sort((a, b) => a.createdAt - b.createdAt || a.id.localeCompare(b.id)).map(copyTenant);
  }

  async updateTenant(id: string, patch: { name?: string; quotas?: TenantQuotas; reservedNames?: readonly string[] }): Promise<Tenant | undefined> {
    this.checkOpen();
    const valid = checkPatch(patch);
    const old = this.tenants.get(id);
    if (old === undefined) return undefined;
    if (valid.reservedNames !== undefined) this.checkNamesFree(id, valid.reservedNames);
    const next: Tenant = {
      ...old,
      ...(valid.name !== undefined ? { name: valid.name } : {}),
      ...(valid.quotas !== undefined ? { quotas: valid.quotas } : {}),
      ...(valid.reservedNames !== undefined ? { reservedNames: valid.reservedNames } : {}),
    };
    for (const name of old.reservedNames) this.reserved.delete(name);
    for (const name of next.reservedNames) this.reserved.set(name, id);
    this.tenants.set(id, next);
    await this.saveTenants();
    return copyTenant(next);
  }

  async deleteTenant(id: string): Promise<boolean> {
    this.checkOpen();
    const t = this.tenants.get(id);
    if (t === undefined) return false;
    this.tenants.delete(id);
    for (const name of t.reservedNames) this.reserved.delete(name);
    for (const token of [...this.tokens.values()]) if (token.tenantId === id) this.tokens.delete(token.id);
    if (this.events.delete(id)) this.scheduleHistorySave();
    await this.saveTenants();
    return true;
  }

  // ---------------------------------------------------------------- tokens

  async createToken(tenantId: string, description?: string): Promise<{ token: string; info: TokenInfo }> {
    this.checkOpen();
    const desc = checkDescription(description);
    if (!this.tenants.has(tenantId)) throw new AdminError('not_found', `no tenant ${tenantId}`);
    let count = 0;
    for (const t of this.tokens.values()) if (t.tenantId === tenantId) count++;
    if (count >= MAX_TOKENS_PER_TENANT) {
      throw new AdminError('conflict', `tenant ${tenantId} has ${MAX_TOKENS_PER_TENANT} tokens, the limit; revoke unused ones first`);
    }
    const fresh = generateToken();
    const stored: StoredToken = { id: fresh.id, tenantId, digest: fresh.digest, createdAt: this.now(), ...(desc !== undefined ? { description: desc } : {}) };
    this.tokens.set(stored.id, stored);
    await this.saveTenants();
    return { token: fresh.token, info: tokenInfo(stored) };
  }

  async listTokens(tenantId: string): Promise<TokenInfo[]> {
    this.checkOpen();
    return [...this.tokens.values()]
      .filter((t) => t.tenantId === tenantId)
      .sort((a, b) => a.createdAt - b.createdAt || a.id.localeCompare(b.id))
      .map(tokenInfo);
  }

  async revokeToken(tokenId: string): Promise<boolean> {
    this.checkOpen();
    if (!this.tokens.delete(tokenId)) return false;
    await this.saveTenants();
    return true;
  }

  async authenticate(token: string): Promise<Authenticated | undefined> {
    this.checkOpen();
    const parsed = parseToken(token);
    if (parsed === undefined) return undefined;
    const stored = this.tokens.get(parsed.id);
    if (stored === undefined || !secretMatches(parsed.secret, stored.digest)) return undefined;
    const tenant = this.tenants.get(stored.tenantId);
    return tenant === undefined ? undefined : { tenant: copyTenant(tenant), tokenId: stored.id };
  }

  async validTokenIds(tokenIds: readonly string[]): Promise<Set<string>> {
    this.checkOpen();
    return new Set(tokenIds.filter((id) => this.tokens.has(id)));
  }

  async nameReservedBy(name: string): Promise<string | undefined> {
    this.checkOpen();
    return this.reserved.get(name);
  }

  // ---------------------------------------------------------------- history

  private trim(tenantId: string): void {
    const list = this.events.get(tenantId);
    if (list === undefined) return;
    const oldest = this.now() - this.maxAgeMs;
    let drop = Math.max(0, list.length - this.maxEvents);
    while (drop < list.length && (list[drop] as HistoryEvent).at < oldest) drop++;
    if (drop > 0) list.splice(0, drop);
  }

  async recordHistory(tenantId: string, event: HistoryEvent): Promise<void> {
    this.checkOpen();
    // A tenant deleted while its agent was connected: nothing to record it for.
    if (!this.tenants.has(tenantId)) return;
    let list = this.events.get(tenantId);
    if (list === undefined) {
      list = [];
      this.events.set(tenantId, list);
    }
    list.push({ ...event });
    this.trim(tenantId);
    this.scheduleHistorySave();
  }

  async history(tenantId: string, limit?: number): Promise<HistoryEvent[]> {
    this.checkOpen();
    const n = checkHistoryLimit(limit);
    this.trim(tenantId);
    const list = this.events.get(tenantId) ?? [];
    return list.slice(-n).reverse();
  }

  /** Saves pending history and waits for every write. Idempotent. */
  async close(): Promise<void> {
    if (this.closed) return this.writes;
    this.closed = true;
    if (this.historyTimer !== undefined) clearTimeout(this.historyTimer);
    this.historyTimer = undefined;
    await this.saveHistory().catch(() => {});
    await this.writes;
  }
}
