/**
 * Whether a visitor may use a tunnel, by the AccessRules its agent registered: address allow
 * list first (403), then credentials (401), any one of the configured ones being enough. Pure:
 * no I/O, no logging, nothing a visitor sent is kept. Rules objects are compiled once (by
 * identity) into a WeakMap; a tunnel without rules costs one comparison.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import type { IncomingHttpHeaders } from 'node:http';
import { BlockList, isIP } from 'node:net';
import { type AccessRules, canonicalAuthorization } from '@burrow/protocol';

export interface Visitor {
  /** As visitorAddressResolver gives it: IPv4, IPv6, or IPv4-mapped IPv6. */
  readonly address: string;
  /** Node's parsed headers (lowercase names, latin1 values). */
  readonly headers: IncomingHttpHeaders;
}

export interface VisitorAllowed {
  readonly ok: true;
  /** Lowercase names of headers to remove (every instance) before forwarding: the credential that matched. */
  readonly strip: readonly string[];
}

export interface VisitorRefused {
  readonly ok: false;
  readonly code: 'BURROW_ERR_VISITOR_FORBIDDEN' | 'BURROW_ERR_VISITOR_UNAUTHORIZED';
  readonly message: string;
  /** Response headers to send with the refusal (WWW-Authenticate on a 401). */
  readonly headers: Readonly<Record<string, string>>;
}

export type VisitorDecision = VisitorAllowed | VisitorRefused;

const NO_HEADERS: Readonly<Record<string, string>> = Object.freeze({});
const allowed = (strip: readonly string[]): VisitorAllowed => Object.freeze({ ok: true, strip: Object.freeze([...strip]) });
/** The answer for every tunnel without rules (and every visitor who needs no credential). */
const ALLOWED = allowed([]);
const FORBIDDEN: VisitorRefused = Object.freeze({
  ok: false,
  code: 'BURROW_ERR_VISITOR_FORBIDDEN',
  message: 'Your address is not allowed to visit this tunnel',
  headers: NO_HEADERS,
});
export const BASIC_CHALLENGE = 'Basic realm="burrow", charset="UTF-8"';
export const BEARER_CHALLENGE = 'Bearer realm="burrow"';

interface HeaderRule {
  readonly name: string;
  readonly digests: readonly Buffer[];
  readonly allowed: VisitorAllowed;
}

interface Compiled {
  /** undefined: any address. */
  readonly allow: BlockList | undefined;
  /** User → digests of "user:password". */
  readonly logins: ReadonlyMap<string, readonly Buffer[]>;
  readonly headers: readonly HeaderRule[];
  readonly needsCredentials: boolean;
  readonly basicAllowed: VisitorAllowed;
  readonly unauthorized: VisitorRefused;
}

const compiledRules = new WeakMap<AccessRules, Compiled>();

/** 32-byte digest, or undefined for anything else (validated rules never have one). */
function digestBytes(sha256: string): Buffer | undefined {
  const bytes = Buffer.from(sha256, 'base64url');
  return bytes.length === 32 ? bytes : undefined;
}

function compile(rules: AccessRules): Compiled {
  let allow: BlockList | undefined;
  if (rules.allowCidrs !== undefined) {
    allow = new BlockList();
    for (const entry of rules.allowCidrs) {
      const slash = entry.indexOf('/');
      const address = slash < 0 ? entry : entry.slice(0, slash);
      const family = isIP(address) === 4 ? 'ipv4' : 'ipv6';
      try {
        if (slash < 0) allow.addAddress(address, family);
        else allow.addSubnet(address, Number(entry.slice(slash + 1)), family);
      } catch {
        // Not valid (validateAccessRules refuses these): allows nobody more.
      }
    }
  }
  const logins = new Map<string, Buffer[]>();
  for (const { user, sha256 } of rules.basicAuth ?? []) {
    const d = digestBytes(sha256);
    if (d === undefined) continue;
    const list = logins.get(user);
    if (list === undefined) logins.set(user, [d]);
    else list.push(d);
  }
  const byName = new Map<string, Buffer[]>();
  for (const { name, sha256 } of rules.headers ?? []) {
    const d = digestBytes(sha256);
    if (d === undefined) continue;
    const key = name.toLowerCase();
    const list = byName.get(key);
    if (list === undefined) byName.set(key, [d]);
    else list.push(d);
  }
  const headers = [...byName].map(([name, digests]) => ({ name, digests, allowed: allowed([name]) }));
  const hasBasic = (rules.basicAuth?.length ?? 0) > 0;
  const hasBearer = (rules.headers ?? []).some((h) => h.name.toLowerCase() === 'authorization');
  const challenge = hasBasic ? BASIC_CHALLENGE : hasBearer ? BEARER_CHALLENGE : undefined;
  return {
    allow,
    logins,
    headers,
    // Configured credentials that all failed to compile still demand one: fail closed.
    needsCredentials: hasBasic || (rules.headers?.length ?? 0) > 0,
    basicAllowed: allowed(['authorization']),
    unauthorized: Object.freeze({
      ok: false,
      code: 'BURROW_ERR_VISITOR_UNAUTHORIZED',
      message: 'This tunnel needs credentials',
      headers: challenge === undefined ? NO_HEADERS : Object.freeze({ 'WWW-Authenticate': challenge }),
    }),
  };
}

function addressAllowed(allow: BlockList, address: string): boolean {
  // IPv4-mapped IPv6 (a dual-stack socket's view of an IPv4 peer) is that IPv4 address.
  const mapped = address.length > 7 && address.slice(0, 7).toLowerCase() === '::ffff:' ? address.slice(7) : undefined;
  if (mapped !== undefined && isIP(mapped) === 4) return allow.check(mapped, 'ipv4');
  const family = isIP(address);
  if (family === 0) return false;
  return allow.check(address, family === 4 ? 'ipv4' : 'ipv6');
}

const sha256Of = (bytes: Buffer): Buffer => createHash('sha256').update(bytes).digest();

function anyEqual(digest: Buffer, candidates: readonly Buffer[]): boolean {
  let match = false;
  // Every candidate compared, in constant time each: which one matched does not show.
  for (const c of candidates) match = timingSafeEqual(digest, c) || match;
  return match;
}

/** Basic credentials: the login matches one configured for its user. */
function basicMatches(logins: ReadonlyMap<string, readonly Buffer[]>, authorization: string): boolean {
  const m = /^basic +([A-Za-z0-9+/]+={0,2}) *$/i.exec(authorization);
  if (m === null) return false;
  const login = Buffer.from(m[1] as string, 'base64');
  const colon = login.indexOf(0x3a);
  if (colon < 0) return false;
  const candidates = logins.get(login.toString('utf8', 0, colon));
  const digest = sha256Of(login);
  return candidates !== undefined && anyEqual(digest, candidates);
}

/**
 * The decision for one request. `rules` should come from validateAccessRules (verifyRegistration
 * returns them so); the same rules object must be passed each time for the compiled form to be reused.
 */
export function checkVisitor(rules: AccessRules | undefined, visitor: Visitor): VisitorDecision {
  if (rules === undefined) return ALLOWED;
  let c = compiledRules.get(rules);
  if (c === undefined) {
    c = compile(rules);
    compiledRules.set(rules, c);
  }
  if (c.allow !== undefined && !addressAllowed(c.allow, visitor.address)) return FORBIDDEN;
  if (!c.needsCredentials) return ALLOWED;
  const authorization = visitor.headers.authorization;
  if (c.logins.size > 0 && typeof authorization === 'string' && basicMatches(c.logins, authorization)) return c.basicAllowed;
  for (const rule of c.headers) {
    const raw = visitor.headers[rule.name];
    if (typeof raw !== 'string') continue;
    // Node decodes header bytes as latin1: back to those bytes, which the agent hashed as UTF-8.
    const value = rule.name === 'authorization' ? canonicalAuthorization(raw) : raw;
    if (anyEqual(sha256Of(Buffer.from(value, 'latin1')), rule.digests)) return rule.allowed;
  }
  return c.unauthorized;
}
