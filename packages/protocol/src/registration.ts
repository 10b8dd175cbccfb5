/**
 * Signed registration. The agent signs claims (its public key, the relay's nonce, the time,
 * a ttl and the relay it meant to reach; optionally visitor access rules and a tenant token)
 * with its ed25519 key; the relay verifies every part before any traffic. Pure: callers pass
 * the clock and the nonce state in.
 */
import { type AccessRules, validateAccessRules } from './access';
import { PROTOCOL_VERSION, REGISTRATION_TTL_MS } from './constants';
import type { RegisterPayload } from './control';
import { ED25519_PUBLIC_KEY_BYTES, publicKeyFromSeed, signDetached, verifyDetached } from './ed25519';
import { BurrowError } from './errors';
import { base64url, fromBase64url, labelFor, normalizeSubdomain, urlAuthority, validateSessionName } from './naming';
import { isShareSecretDigest, normalizeShareName } from './share';

/** Clock difference tolerated between agent and relay. */
export const MAX_CLOCK_SKEW_MS = 30_000;
/** Longest tenant token accepted in a registration (real ones are far shorter). Not exported: see validateTenantToken. */
const MAX_TENANT_TOKEN_CHARS = 200;

/** A tenant token as a registration may carry it: a string of 1 to 200 characters. Throws BURROW_ERR_BAD_REGISTRATION. */
export function validateTenantToken(token: unknown): string {
  if (typeof token !== 'string' || token.length === 0 || token.length > MAX_TENANT_TOKEN_CHARS) {
    throw new BurrowError('BURROW_ERR_BAD_REGISTRATION', `token must be a string of 1 to ${MAX_TENANT_TOKEN_CHARS} characters`);
  }
  return token;
}

export interface RegistrationClaims {
  readonly v: number;
  /** base64url ed25519 public key (32 bytes). */
  readonly pub: string;
  readonly nonce: string;
  /** Signing time, ms since the epoch. */
  readonly iat: number;
  /** Validity after iat, ms (at most REGISTRATION_TTL_MS). */
  readonly ttl: number;
  /** The relay URL the agent dialled. */
  readonly aud: string;
  readonly session?: string;
  readonly subdomain?: string;
  /** Visitor access rules for this tunnel (digests only). */
  readonly access?: AccessRules;
  /** Tenant token, on relays that require one. */
  readonly token?: string;
  /** The agent wants a public TCP port for its label (`burrow tcp`). */
  readonly tcp?: true;
  /** A private TCP share under this name (`burrow share tcp`); no public URL or port. */
  readonly share?: ShareClaim;
  /** The agent connects to shares (`burrow connect`): it opens streams and serves none. */
  readonly connect?: true;
}

/** What a sharing agent registers: the share's name and the SHA-256 (base64url) of its secret. */
export interface ShareClaim {
  readonly name: string;
  /** Without it, only agents of the share's tenant may connect (token mode). */
  readonly secretSha256?: string;
}

export interface SignRegistrationInput {
  /** 64-byte secret key (seed followed by public key). */
  readonly secretKey: Uint8Array;
  readonly nonce: string;
  readonly audience: string;
  readonly nowMs: number;
  readonly ttlMs?: number;
  readonly session?: string;
  readonly subdomain?: string;
  readonly access?: AccessRules;
  readonly token?: string;
  readonly tcp?: boolean;
  readonly share?: ShareClaim;
  readonly connect?: boolean;
}

export function signRegistration(input: SignRegistrationInput): RegisterPayload {
  const claims: RegistrationClaims = {
    v: PROTOCOL_VERSION,
    pub: base64url(input.secretKey.length === 64 ? input.secretKey.subarray(32) : publicKeyFromSeed(input.secretKey)),
    nonce: input.nonce,
    iat: input.nowMs,
    ttl: input.ttlMs ?? REGISTRATION_TTL_MS,
    aud: input.audience,
    ...(input.session !== undefined ? { session: input.session } : {}),
    ...(input.subdomain !== undefined ? { subdomain: input.subdomain } : {}),
    ...(input.access !== undefined ? { access: input.access } : {}),
    ...(input.token !== undefined ? { token: input.token } : {}),
    ...(input.tcp === true ? { tcp: true as const } : {}),
    ...(input.share !== undefined ? { share: input.share } : {}),
    ...(input.connect === true ? { connect: true as const } : {}),
  };
  const bytes = Buffer.from(JSON.stringify(claims), 'utf8');
  return { claims: base64url(bytes), sig: base64url(signDetached(bytes, input.secretKey)) };
}

export interface VerifyRegistrationInput {
  /** The nonce this relay issued on this connection, or undefined if it was already used. */
  readonly expectedNonce: string | undefined;
  /** Authorities (host[:port]) this relay answers to. */
  readonly audiences: readonly string[];
  readonly nowMs: number;
}

export interface VerifiedRegistration {
  readonly publicKey: Uint8Array;
  /** base64url public key: the key's identity in registries. */
  readonly keyId: string;
  /** Label derived from the key (and session name). */
  readonly label: string;
  readonly session?: string;
  /** Normalized friendly name, if asked for. */
  readonly subdomain?: string;
  /** Validated, frozen visitor access rules, if the agent set any. */
  readonly access?: AccessRules;
  /** Tenant token as sent (unchecked: the relay authenticates it). */
  readonly token?: string;
  /** The agent asked for a public TCP port. */
  readonly tcp?: true;
  /** A private share (name normalized). */
  readonly share?: ShareClaim;
  /** A connecting agent. */
  readonly connect?: true;
}

/** A share claim as sent: an object with a valid name and optionally a digest, nothing else. */
function validateShareClaim(value: unknown): ShareClaim {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new BurrowError('BURROW_ERR_BAD_REGISTRATION', 'share must be an object');
  const o = value as Record<string, unknown>;
  const unknown = Object.keys(o).find((k) => k !== 'name' && k !== 'secretSha256');
  if (unknown !== undefined) throw new BurrowError('BURROW_ERR_BAD_REGISTRATION', `share has an unknown field "${unknown}"`);
  if (typeof o.name !== 'string') throw new BurrowError('BURROW_ERR_BAD_REGISTRATION', 'share.name must be a string');
  if (o.secretSha256 !== undefined && !isShareSecretDigest(o.secretSha256)) {
    throw new BurrowError('BURROW_ERR_BAD_REGISTRATION', 'share.secretSha256 must be the base64url SHA-256 of the secret (43 characters)');
  }
  const name = normalizeShareName(o.name);
  return { name, ...(o.secretSha256 !== undefined ? { secretSha256: o.secretSha256 as string } : {}) };
}

const b64 = (s: string): Buffer => fromBase64url(s);

export function verifyRegistration(payload: RegisterPayload, input: VerifyRegistrationInput): VerifiedRegistration {
  const bytes = b64(payload.claims);
  const sig = b64(payload.sig);
  let claims: Record<string, unknown>;
  try {
    const parsed: unknown = JSON.parse(bytes.toString('utf8'));
    if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) throw new Error('not an object');
    claims = parsed as Record<string, unknown>;
  } catch {
    throw new BurrowError('BURROW_ERR_BAD_REGISTRATION', 'registration claims are not a JSON object');
  }
  const { v, pub, nonce, iat, ttl, aud, session, subdomain, token, tcp, connect } = claims;
  if (v !== PROTOCOL_VERSION)
    // JSON.stringify, not String(): a parsed object may carry a "toString" that is not a function.
    throw new BurrowError(
      'BURROW_ERR_UNSUPPORTED_VERSION',
      `registration for protocol ${(JSON.stringify(v) ?? 'none').slice(0, 40)}, relay speaks ${PROTOCOL_VERSION}`,
    );
  if (typeof pub !== 'string' || typeof nonce !== 'string' || typeof aud !== 'string') {
    throw new BurrowError('BURROW_ERR_BAD_REGISTRATION', 'registration needs string pub, nonce and aud');
  }
  if (typeof iat !== 'number' || !Number.isSafeInteger(iat) || typeof ttl !== 'number' || !Number.isSafeInteger(ttl) || ttl <= 0) {
    throw new BurrowError('BURROW_ERR_BAD_REGISTRATION', 'registration needs integer iat and positive ttl (ms)');
  }
  if (session !== undefined && typeof session !== 'string') throw new BurrowError('BURROW_ERR_BAD_REGISTRATION', 'session must be a string');
  if (subdomain !== undefined && typeof subdomain !== 'string') throw new BurrowError('BURROW_ERR_BAD_REGISTRATION', 'subdomain must be a string');
  if (tcp !== undefined && tcp !== true) throw new BurrowError('BURROW_ERR_BAD_REGISTRATION', 'tcp must be true when present');
  if (connect !== undefined && connect !== true) throw new BurrowError('BURROW_ERR_BAD_REGISTRATION', 'connect must be true when present');
  const share = claims.share === undefined ? undefined : validateShareClaim(claims.share);
  // A share or a connector serves no public URL: nothing that shapes one goes with it.
  for (const [role, on] of [
    ['share', share !== undefined],
    ['connect', connect === true],
  ] as const) {
    if (!on) continue;
    const clash = (['tcp', 'subdomain', 'access', role === 'share' ? 'connect' : 'share'] as const).find((k) => claims[k] !== undefined);
    if (clash !== undefined) throw new BurrowError('BURROW_ERR_BAD_REGISTRATION', `${role} cannot be combined with ${clash}`);
  }
  const tenantToken = token === undefined ? undefined : validateTenantToken(token);
  const access = claims.access === undefined ? undefined : validateAccessRules(claims.access);
  if (tcp === true && access !== undefined && (access.basicAuth !== undefined || access.headers !== undefined)) {
    throw new BurrowError('BURROW_ERR_BAD_REGISTRATION', 'a TCP tunnel can limit visitors by address only (allowCidrs): credentials need HTTP');
  }
  const publicKey = b64(pub);
  if (publicKey.length !== ED25519_PUBLIC_KEY_BYTES) throw new BurrowError('BURROW_ERR_BAD_REGISTRATION', 'public key must be 32 bytes');
  if (!verifyDetached(bytes, sig, publicKey)) {
    throw new BurrowError('BURROW_ERR_BAD_SIGNATURE', 'registration signature does not match its public key');
  }
  if (input.expectedNonce === undefined || nonce !== input.expectedNonce) {
    throw new BurrowError('BURROW_ERR_NONCE_REPLAYED', 'registration nonce was not issued on this connection or was already used');
  }
  const lifetime = Math.min(ttl, REGISTRATION_TTL_MS);
  if (input.nowMs > iat + lifetime)
    throw new BurrowError('BURROW_ERR_TOKEN_EXPIRED', `registration signed ${input.nowMs - iat} ms ago, valid for ${lifetime} ms; check the agent's clock`);
  if (iat > input.nowMs + MAX_CLOCK_SKEW_MS)
    throw new BurrowError('BURROW_ERR_TOKEN_EXPIRED', `registration signed ${iat - input.nowMs} ms in the future; check the agent's clock`);
  const authority = urlAuthority(aud);
  if (!input.audiences.includes(authority)) {
    throw new BurrowError('BURROW_ERR_WRONG_AUDIENCE', `registration is for ${authority}, this relay is ${input.audiences.join(' or ')}`);
  }
  if (session !== undefined) validateSessionName(session);
  const label = labelFor(publicKey, session);
  return {
    publicKey,
    keyId: pub,
    label,
    ...(session !== undefined ? { session } : {}),
    ...(subdomain !== undefined ? { subdomain: normalizeSubdomain(subdomain) } : {}),
    ...(access !== undefined ? { access } : {}),
    ...(tenantToken !== undefined ? { token: tenantToken } : {}),
    ...(tcp === true ? { tcp: true as const } : {}),
    ...(share !== undefined ? { share } : {}),
    ...(connect === true ? { connect: true as const } : {}),
  };
}
