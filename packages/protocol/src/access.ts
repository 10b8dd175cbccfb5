/**
 * Visitor access rules an agent asks the relay to enforce for its tunnel, carried in its signed
 * registration. Secrets never travel in clear: the agent sends SHA-256 digests of the expected
 * credentials, the relay hashes what a visitor presents and compares in constant time.
 * Builds (agent side) and validates (relay side) rules; enforcing them is the relay's job.
 */
import { createHash } from 'node:crypto';
import { BlockList, isIP } from 'node:net';
import { BurrowError } from './errors';

export interface AccessRules {
  /** Accepted logins: user and base64url SHA-256 of "user:password". */
  readonly basicAuth?: readonly { readonly user: string; readonly sha256: string }[];
  /** Visitor addresses allowed: IPv4/IPv6 addresses or CIDRs. Empty array: nobody. */
  readonly allowCidrs?: readonly string[];
  /** Required header: lowercase name and base64url SHA-256 of its exact value (bearer tokens: authorization). */
  readonly headers?: readonly { readonly name: string; readonly sha256: string }[];
}

// Not exported (docs/PROTOCOL.md lists every exported limit); the messages quote them.
/** Most entries in any one list of AccessRules: keeps registration small and per-request checks cheap. */
const MAX_ACCESS_ENTRIES = 16;
/** Longest user name, header name or CIDR text in AccessRules. */
const MAX_ACCESS_TEXT_CHARS = 256;

/** Headers that cannot carry a tunnel credential: hop-by-hop, routing, framing, or set by the relay. */
const RESERVED_HEADERS: ReadonlySet<string> = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'proxy-authenticate',
  'proxy-authorization',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
  'host',
  'content-length',
  'expect',
  'x-forwarded-for',
  'x-forwarded-proto',
  'x-forwarded-host',
]);

/** RFC 9110 token: the characters a header name may use. */
const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
// biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are exactly what this rejects.
const CONTROL = /[\x00-\x1f\x7f]/;
/** base64url of 32 bytes, unpadded: 42 free characters, then one whose low 2 bits are zero. */
const DIGEST = /^[A-Za-z0-9_-]{42}[AEIMQUYcgkosw048]$/;

/** base64url SHA-256 of a credential's UTF-8 bytes: what AccessRules carry instead of secrets. */
export function credentialDigest(text: string): string {
  return createHash('sha256').update(text, 'utf8').digest('base64url');
}

/**
 * The form an Authorization value is compared in: a Bearer credential with its scheme spelled
 * `Bearer` and one space (the scheme is case-insensitive, RFC 9110 §11.1), anything else as is.
 */
export function canonicalAuthorization(value: string): string {
  const m = /^bearer +(\S+)$/i.exec(value);
  return m === null ? value : `Bearer ${m[1]}`;
}

export interface AccessRulesInput {
  /** "user:password" (the password may contain ':'). */
  readonly basicAuth?: readonly string[];
  /** IPv4/IPv6 addresses or CIDRs. */
  readonly allowCidrs?: readonly string[];
  /** "Name: value": the header must be sent with exactly this value (surrounding spaces trimmed). */
  readonly headers?: readonly string[];
  /** Bearer tokens: the same as the header "Authorization: Bearer <token>". */
  readonly bearerTokens?: readonly string[];
}

const bad = (message: string): BurrowError => new BurrowError('BURROW_ERR_BAD_REGISTRATION', `access rules: ${message}`);

/**
 * AccessRules from what a person typed. An empty or absent list adds no rule (an empty
 * allowCidrs here does not mean "nobody"). Throws BURROW_ERR_BAD_REGISTRATION naming the
 * problem, never echoing a password, header value or token.
 */
export function accessRulesFrom(input: AccessRulesInput): AccessRules {
  const basicAuth = (input.basicAuth ?? []).map((login) => {
    const colon = login.indexOf(':');
    if (colon < 0) throw bad('basic auth must be user:password (no ":" found)');
    const user = login.slice(0, colon);
    if (user === '') throw bad('basic auth needs a user name before ":"');
    if (colon === login.length - 1) throw bad(`basic auth for "${user}" needs a password after ":"`);
    return { user, sha256: credentialDigest(login) };
  });
  const allowCidrs = (input.allowCidrs ?? []).map((c) => c.trim());
  const headers = (input.headers ?? []).map((line) => {
    const colon = line.indexOf(':');
    if (colon < 0) throw bad('a required header must be "Name: value" (no ":" found)');
    const name = line.slice(0, colon).trim().toLowerCase();
    // Spaces and tabs around a field value are not part of it (RFC 9110 §5.5).
    const value = line.slice(colon + 1).replace(/^[ \t]+|[ \t]+$/g, '');
    if (value === '') throw bad(`header "${name}" needs a value after ":"`);
    if (CONTROL.test(value)) throw bad(`the value of header "${name}" has a control character`);
    return { name, sha256: credentialDigest(name === 'authorization' ? canonicalAuthorization(value) : value) };
  });
  for (const token of input.bearerTokens ?? []) {
    if (token === '' || /\s/.test(token) || CONTROL.test(token)) throw bad('a bearer token must be non-empty, without spaces or control characters');
    headers.push({ name: 'authorization', sha256: credentialDigest(`Bearer ${token}`) });
  }
  const rules: AccessRules = {
    ...(basicAuth.length > 0 ? { basicAuth } : {}),
    ...(allowCidrs.length > 0 ? { allowCidrs } : {}),
    ...(headers.length > 0 ? { headers } : {}),
  };
  return validateAccessRules(rules);
}

/** Whether rules restrict anything at all (`{}` does not). */
export function hasAccessRules(rules: AccessRules | undefined): boolean {
  return rules !== undefined && (rules.basicAuth !== undefined || rules.allowCidrs !== undefined || rules.headers !== undefined);
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function listOf(value: unknown, key: string): readonly unknown[] {
  if (!Array.isArray(value)) throw bad(`${key} must be an array`);
  if (value.length > MAX_ACCESS_ENTRIES) throw bad(`${key} has ${value.length} entries, at most ${MAX_ACCESS_ENTRIES} are allowed`);
  return value;
}

function entryOf(value: unknown, key: string, fields: readonly [string, string]): Record<string, unknown> {
  if (!isRecord(value)) throw bad(`each ${key} entry must be an object`);
  for (const k of Object.keys(value)) {
    if (!fields.includes(k)) throw bad(`${key} entry has an unknown field "${k}"`);
  }
  for (const f of fields) {
    if (typeof value[f] !== 'string') throw bad(`${key} entry needs a string ${f}`);
  }
  const sha256 = value.sha256 as string;
  if (!DIGEST.test(sha256)) throw bad(`${key} sha256 must be 43 base64url characters (a SHA-256 digest)`);
  return value;
}

function checkText(text: string, what: string): void {
  if (text.length === 0 || text.length > MAX_ACCESS_TEXT_CHARS) throw bad(`${what} must be 1 to ${MAX_ACCESS_TEXT_CHARS} characters`);
}

/** Throws unless `text` is an IPv4/IPv6 address or CIDR that node:net's BlockList takes. */
function checkCidr(text: string): void {
  checkText(text, 'an allowCidrs entry');
  const slash = text.indexOf('/');
  const address = slash < 0 ? text : text.slice(0, slash);
  const family = isIP(address);
  const prefixText = slash < 0 ? undefined : text.slice(slash + 1);
  if (family === 0 || address.includes('%') || (prefixText !== undefined && !/^\d{1,3}$/.test(prefixText))) {
    throw bad(`"${text}" is not an IPv4/IPv6 address or CIDR (like 203.0.113.0/24 or 2001:db8::/32)`);
  }
  try {
    const probe = new BlockList();
    if (prefixText === undefined) probe.addAddress(address, family === 4 ? 'ipv4' : 'ipv6');
    else probe.addSubnet(address, Number(prefixText), family === 4 ? 'ipv4' : 'ipv6');
  } catch {
    throw bad(`"${text}": the prefix length must be at most ${family === 4 ? 32 : 128}`);
  }
}

/**
 * Checks rules received from an agent and returns a frozen copy, header names lowercased.
 * Unknown keys are refused: a rule this relay would not enforce must not be silently dropped.
 * Throws BURROW_ERR_BAD_REGISTRATION saying what is wrong.
 */
export function validateAccessRules(value: unknown): AccessRules {
  if (!isRecord(value)) throw bad('must be an object');
  for (const k of Object.keys(value)) {
    if (k !== 'basicAuth' && k !== 'allowCidrs' && k !== 'headers') throw bad(`unknown rule "${k}" (this relay cannot enforce it)`);
  }
  const out: { basicAuth?: AccessRules['basicAuth']; allowCidrs?: AccessRules['allowCidrs']; headers?: AccessRules['headers'] } = {};
  if (value.basicAuth !== undefined) {
    const list = listOf(value.basicAuth, 'basicAuth').map((raw) => {
      const e = entryOf(raw, 'basicAuth', ['user', 'sha256']);
      const user = e.user as string;
      checkText(user, 'a basic auth user name');
      if (user.includes(':')) throw bad(`basic auth user "${user}" must not contain ":"`);
      if (CONTROL.test(user)) throw bad('a basic auth user name must not contain control characters');
      return Object.freeze({ user, sha256: e.sha256 as string });
    });
    out.basicAuth = Object.freeze(list);
  }
  if (value.allowCidrs !== undefined) {
    const list = listOf(value.allowCidrs, 'allowCidrs').map((c) => {
      if (typeof c !== 'string') throw bad('allowCidrs entries must be strings');
      checkCidr(c);
      return c;
    });
    out.allowCidrs = Object.freeze(list);
  }
  if (value.headers !== undefined) {
    const list = listOf(value.headers, 'headers').map((raw) => {
      const e = entryOf(raw, 'headers', ['name', 'sha256']);
      const name = (e.name as string).toLowerCase();
      checkText(name, 'a header name');
      if (!TOKEN.test(name)) throw bad(`"${name}" is not a valid HTTP header name`);
      if (RESERVED_HEADERS.has(name)) throw bad(`header "${name}" cannot carry a credential (hop-by-hop, routing or set by the relay)`);
      return Object.freeze({ name, sha256: e.sha256 as string });
    });
    out.headers = Object.freeze(list);
  }
  return Object.freeze(out);
}
