/**
 * Tenancy model: tenants own tokens; an agent registering with a token acts for its tenant, and
 * the tenant's quotas apply to it. Stores keep tenants, token digests (never tokens) and a
 * bounded connection history, in Redis when the relay has one, else in --data-dir (or memory).
 */

export interface TenantQuotas {
  /** Tunnels (agent sessions) at once, fleet-wide. */
  readonly maxTunnels?: number;
  /** Concurrent requests/streams over all its tunnels on one holder node. */
  readonly maxStreams?: number;
  /** Requests per minute over all its tunnels (429 with Retry-After beyond). */
  readonly requestsPerMinute?: number;
  /** Largest request or response body, overriding the relay's --max-body-bytes. */
  readonly maxBodyBytes?: number;
}

export interface Tenant {
  /** Stable id: [a-z0-9-]{1,40}. */
  readonly id: string;
  readonly name: string;
  readonly createdAt: number;
  readonly quotas: TenantQuotas;
  /** Friendly names (subdomains) only this tenant's keys may bind. */
  readonly reservedNames: readonly string[];
}

export interface TokenInfo {
  /** Public part of the token, shown in listings: the token is `burrow_<id>_<secret>`. */
  readonly id: string;
  readonly tenantId: string;
  readonly createdAt: number;
  readonly description?: string;
}

export interface HistoryEvent {
  readonly at: number;
  readonly kind: 'connect' | 'disconnect';
  readonly label: string;
  readonly node: string;
  readonly sessionId: string;
  /** Agent's address as the relay saw it. */
  readonly peer: string;
  /** Disconnects: the BURROW_ERR_* code or a short reason. */
  readonly reason?: string;
}

export interface Authenticated {
  readonly tenant: Tenant;
  readonly tokenId: string;
}

/** Where tenants and tokens live. Every method may reject with BURROW_ERR_BUS_UNAVAILABLE (Redis down). */
export interface TenantStore {
  createTenant(input: { id?: string; name: string; quotas?: TenantQuotas; reservedNames?: readonly string[] }): Promise<Tenant>;
  getTenant(id: string): Promise<Tenant | undefined>;
  listTenants(): Promise<Tenant[]>;
  updateTenant(id: string, patch: { name?: string; quotas?: TenantQuotas; reservedNames?: readonly string[] }): Promise<Tenant | undefined>;
  /** Deletes the tenant and revokes all its tokens. */
  deleteTenant(id: string): Promise<boolean>;
  /** Returns the token once (only its digest is kept). */
  createToken(tenantId: string, description?: string): Promise<{ token: string; info: TokenInfo }>;
  listTokens(tenantId: string): Promise<TokenInfo[]>;
  revokeToken(tokenId: string): Promise<boolean>;
  /** The tenant a token belongs to, comparing digests in constant time; undefined if unknown or revoked. */
  authenticate(token: string): Promise<Authenticated | undefined>;
  /** Of these token ids, the ones still valid (sessions holding others are closed). */
  validTokenIds(tokenIds: readonly string[]): Promise<Set<string>>;
  /** The tenant that reserved a name, if any. */
  nameReservedBy(name: string): Promise<string | undefined>;
  /** Appends to the tenant's connection history (bounded in count and age). */
  recordHistory(tenantId: string, event: HistoryEvent): Promise<void>;
  /** Newest first. */
  history(tenantId: string, limit?: number): Promise<HistoryEvent[]>;
  close(): Promise<void>;
}

/** A live tunnel as the admin API lists it. */
export interface LiveTunnel {
  /** http (and WebSocket), tcp (a public port), share (a private TCP share), connect (a share's client). */
  readonly kind: 'http' | 'tcp' | 'share' | 'connect';
  /** The registry label: key label, `share:<name>` for a share, empty for a connector. */
  readonly label: string;
  /** A tcp tunnel's public port. */
  readonly tcpPort?: number;
  /** Further labels of the same session (its friendly name). */
  readonly names: readonly string[];
  readonly tenant?: string;
  readonly node: string;
  readonly sessionId: string;
  readonly connectedAt: number;
  readonly peer: string;
  readonly requests: number;
  readonly bytesIn: number;
  readonly bytesOut: number;
}

/** What the admin API needs from the running relay (fleet-wide where Redis joins nodes). */
export interface LiveTunnels {
  list(): Promise<LiveTunnel[]>;
  /** Closes the session holding `label` wherever it is; false when no session holds it. */
  disconnect(label: string): Promise<boolean>;
}
