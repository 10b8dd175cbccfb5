/**
 * Private TCP shares (`burrow share tcp` and `burrow connect`). A share is a name in its own
 * registry namespace (`share:<name>`, never a host: ':' is no host character); a connecting
 * agent opens one stream per local connection whose OPEN payload is a small JSON connect
 * request naming the share, its proof (the share secret) and, optionally, which of the share's
 * targets it wants. Pure.
 */
import { createHash } from 'node:crypto';
import { BurrowError } from './errors';

/** Registry labels of shares start with this; no HTTP label can (':' is not a host character). */
export const SHARE_LABEL_PREFIX = 'share:';
/** Longest share secret a connect request may carry. */
export const MAX_SHARE_SECRET_CHARS = 200;

const SHARE_NAME_PATTERN = /^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$/;
const TCP_TARGET_PATTERN = /^(?:\[[0-9a-fA-F:.]+\]|[A-Za-z0-9._-]{1,253}):\d{1,5}$/;
const DIGEST_PATTERN = /^[A-Za-z0-9_-]{43}$/;

/** A share name, lowercased: a DNS label (1-63 letters, digits or '-'). Throws BURROW_ERR_INVALID_NAME. */
export function normalizeShareName(name: string): string {
  const lower = name.toLowerCase();
  if (!SHARE_NAME_PATTERN.test(lower)) {
    throw new BurrowError('BURROW_ERR_INVALID_NAME', `share name "${name}" must be 1-63 letters, digits or '-', not starting or ending with '-'`);
  }
  return lower;
}

/** The registry label of a share. */
export function shareLabel(name: string): string {
  return `${SHARE_LABEL_PREFIX}${name}`;
}

/** base64url SHA-256 of a share secret: what the sharing agent registers and the relay compares. */
export function shareSecretDigest(secret: string): string {
  return createHash('sha256').update(secret, 'utf8').digest('base64url');
}

/** True when `s` looks like a shareSecretDigest (43 base64url characters). */
export function isShareSecretDigest(s: unknown): s is string {
  return typeof s === 'string' && DIGEST_PATTERN.test(s);
}

/** A share secret as given on a command line or in a connect request. Throws BURROW_ERR_BAD_REQUEST. */
export function validateShareSecret(secret: unknown): string {
  if (typeof secret !== 'string' || secret.length === 0 || secret.length > MAX_SHARE_SECRET_CHARS) {
    throw new BurrowError('BURROW_ERR_BAD_REQUEST', `a share secret must be a string of 1 to ${MAX_SHARE_SECRET_CHARS} characters`);
  }
  return secret;
}

/** `host:port` (IPv6 in brackets, port 1-65535). Throws BURROW_ERR_BAD_REQUEST. */
export function validateTcpTarget(target: unknown): string {
  if (typeof target !== 'string' || !TCP_TARGET_PATTERN.test(target)) {
    throw new BurrowError('BURROW_ERR_BAD_REQUEST', `target must be host:port, not ${JSON.stringify(target)}`);
  }
  const port = Number(target.slice(target.lastIndexOf(':') + 1));
  if (port < 1 || port > 65535) throw new BurrowError('BURROW_ERR_BAD_REQUEST', `target port in "${target}" must be 1-65535`);
  return target;
}

/** The OPEN payload of a stream a connecting agent opens. */
export interface ConnectRequest {
  /** Share name. */
  readonly share: string;
  /** The share secret, if the agent has one (the relay compares its SHA-256 with the share's). */
  readonly secret?: string;
  /** One of the share's targets (host:port); absent: the share's main target. */
  readonly target?: string;
}

export function encodeConnectRequest(req: ConnectRequest): Buffer {
  return Buffer.from(
    JSON.stringify({
      share: req.share,
      ...(req.secret !== undefined ? { secret: req.secret } : {}),
      ...(req.target !== undefined ? { target: req.target } : {}),
    }),
    'utf8',
  );
}

/** Validates a connect request; unknown fields are refused. Throws BURROW_ERR_BAD_REQUEST (or INVALID_NAME for the name). */
export function decodeConnectRequest(payload: Buffer): ConnectRequest {
  let value: unknown;
  try {
    value = JSON.parse(payload.toString('utf8'));
  } catch {
    throw new BurrowError('BURROW_ERR_BAD_REQUEST', 'connect request is not valid JSON');
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value))
    throw new BurrowError('BURROW_ERR_BAD_REQUEST', 'connect request is not a JSON object');
  const o = value as Record<string, unknown>;
  const unknown = Object.keys(o).find((k) => k !== 'share' && k !== 'secret' && k !== 'target');
  if (unknown !== undefined) throw new BurrowError('BURROW_ERR_BAD_REQUEST', `connect request has an unknown field "${unknown}"`);
  if (typeof o.share !== 'string') throw new BurrowError('BURROW_ERR_BAD_REQUEST', 'connect request needs a string "share"');
  const share = normalizeShareName(o.share);
  return {
    share,
    ...(o.secret !== undefined ? { secret: validateShareSecret(o.secret) } : {}),
    ...(o.target !== undefined ? { target: validateTcpTarget(o.target) } : {}),
  };
}
