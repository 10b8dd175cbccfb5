/**
 * Tenant tokens: `burrow_<id>_<secret>`, where <id> is 12 base32 characters (public, shown in
 * listings, the lookup key) and <secret> is 32 random bytes in base64url. Stores keep only the
 * SHA-256 digest of the secret and compare digests in constant time. Pure: no I/O, no store.
 */
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';

export const TOKEN_PREFIX = 'burrow_';
/** Characters of a token id (base32, 60 bits): ids are unique by chance, and short enough to type. */
export const TOKEN_ID_CHARS = 12;
/** Random bytes of a token secret: 256 bits, never guessable. */
export const TOKEN_SECRET_BYTES = 32;
/** base64url of 32 bytes, unpadded. */
const TOKEN_SECRET_CHARS = 43;
/** A whole token is exactly this long; anything else is rejected before hashing. */
export const TOKEN_CHARS = TOKEN_PREFIX.length + TOKEN_ID_CHARS + 1 + TOKEN_SECRET_CHARS;

const BASE32 = 'abcdefghijklmnopqrstuvwxyz234567';
const TOKEN_ID_PATTERN = /^[a-z2-7]{12}$/;
const TOKEN_PATTERN = /^burrow_([a-z2-7]{12})_([A-Za-z0-9_-]{43})$/;

/** `n` random base32 characters (lowercase a-z, 2-7). */
export function randomBase32(n: number): string {
  const bytes = randomBytes(n);
  let out = '';
  // 256 is a multiple of 32: taking the low 5 bits of each byte is unbiased.
  for (const b of bytes) out += BASE32[b & 31];
  return out;
}

export function isTokenId(value: string): boolean {
  return TOKEN_ID_PATTERN.test(value);
}

/** Hex SHA-256 of a secret: what stores keep. */
export function digestSecret(secret: string): string {
  return createHash('sha256').update(secret, 'utf8').digest('hex');
}

export interface NewToken {
  /** The whole token: shown to the operator once, never stored. */
  readonly token: string;
  readonly id: string;
  /** Hex SHA-256 of the secret part. */
  readonly digest: string;
}

export function generateToken(): NewToken {
  const id = randomBase32(TOKEN_ID_CHARS);
  const secret = randomBytes(TOKEN_SECRET_BYTES).toString('base64url');
  return { token: `${TOKEN_PREFIX}${id}_${secret}`, id, digest: digestSecret(secret) };
}

/** Splits a token into id and secret; undefined when it is not a well-formed burrow token. */
export function parseToken(token: string): { id: string; secret: string } | undefined {
  if (typeof token !== 'string' || token.length !== TOKEN_CHARS) return undefined;
  const m = TOKEN_PATTERN.exec(token);
  if (m === null) return undefined;
  return { id: m[1] as string, secret: m[2] as string };
}

/** Whether `secret` hashes to the stored hex digest; constant time over the digest bytes. */
export function secretMatches(secret: string, storedDigest: string): boolean {
  const expected = Buffer.from(storedDigest, 'hex');
  const actual = createHash('sha256').update(secret, 'utf8').digest();
  // A malformed stored digest (not 32 bytes) never matches; lengths are public (always 32).
  if (expected.length !== actual.length) return false;
  return timingSafeEqual(expected, actual);
}

/** Constant-time equality of two strings of any length (compares their SHA-256 digests). */
export function safeEqual(a: string, b: string): boolean {
  const da = createHash('sha256').update(a, 'utf8').digest();
  const db = createHash('sha256').update(b, 'utf8').digest();
  return timingSafeEqual(da, db);
}
