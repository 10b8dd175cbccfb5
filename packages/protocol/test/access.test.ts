/**
 * Access rules: building them from what a person typed, and validating what an agent sent.
 * Enforcement is the relay's (apps/relay/test/visitorAccess.test.ts).
 */
import { createHash } from 'node:crypto';
import {
  type AccessRules,
  accessRulesFrom,
  BurrowError,
  canonicalAuthorization,
  credentialDigest,
  hasAccessRules,
  validateAccessRules,
} from '@burrow/protocol';
import { codeOf } from './helpers';

const DIGEST = credentialDigest('alice:secret');

function messageOf(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    if (err instanceof BurrowError) return `${err.code} ${err.message}`;
    throw err;
  }
  return 'no error';
}

describe('credentialDigest', () => {
  test('is the unpadded base64url SHA-256 of the UTF-8 text (43 characters)', () => {
    expect(credentialDigest('abc')).toBe('ungWv48Bz-pBQUDeXa4iI7ADYaOWF3qctBD_YfIAFa0');
    expect(credentialDigest('café')).toBe(createHash('sha256').update(Buffer.from('café', 'utf8')).digest('base64url'));
    expect(credentialDigest('')).toHaveLength(43);
  });
});

describe('canonicalAuthorization', () => {
  test('spells a Bearer scheme "Bearer" with one space; leaves anything else alone', () => {
    expect(canonicalAuthorization('Bearer abc')).toBe('Bearer abc');
    expect(canonicalAuthorization('bearer   abc')).toBe('Bearer abc');
    expect(canonicalAuthorization('BEARER abc')).toBe('Bearer abc');
    expect(canonicalAuthorization('Basic YTpi')).toBe('Basic YTpi');
    expect(canonicalAuthorization('Bearer a b')).toBe('Bearer a b');
  });
});

describe('accessRulesFrom', () => {
  test('builds digests for logins, headers and bearer tokens, and keeps CIDRs', () => {
    const rules = accessRulesFrom({
      basicAuth: ['alice:secret', 'bob:pa:ss:word'],
      allowCidrs: [' 10.0.0.0/8', '2001:db8::/32', '203.0.113.7'],
      headers: ['X-Api-Key:  k3y ', 'authorization: bearer tok'],
      bearerTokens: ['t0ken'],
    });
    expect(rules).toStrictEqual({
      basicAuth: [
        { user: 'alice', sha256: credentialDigest('alice:secret') },
        { user: 'bob', sha256: credentialDigest('bob:pa:ss:word') },
      ],
      allowCidrs: ['10.0.0.0/8', '2001:db8::/32', '203.0.113.7'],
      headers: [
        { name: 'x-api-key', sha256: credentialDigest('k3y') },
        { name: 'authorization', sha256: credentialDigest('Bearer tok') },
        { name: 'authorization', sha256: credentialDigest('Bearer t0ken') },
      ],
    });
    expect(Object.isFrozen(rules)).toBe(true);
    expect(JSON.stringify(rules)).not.toMatch(/secret|k3y|t0ken|pa:ss/);
  });

  test('empty or absent lists add no rule (an empty allowCidrs does not mean "nobody" here)', () => {
    expect(accessRulesFrom({})).toStrictEqual({});
    expect(accessRulesFrom({ basicAuth: [], allowCidrs: [], headers: [], bearerTokens: [] })).toStrictEqual({});
    expect(hasAccessRules(accessRulesFrom({}))).toBe(false);
    expect(hasAccessRules(undefined)).toBe(false);
    expect(hasAccessRules(accessRulesFrom({ allowCidrs: ['::1'] }))).toBe(true);
  });

  test.each([
    [{ basicAuth: ['alice'] }, 'user:password'],
    [{ basicAuth: [':secret'] }, 'needs a user name'],
    [{ basicAuth: ['alice:'] }, 'needs a password'],
    [{ basicAuth: ['al\tice:secret'] }, 'control characters'],
    [{ allowCidrs: ['10.0.0.0/33'] }, 'at most 32'],
    [{ allowCidrs: ['2001:db8::/129'] }, 'at most 128'],
    [{ allowCidrs: ['example.com'] }, 'not an IPv4/IPv6 address or CIDR'],
    [{ allowCidrs: ['10.0.0.0/'] }, 'not an IPv4/IPv6 address or CIDR'],
    [{ allowCidrs: ['10.0.0.0/8/8'] }, 'not an IPv4/IPv6 address or CIDR'],
    [{ allowCidrs: ['fe80::1%eth0'] }, 'not an IPv4/IPv6 address or CIDR'],
    [{ headers: ['X-Key'] }, '"Name: value"'],
    [{ headers: ['X-Key:   '] }, 'needs a value'],
    [{ headers: ['X Key: v'] }, 'not a valid HTTP header name'],
    [{ headers: ['Host: example.com'] }, 'cannot carry a credential'],
    [{ headers: ['X-Key: a\r\nInjected: b'] }, 'control character'],
    [{ bearerTokens: [''] }, 'bearer token'],
    [{ bearerTokens: ['two words'] }, 'bearer token'],
  ])('%j is refused: %s', (input, message) => {
    const text = messageOf(() => accessRulesFrom(input));
    expect(text).toMatch(/^BURROW_ERR_BAD_REGISTRATION access rules: /);
    expect(text).toContain(message);
  });

  test('error messages never echo a password, header value or token', () => {
    expect(messageOf(() => accessRulesFrom({ basicAuth: ['hunter2'] }))).not.toContain('hunter2');
    expect(messageOf(() => accessRulesFrom({ headers: ['X-Key: sec\x01ret'] }))).not.toContain('sec');
    expect(messageOf(() => accessRulesFrom({ bearerTokens: ['sec ret'] }))).not.toContain('sec');
  });
});

describe('validateAccessRules', () => {
  const entries = (n: number, make: (i: number) => unknown): unknown[] => Array.from({ length: n }, (_, i) => make(i));

  test('valid rules come back as a frozen copy, header names lowercased; {} and empty lists are valid', () => {
    const sent = {
      basicAuth: [{ user: 'ålice', sha256: DIGEST }],
      allowCidrs: ['0.0.0.0/0', '::/0', '::ffff:1.2.3.4'],
      headers: [{ name: 'X-Api-Key', sha256: DIGEST }],
    };
    const rules = validateAccessRules(sent);
    expect(rules).toStrictEqual({ ...sent, headers: [{ name: 'x-api-key', sha256: DIGEST }] });
    expect(rules).not.toBe(sent);
    expect(Object.isFrozen(rules) && Object.isFrozen(rules.basicAuth) && Object.isFrozen(rules.headers?.[0])).toBe(true);
    expect(validateAccessRules({})).toStrictEqual({});
    expect(validateAccessRules({ basicAuth: [], allowCidrs: [], headers: [] })).toStrictEqual({ basicAuth: [], allowCidrs: [], headers: [] });
  });

  test('16 entries per list are accepted, 17 are not', () => {
    const full: AccessRules = {
      basicAuth: entries(16, (i) => ({ user: `u${i}`, sha256: DIGEST })) as AccessRules['basicAuth'],
      allowCidrs: entries(16, (i) => `10.0.${i}.0/24`) as string[],
      headers: entries(16, (i) => ({ name: `x-k${i}`, sha256: DIGEST })) as AccessRules['headers'],
    };
    expect(codeOf(() => validateAccessRules(full))).toBeUndefined();
    expect(messageOf(() => validateAccessRules({ basicAuth: entries(17, (i) => ({ user: `u${i}`, sha256: DIGEST })) }))).toContain('at most 16');
    expect(messageOf(() => validateAccessRules({ allowCidrs: entries(17, () => '::1') }))).toContain('allowCidrs has 17 entries');
    expect(messageOf(() => validateAccessRules({ headers: entries(17, () => ({ name: 'x-k', sha256: DIGEST })) }))).toContain('headers has 17 entries');
  });

  test.each([
    ['null', null, 'must be an object'],
    ['an array', [], 'must be an object'],
    ['a string', 'rules', 'must be an object'],
    ['an unknown rule', { geoBlock: ['FR'] }, 'unknown rule "geoBlock"'],
    ['basicAuth not an array', { basicAuth: {} }, 'basicAuth must be an array'],
    ['a login that is a string', { basicAuth: ['alice'] }, 'must be an object'],
    ['a login without sha256', { basicAuth: [{ user: 'alice' }] }, 'needs a string sha256'],
    ['a numeric user', { basicAuth: [{ user: 5, sha256: DIGEST }] }, 'needs a string user'],
    ['a login with a password field', { basicAuth: [{ user: 'alice', sha256: DIGEST, password: 'x' }] }, 'unknown field "password"'],
    ["a user with ':'", { basicAuth: [{ user: 'a:b', sha256: DIGEST }] }, 'must not contain ":"'],
    ['a user with a newline', { basicAuth: [{ user: 'a\nb', sha256: DIGEST }] }, 'control characters'],
    ['a user with DEL', { basicAuth: [{ user: 'a\x7f', sha256: DIGEST }] }, 'control characters'],
    ['an empty user', { basicAuth: [{ user: '', sha256: DIGEST }] }, '1 to 256 characters'],
    ['a 257-character user', { basicAuth: [{ user: 'a'.repeat(257), sha256: DIGEST }] }, '1 to 256 characters'],
    ['a padded digest', { basicAuth: [{ user: 'alice', sha256: `${DIGEST}=` }] }, '43 base64url'],
    ['a 42-character digest', { basicAuth: [{ user: 'alice', sha256: DIGEST.slice(1) }] }, '43 base64url'],
    ["a digest with '+'", { basicAuth: [{ user: 'alice', sha256: `+${DIGEST.slice(1)}` }] }, '43 base64url'],
    ['a digest with stray low bits', { basicAuth: [{ user: 'alice', sha256: `${DIGEST.slice(0, 42)}B` }] }, '43 base64url'],
    ['allowCidrs not an array', { allowCidrs: '10.0.0.0/8' }, 'allowCidrs must be an array'],
    ['a numeric CIDR', { allowCidrs: [7] }, 'must be strings'],
    ['an empty CIDR', { allowCidrs: [''] }, '1 to 256 characters'],
    ['an IPv4 octet over 255', { allowCidrs: ['256.0.0.1'] }, 'not an IPv4/IPv6 address or CIDR'],
    ['a negative prefix', { allowCidrs: ['10.0.0.0/-1'] }, 'not an IPv4/IPv6 address or CIDR'],
    ['a prefix with a space', { allowCidrs: ['10.0.0.0/ 8'] }, 'not an IPv4/IPv6 address or CIDR'],
    ['a hex prefix', { allowCidrs: ['10.0.0.0/0x8'] }, 'not an IPv4/IPv6 address or CIDR'],
    ['an IPv6 prefix over 128', { allowCidrs: ['::1/129'] }, 'at most 128'],
    ['a header name with a space', { headers: [{ name: 'x key', sha256: DIGEST }] }, 'not a valid HTTP header name'],
    ["a header name with ':'", { headers: [{ name: 'x-key:', sha256: DIGEST }] }, 'not a valid HTTP header name'],
    ['an empty header name', { headers: [{ name: '', sha256: DIGEST }] }, '1 to 256 characters'],
    ['Connection', { headers: [{ name: 'Connection', sha256: DIGEST }] }, 'cannot carry a credential'],
    ['Transfer-Encoding', { headers: [{ name: 'transfer-encoding', sha256: DIGEST }] }, 'cannot carry a credential'],
    ['Host', { headers: [{ name: 'host', sha256: DIGEST }] }, 'cannot carry a credential'],
    ['Content-Length', { headers: [{ name: 'content-length', sha256: DIGEST }] }, 'cannot carry a credential'],
    ['a short header digest', { headers: [{ name: 'x-key', sha256: 'short' }] }, '43 base64url'],
  ])('%s is BAD_REGISTRATION: %s', (_label, value, message) => {
    const text = messageOf(() => validateAccessRules(value));
    expect(text).toMatch(/^BURROW_ERR_BAD_REGISTRATION access rules: /);
    expect(text).toContain(message);
  });
});
