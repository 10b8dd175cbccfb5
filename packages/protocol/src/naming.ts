/**
 * Tunnel names. A key's label is the lowercase unpadded base32 of SHA-256 over its RFC 7638
 * JWK thumbprint input; a named session's label is the base32 of SHA-256 over that thumbprint
 * followed by the UTF-8 name. Friendly names are DNS labels. Pure functions.
 */
import { createHash } from 'node:crypto';
import base32Encode from 'base32-encode';
import { BurrowError } from './errors';

/** Length of every key-derived label: ceil(256 / 5). */
export const KEY_LABEL_LENGTH = 52;
const KEY_LABEL_PATTERN = /^[a-z2-7]{52}$/;
const DNS_LABEL_PATTERN = /^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$/;
const SESSION_NAME_PATTERN = /^[A-Za-z0-9._-]{1,63}$/;

function sha256(...parts: Uint8Array[]): Buffer {
  const h = createHash('sha256');
  for (const p of parts) h.update(p);
  return h.digest();
}

export function base64url(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('base64url');
}

export function fromBase64url(text: string): Buffer {
  if (!/^[A-Za-z0-9_-]*$/.test(text)) throw new BurrowError('BURROW_ERR_BAD_REGISTRATION', 'not base64url');
  return Buffer.from(text, 'base64url');
}

/** RFC 7638 thumbprint input for an Ed25519 public key: members in lexicographic order, no spaces. */
export function thumbprintInput(publicKey: Uint8Array): string {
  return `{"crv":"Ed25519","kty":"OKP","x":"${base64url(publicKey)}"}`;
}

/** RFC 7638 JWK thumbprint (SHA-256) of an Ed25519 public key. */
export function thumbprint(publicKey: Uint8Array): Buffer {
  return sha256(Buffer.from(thumbprintInput(publicKey), 'utf8'));
}

function base32Label(digest: Buffer): string {
  return base32Encode(digest, 'RFC4648', { padding: false }).toLowerCase();
}

/** The stable label of a key, or of one named session of that key. */
export function labelFor(publicKey: Uint8Array, session?: string): string {
  const tp = thumbprint(publicKey);
  if (session === undefined) return base32Label(tp);
  validateSessionName(session);
  return base32Label(sha256(tp, Buffer.from(session, 'utf8')));
}

export function isKeyLabel(label: string): boolean {
  return KEY_LABEL_PATTERN.test(label);
}

export function validateSessionName(name: string): void {
  if (!SESSION_NAME_PATTERN.test(name)) {
    throw new BurrowError('BURROW_ERR_INVALID_NAME', `session name "${name}" must be 1-63 characters of letters, digits, '.', '_' or '-'`);
  }
}

/** Normalizes a requested friendly name (lowercase) and checks it is a DNS label that cannot pose as a key label. */
export function normalizeSubdomain(name: string): string {
  const lower = name.toLowerCase();
  if (!DNS_LABEL_PATTERN.test(lower)) {
    throw new BurrowError(
      'BURROW_ERR_INVALID_NAME',
      `subdomain "${name}" is not a DNS label: use 1-63 letters, digits or '-', not starting or ending with '-'`,
    );
  }
  if (isKeyLabel(lower)) {
    throw new BurrowError('BURROW_ERR_INVALID_NAME', `subdomain "${name}" looks like a key-derived label; choose a shorter name`);
  }
  return lower;
}

/**
 * host[:port] of a URL, lowercased, default port dropped; ws/wss count as http/https.
 * Registration audiences are compared this way.
 */
export function urlAuthority(url: string): string {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw new BurrowError('BURROW_ERR_WRONG_AUDIENCE', `audience "${url}" is not a URL`);
  }
  return u.host.toLowerCase();
}

/** host:port as written in URLs and logs: IPv6 addresses in brackets. */
export function hostPort(host: string, port: number): string {
  return `${host.includes(':') ? `[${host}]` : host}:${port}`;
}
