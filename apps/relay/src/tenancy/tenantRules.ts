/**
 * What a valid tenant, quota set, reserved name and token description are, and the limits every
 * TenantStore enforces. Pure: both stores (file and Redis) and the admin API's JSON schemas use
 * these, so a rule lives in one place. Throws AdminError('invalid') with a message saying what to change.
 */
import { AdminError } from './adminError';
import { randomBase32 } from './tokens';
import type { HistoryEvent, TenantQuotas } from './types';

export const TENANT_ID_PATTERN = '^[a-z0-9][a-z0-9-]{0,39}$';
/** A reserved name is one DNS label: it becomes <name>.<domain>. */
export const RESERVED_NAME_PATTERN = '^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$';
export const MAX_TENANT_NAME_CHARS = 100;
export const MAX_TOKEN_DESCRIPTION_CHARS = 200;
/** Tenants per store: bounds listings and the file store's size. */
export const MAX_TENANTS = 10_000;
/** Live (unrevoked) tokens per tenant: rotation needs a few, a leak should not make thousands. */
export const MAX_TOKENS_PER_TENANT = 100;
/** Reserved names per tenant. */
export const MAX_RESERVED_NAMES = 100;
/** Connection history kept per tenant: at most this many events… */
export const HISTORY_MAX_EVENTS = 1000;
/** …and none older than this. */
export const HISTORY_MAX_AGE_MS = 7 * 24 * 60 * 60 * 1000;
/** history() returns this many events unless asked for fewer. */
export const HISTORY_DEFAULT_LIMIT = 100;

/** Upper bound of each quota (all are positive integers). */
export const QUOTA_MAX = {
  maxTunnels: 1_000_000,
  maxStreams: 1_000_000,
  requestsPerMinute: 1_000_000_000,
  maxBodyBytes: 2 ** 40,
} as const satisfies Record<keyof TenantQuotas, number>;

const tenantIdRe = new RegExp(TENANT_ID_PATTERN);
const reservedNameRe = new RegExp(RESERVED_NAME_PATTERN);

export function isTenantId(value: unknown): value is string {
  return typeof value === 'string' && tenantIdRe.test(value);
}

export function checkTenantId(value: unknown): string {
  if (!isTenantId(value)) throw new AdminError('invalid', `tenant id ${JSON.stringify(value)} must be 1-40 of a-z, 0-9 and -, starting with a letter or digit`);
  return value;
}

export function checkTenantName(value: unknown): string {
  if (typeof value !== 'string' || value.trim() === '' || value.length > MAX_TENANT_NAME_CHARS) {
    throw new AdminError('invalid', `tenant name must be a non-empty string of at most ${MAX_TENANT_NAME_CHARS} characters`);
  }
  return value;
}

export function checkQuotas(value: unknown): TenantQuotas {
  if (value === undefined) return {};
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new AdminError('invalid', 'quotas must be an object');
  const out: Record<string, number> = {};
  for (const [key, v] of Object.entries(value)) {
    if (!Object.hasOwn(QUOTA_MAX, key)) throw new AdminError('invalid', `unknown quota "${key}"; known: ${Object.keys(QUOTA_MAX).join(', ')}`);
    if (v === undefined) continue;
    const max = QUOTA_MAX[key as keyof TenantQuotas];
    if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 1 || v > max) {
      throw new AdminError('invalid', `quota ${key} must be a whole number from 1 to ${max}`);
    }
    out[key] = v;
  }
  return out as TenantQuotas;
}

/** Validates reserved names; returns them deduplicated, in the order given. */
export function checkReservedNames(value: unknown): string[] {
  if (value === undefined) return [];
  if (!Array.isArray(value)) throw new AdminError('invalid', 'reservedNames must be an array of names');
  if (value.length > MAX_RESERVED_NAMES) throw new AdminError('invalid', `at most ${MAX_RESERVED_NAMES} reserved names per tenant`);
  for (const name of value) {
    if (typeof name !== 'string' || !reservedNameRe.test(name)) {
      throw new AdminError('invalid', `reserved name ${JSON.stringify(name)} must be a DNS label: 1-63 of a-z, 0-9 and -, not starting or ending with -`);
    }
  }
  return [...new Set(value as string[])];
}

export function checkDescription(value: unknown): string | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== 'string' || value.length > MAX_TOKEN_DESCRIPTION_CHARS) {
    throw new AdminError('invalid', `token description must be a string of at most ${MAX_TOKEN_DESCRIPTION_CHARS} characters`);
  }
  return value;
}

export interface TenantInput {
  readonly id: string;
  readonly name: string;
  readonly quotas: TenantQuotas;
  readonly reservedNames: string[];
}

/** Validates createTenant input; picks an id (t + 12 base32 characters) when none is given. */
export function checkCreate(input: { id?: unknown; name?: unknown; quotas?: unknown; reservedNames?: unknown }): TenantInput {
  if (typeof input !== 'object' || input === null) throw new AdminError('invalid', 'tenant must be an object');
  return {
    id: input.id === undefined ? `t${randomBase32(12)}` : checkTenantId(input.id),
    name: checkTenantName(input.name),
    quotas: checkQuotas(input.quotas),
    reservedNames: checkReservedNames(input.reservedNames),
  };
}

export interface TenantPatch {
  readonly name?: string;
  readonly quotas?: TenantQuotas;
  readonly reservedNames?: string[];
}

/** Validates updateTenant input. A present field replaces the stored one wholesale (quotas too). */
export function checkPatch(patch: { name?: unknown; quotas?: unknown; reservedNames?: unknown }): TenantPatch {
  if (typeof patch !== 'object' || patch === null) throw new AdminError('invalid', 'patch must be an object');
  const out: { name?: string; quotas?: TenantQuotas; reservedNames?: string[] } = {};
  if (patch.name !== undefined) out.name = checkTenantName(patch.name);
  if (patch.quotas !== undefined) out.quotas = checkQuotas(patch.quotas);
  if (patch.reservedNames !== undefined) out.reservedNames = checkReservedNames(patch.reservedNames);
  return out;
}

export function checkHistoryLimit(limit: number | undefined): number {
  if (limit === undefined) return HISTORY_DEFAULT_LIMIT;
  if (!Number.isSafeInteger(limit) || limit < 1) throw new AdminError('invalid', 'history limit must be a positive whole number');
  return Math.min(limit, HISTORY_MAX_EVENTS);
}

/** A stored history event, checked when read back (files and Redis may hold anything). */
export function isHistoryEvent(v: unknown): v is HistoryEvent {
  if (typeof v !== 'object' || v === null) return false;
  const e = v as Record<string, unknown>;
  return (
    typeof e.at === 'number' &&
    (e.kind === 'connect' || e.kind === 'disconnect') &&
    typeof e.label === 'string' &&
    typeof e.node === 'string' &&
    typeof e.sessionId === 'string' &&
    typeof e.peer === 'string' &&
    (e.reason === undefined || typeof e.reason === 'string')
  );
}
