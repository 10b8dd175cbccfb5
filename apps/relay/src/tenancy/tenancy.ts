/**
 * Tenancy at run time, on one relay node: who may register (token mode), what a session's
 * tenant may do (quotas), closing sessions whose token was revoked (checked every second), the
 * fleet-wide listing and disconnects the admin API offers, and the tenant connection history.
 */
import type { Bus, TunnelPolicy } from '@burrow/bus';
import { BurrowError, type VerifiedRegistration } from '@burrow/protocol';
import type { FastifyBaseLogger } from 'fastify';
import type { RelayConfig } from '../config';
import type { LocalSessions } from '../localSessions';
import type { Fleet } from './fleet';
import { RateLimiter } from './rateLimiter';
import type { HistoryEvent, LiveTunnel, LiveTunnels, Tenant, TenantStore } from './types';

/** How often live sessions' tokens are checked against the store (revocation reaches every node within this). */
export const REVOCATION_CHECK_MS = 1000;

/** What a registration is admitted as. */
export interface Admission {
  readonly tenant?: Tenant;
  readonly tokenId?: string;
  readonly policy?: TunnelPolicy;
}

/** The parts of a session tenancy reads. */
export interface TenantSession {
  readonly id: string;
  readonly labels: readonly string[];
  readonly remoteAddress: string;
  readonly connectedAt: number;
  readonly tenant: Tenant | undefined;
  readonly tokenId: string | undefined;
  readonly requests: number;
  readonly bytesIn: number;
  readonly bytesOut: number;
  readonly isActive: boolean;
  readonly kind: LiveTunnel['kind'];
  readonly tcpPort: number | undefined;
  close(code: 'BURROW_ERR_TOKEN_REVOKED' | 'BURROW_ERR_ADMIN_DISCONNECT', message: string): void;
}

export class Tenancy implements LiveTunnels {
  readonly rate: RateLimiter;
  private sweepTimer: NodeJS.Timeout | undefined;
  private refreshTimer: NodeJS.Timeout | undefined;
  private sweeping = false;

  constructor(
    private readonly config: RelayConfig,
    private readonly bus: Bus,
    readonly store: TenantStore | undefined,
    readonly fleet: Fleet,
    private readonly sessions: LocalSessions,
    private readonly log: FastifyBaseLogger,
  ) {
    this.rate = new RateLimiter(fleet);
  }

  start(): void {
    this.rate.start();
    this.sweepTimer = setInterval(() => void this.sweep(), REVOCATION_CHECK_MS);
    this.sweepTimer.unref();
    this.refreshTimer = setInterval(() => void this.refresh(), Math.max(100, Math.floor(this.bus.leaseTtlMs / 3)));
    this.refreshTimer.unref();
  }

  stop(): void {
    this.rate.stop();
    clearInterval(this.sweepTimer);
    clearInterval(this.refreshTimer);
  }

  /**
   * Decides a registration: in token mode the token must name a live tenant; reserved names
   * belong to their tenant; a tenant at its tunnel quota is refused. Takes the session's tunnel
   * slot (release it with sessionClosed). Throws BurrowError with the code the agent is told.
   */
  async admit(verified: VerifiedRegistration & { readonly token?: string; readonly access?: TunnelPolicy['access'] }, sessionId: string): Promise<Admission> {
    let tenant: Tenant | undefined;
    let tokenId: string | undefined;
    if (verified.token === undefined && this.config.auth === 'token') {
      throw new BurrowError('BURROW_ERR_TOKEN_REQUIRED', 'this relay only admits agents with a tenant token: start the agent with --token <token>');
    }
    // In open mode a token is optional, but one that is given must be valid: it brings its tenant's quotas.
    if (verified.token !== undefined) {
      const found = await this.storeOrFail().authenticate(verified.token);
      if (found === undefined) throw new BurrowError('BURROW_ERR_TOKEN_INVALID', 'the tenant token is not valid on this relay (revoked, or mistyped)');
      ({ tenant, tokenId } = found);
    }
    if (verified.subdomain !== undefined && this.store !== undefined) {
      const owner = await this.store.nameReservedBy(verified.subdomain);
      if (owner !== undefined && owner !== tenant?.id) {
        throw new BurrowError('BURROW_ERR_NAME_RESERVED', `the name "${verified.subdomain}" is reserved for another tenant; choose another --subdomain`);
      }
    }
    const max = tenant?.quotas.maxTunnels;
    if (tenant !== undefined && max !== undefined && !(await this.fleet.acquireSlot(tenant.id, sessionId, max))) {
      throw new BurrowError('BURROW_ERR_QUOTA_TUNNELS', `tenant "${tenant.id}" already has its ${max} tunnels connected; stop one or ask for a higher quota`);
    }
    const policy: TunnelPolicy = {
      ...(tenant !== undefined ? { tenant: tenant.id } : {}),
      ...(verified.access !== undefined ? { access: verified.access } : {}),
      ...(tenant?.quotas.maxBodyBytes !== undefined ? { maxBodyBytes: tenant.quotas.maxBodyBytes } : {}),
      ...(tenant?.quotas.requestsPerMinute !== undefined ? { requestsPerMinute: tenant.quotas.requestsPerMinute } : {}),
    };
    return {
      ...(tenant !== undefined ? { tenant } : {}),
      ...(tokenId !== undefined ? { tokenId } : {}),
      ...(Object.keys(policy).length > 0 ? { policy } : {}),
    };
  }

  private storeOrFail(): TenantStore {
    if (this.store === undefined) throw new BurrowError('BURROW_ERR_TOKEN_INVALID', 'this relay keeps no tenants, so no token is valid here');
    return this.store;
  }

  /** A session registered: history and listing. */
  sessionOpened(s: TenantSession): void {
    if (s.tenant !== undefined) this.history(s.tenant.id, this.event(s, 'connect'));
    // One entry, not the node's whole listing: a reconnect storm must not cost O(sessions) each.
    this.fleet.upsert(this.liveOf(s)).catch((err: unknown) => this.log.debug({ err }, 'could not publish a live tunnel; the periodic refresh will'));
  }

  /** A session ended (registered or not): its slot, history and listing. */
  sessionClosed(s: TenantSession, reason: string, registered: boolean): void {
    if (registered) {
      this.fleet.remove(s.id).catch((err: unknown) => this.log.debug({ err }, 'could not unpublish a live tunnel; the periodic refresh will'));
    }
    const tenant = s.tenant;
    if (tenant === undefined) return;
    if (tenant.quotas.maxTunnels !== undefined) {
      this.fleet.releaseSlot(tenant.id, s.id).catch((err: unknown) => this.log.debug({ err }, 'could not release a tunnel slot; it expires by itself'));
    }
    if (registered) this.history(tenant.id, { ...this.event(s, 'disconnect'), reason });
  }

  private event(s: TenantSession, kind: HistoryEvent['kind']): HistoryEvent {
    return { at: Date.now(), kind, label: s.labels[0] ?? '', node: this.bus.nodeId, sessionId: s.id, peer: s.remoteAddress };
  }

  private history(tenantId: string, event: HistoryEvent): void {
    this.store?.recordHistory(tenantId, event).catch((err: unknown) => this.log.warn({ err, tenant: tenantId }, 'could not record connection history'));
  }

  /** This node's registered sessions, as the admin API lists them. */
  localLive(): LiveTunnel[] {
    const out: LiveTunnel[] = [];
    for (const s of this.sessions.byId.values()) {
      const t: TenantSession = s;
      if (t.isActive) out.push(this.liveOf(t));
    }
    return out;
  }

  private liveOf(t: TenantSession): LiveTunnel {
    return {
      kind: t.kind,
      label: t.labels[0] ?? '',
      ...(t.tcpPort !== undefined ? { tcpPort: t.tcpPort } : {}),
      names: t.labels.slice(1),
      ...(t.tenant !== undefined ? { tenant: t.tenant.id } : {}),
      node: this.bus.nodeId,
      sessionId: t.id,
      connectedAt: t.connectedAt,
      peer: t.remoteAddress,
      requests: t.requests,
      bytesIn: t.bytesIn,
      bytesOut: t.bytesOut,
    };
  }

  private async refresh(): Promise<void> {
    try {
      await this.fleet.refresh(this.localLive());
    } catch (err) {
      this.log.debug({ err }, 'could not publish live tunnels; retrying next period');
    }
  }

  /** Closes sessions whose token was revoked (or whose tenant was deleted). */
  async sweep(): Promise<void> {
    if (this.store === undefined || this.sweeping) return;
    const held = new Map<string, TenantSession[]>();
    for (const s of this.sessions.byId.values()) {
      const t: TenantSession = s;
      if (t.tokenId === undefined || !t.isActive) continue;
      const list = held.get(t.tokenId) ?? [];
      list.push(t);
      held.set(t.tokenId, list);
    }
    if (held.size === 0) return;
    this.sweeping = true;
    try {
      const valid = await this.store.validTokenIds([...held.keys()]);
      for (const [tokenId, list] of held) {
        if (valid.has(tokenId)) continue;
        for (const s of list) {
          this.log.info({ session: s.id, tenant: s.tenant?.id, token: tokenId }, 'token revoked: closing its session');
          s.close('BURROW_ERR_TOKEN_REVOKED', 'the tenant token of this tunnel was revoked');
        }
      }
    } catch (err) {
      this.log.debug({ err }, 'could not check tokens; retrying');
    } finally {
      this.sweeping = false;
    }
  }

  // LiveTunnels, for the admin API.

  async list(): Promise<LiveTunnel[]> {
    return this.fleet.list();
  }

  async disconnect(label: string): Promise<boolean> {
    const local = this.sessions.byLabel.get(label);
    if (local !== undefined) {
      local.close('BURROW_ERR_ADMIN_DISCONNECT', 'an operator disconnected this tunnel');
      return true;
    }
    const found = await this.bus.registry.lookup(label);
    if (found.state !== 'online') return false;
    this.bus.publish(found.holder.nodeId, { kind: 'closeSession', sessionId: found.holder.sessionId, code: 'BURROW_ERR_ADMIN_DISCONNECT' });
    return true;
  }
}
