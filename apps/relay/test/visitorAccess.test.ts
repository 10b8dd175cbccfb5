/**
 * checkVisitor: the per-request decision from a tunnel's AccessRules. Pure, so requests are just
 * an address and Node-style headers (lowercase names, latin1 values).
 */
import type { IncomingHttpHeaders } from 'node:http';
import { type AccessRules, accessRulesFrom, credentialDigest, validateAccessRules } from '@burrow/protocol';
import { BASIC_CHALLENGE, BEARER_CHALLENGE, checkVisitor } from '../src/visitorAccess';

const basic = (login: string): string => `Basic ${Buffer.from(login, 'utf8').toString('base64')}`;
const visit = (rules: AccessRules | undefined, address: string, headers: IncomingHttpHeaders = {}) => checkVisitor(rules, { address, headers });
const ok = (strip: string[] = []) => ({ ok: true, strip });
const FORBIDDEN = { ok: false, code: 'BURROW_ERR_VISITOR_FORBIDDEN', message: expect.any(String), headers: {} };
const unauthorized = (headers: Record<string, string>) => ({ ok: false, code: 'BURROW_ERR_VISITOR_UNAUTHORIZED', message: expect.any(String), headers });

describe('no rules', () => {
  test('undefined and {} let everyone in, stripping nothing; undefined answers one shared object', () => {
    expect(visit(undefined, '203.0.113.1')).toStrictEqual(ok());
    expect(visit(undefined, '')).toBe(visit(undefined, '::1'));
    expect(visit({}, '203.0.113.1', { authorization: 'Basic x' })).toStrictEqual(ok());
  });
});

describe('allowCidrs', () => {
  const rules = accessRulesFrom({ allowCidrs: ['10.0.0.0/8', '192.0.2.7', '2001:db8::/32', '::1'] });

  test('IPv4: inside a CIDR or equal to a listed address is allowed, anything else is 403', () => {
    expect(visit(rules, '10.1.2.3')).toStrictEqual(ok());
    expect(visit(rules, '192.0.2.7')).toStrictEqual(ok());
    expect(visit(rules, '192.0.2.8')).toStrictEqual(FORBIDDEN);
    expect(visit(rules, '203.0.113.1')).toStrictEqual(FORBIDDEN);
  });

  test('CIDR edges: first and last address in, the neighbours out', () => {
    expect(visit(rules, '10.0.0.0')).toStrictEqual(ok());
    expect(visit(rules, '10.255.255.255')).toStrictEqual(ok());
    expect(visit(rules, '9.255.255.255')).toStrictEqual(FORBIDDEN);
    expect(visit(rules, '11.0.0.0')).toStrictEqual(FORBIDDEN);
    expect(visit(rules, '2001:db8::')).toStrictEqual(ok());
    expect(visit(rules, '2001:db8:ffff:ffff:ffff:ffff:ffff:ffff')).toStrictEqual(ok());
    expect(visit(rules, '2001:db9::')).toStrictEqual(FORBIDDEN);
    expect(visit(rules, '2001:db7:ffff:ffff:ffff:ffff:ffff:ffff')).toStrictEqual(FORBIDDEN);
  });

  test('IPv6, in any spelling', () => {
    expect(visit(rules, '2001:DB8:0:0::42')).toStrictEqual(ok());
    expect(visit(rules, '0:0:0:0:0:0:0:1')).toStrictEqual(ok());
    expect(visit(rules, '::2')).toStrictEqual(FORBIDDEN);
  });

  test('IPv4-mapped IPv6 counts as its IPv4 address', () => {
    expect(visit(rules, '::ffff:10.9.8.7')).toStrictEqual(ok());
    expect(visit(rules, '::FFFF:192.0.2.7')).toStrictEqual(ok());
    expect(visit(rules, '::ffff:203.0.113.1')).toStrictEqual(FORBIDDEN);
  });

  test('/0 allows every address of its family only; a /32 is one address', () => {
    const v4all = accessRulesFrom({ allowCidrs: ['0.0.0.0/0'] });
    expect(visit(v4all, '255.255.255.255')).toStrictEqual(ok());
    expect(visit(v4all, '::ffff:1.2.3.4')).toStrictEqual(ok());
    expect(visit(v4all, '2001:db8::1')).toStrictEqual(FORBIDDEN);
    const one = accessRulesFrom({ allowCidrs: ['198.51.100.5/32'] });
    expect(visit(one, '198.51.100.5')).toStrictEqual(ok());
    expect(visit(one, '198.51.100.4')).toStrictEqual(FORBIDDEN);
  });

  test('an unknown or garbage visitor address is 403; an empty list lets nobody in', () => {
    expect(visit(rules, '')).toStrictEqual(FORBIDDEN);
    expect(visit(rules, 'unknown')).toStrictEqual(FORBIDDEN);
    const nobody = validateAccessRules({ allowCidrs: [] });
    expect(visit(nobody, '10.0.0.1')).toStrictEqual(FORBIDDEN);
    expect(visit(nobody, '::1')).toStrictEqual(FORBIDDEN);
  });
});

describe('basic auth', () => {
  const rules = accessRulesFrom({ basicAuth: ['alice:s3cret', 'bob:pa:ss', 'ålice:pässword'] });
  const challenge = unauthorized({ 'WWW-Authenticate': BASIC_CHALLENGE });

  test('the right login is let in and its Authorization stripped', () => {
    expect(BASIC_CHALLENGE).toBe('Basic realm="burrow", charset="UTF-8"');
    expect(visit(rules, '1.2.3.4', { authorization: basic('alice:s3cret') })).toStrictEqual(ok(['authorization']));
    expect(visit(rules, '1.2.3.4', { authorization: basic('bob:pa:ss') })).toStrictEqual(ok(['authorization']));
  });

  test('a UTF-8 login (charset="UTF-8") works', () => {
    expect(visit(rules, '1.2.3.4', { authorization: basic('ålice:pässword') })).toStrictEqual(ok(['authorization']));
  });

  test('no credentials, a wrong password, or the right user with another user’s password: 401 with a Basic challenge', () => {
    expect(visit(rules, '1.2.3.4')).toStrictEqual(challenge);
    expect(visit(rules, '1.2.3.4', { authorization: basic('alice:wrong') })).toStrictEqual(challenge);
    expect(visit(rules, '1.2.3.4', { authorization: basic('alice:pa:ss') })).toStrictEqual(challenge);
    expect(visit(rules, '1.2.3.4', { authorization: basic('mallory:s3cret') })).toStrictEqual(challenge);
    expect(visit(rules, '1.2.3.4', { authorization: basic('alice:s3cret ') })).toStrictEqual(challenge);
  });

  test('the scheme is case-insensitive', () => {
    const b64 = Buffer.from('alice:s3cret').toString('base64');
    expect(visit(rules, '1.2.3.4', { authorization: `basic ${b64}` })).toStrictEqual(ok(['authorization']));
    expect(visit(rules, '1.2.3.4', { authorization: `BASIC ${b64}` })).toStrictEqual(ok(['authorization']));
  });

  test('malformed Authorization values are 401, never a throw', () => {
    for (const authorization of [
      '',
      'Basic',
      'Basic ',
      'Basic !!!!',
      `Basic ${Buffer.from('alices3cret').toString('base64')}`,
      `Basic ${Buffer.from(':s3cret').toString('base64')}`,
      `Basic ${Buffer.from('alice:s3cret').toString('base64')} extra`,
      `Basic${Buffer.from('alice:s3cret').toString('base64')}`,
      `Bearer ${Buffer.from('alice:s3cret').toString('base64')}`,
      'Basic ====',
      `Basic ${'A'.repeat(10_000)}`,
    ]) {
      expect([authorization.slice(0, 40), visit(rules, '1.2.3.4', { authorization })]).toStrictEqual([authorization.slice(0, 40), challenge]);
    }
  });

  test('allowCidrs is checked first: an outsider with the right password is 403', () => {
    const both = accessRulesFrom({ basicAuth: ['alice:s3cret'], allowCidrs: ['10.0.0.0/8'] });
    expect(visit(both, '192.0.2.1', { authorization: basic('alice:s3cret') })).toStrictEqual(FORBIDDEN);
    expect(visit(both, '10.0.0.1', { authorization: basic('alice:s3cret') })).toStrictEqual(ok(['authorization']));
    expect(visit(both, '10.0.0.1')).toStrictEqual(challenge);
  });
});

describe('bearer tokens and required headers', () => {
  test('a bearer token is let in (scheme in any case) and Authorization stripped; others get a Bearer challenge', () => {
    const rules = accessRulesFrom({ bearerTokens: ['t0ken'] });
    expect(visit(rules, '::1', { authorization: 'Bearer t0ken' })).toStrictEqual(ok(['authorization']));
    expect(visit(rules, '::1', { authorization: 'bearer  t0ken' })).toStrictEqual(ok(['authorization']));
    expect(visit(rules, '::1', { authorization: 'Bearer t0ken2' })).toStrictEqual(unauthorized({ 'WWW-Authenticate': BEARER_CHALLENGE }));
    expect(visit(rules, '::1', { authorization: 't0ken' })).toStrictEqual(unauthorized({ 'WWW-Authenticate': BEARER_CHALLENGE }));
    expect(visit(rules, '::1')).toStrictEqual(unauthorized({ 'WWW-Authenticate': BEARER_CHALLENGE }));
  });

  test('a custom header must carry its exact value; it is what gets stripped; no challenge is sent', () => {
    const rules = accessRulesFrom({ headers: ['X-Api-Key: k3y'] });
    expect(visit(rules, '::1', { 'x-api-key': 'k3y' })).toStrictEqual(ok(['x-api-key']));
    expect(visit(rules, '::1', { 'x-api-key': 'K3Y' })).toStrictEqual(unauthorized({}));
    expect(visit(rules, '::1', { 'x-api-key': 'k3y, k3y' })).toStrictEqual(unauthorized({}));
    expect(visit(rules, '::1', { 'x-other': 'k3y' })).toStrictEqual(unauthorized({}));
  });

  test('header names are case-insensitive: the agent may write them in any case, Node gives them lowercase', () => {
    for (const typed of ['X-API-KEY: k3y', 'x-api-key: k3y', 'X-Api-Key:k3y']) {
      expect(visit(accessRulesFrom({ headers: [typed] }), '::1', { 'x-api-key': 'k3y' })).toStrictEqual(ok(['x-api-key']));
    }
    const sentInCapitals = validateAccessRules({ headers: [{ name: 'X-Api-Key', sha256: credentialDigest('k3y') }] });
    expect(visit(sentInCapitals, '::1', { 'x-api-key': 'k3y' })).toStrictEqual(ok(['x-api-key']));
  });

  test('a non-ASCII header value matches the UTF-8 bytes Node hands over as latin1', () => {
    const rules = accessRulesFrom({ headers: ['X-Key: café'] });
    expect(visit(rules, '::1', { 'x-key': Buffer.from('café', 'utf8').toString('latin1') })).toStrictEqual(ok(['x-key']));
    expect(visit(rules, '::1', { 'x-key': 'café' })).toStrictEqual(unauthorized({}));
  });
});

describe('several credentials: any one is enough', () => {
  const rules = accessRulesFrom({
    basicAuth: ['alice:s3cret'],
    headers: ['X-Api-Key: k3y', 'X-Api-Key: other', 'X-Team: blue'],
    bearerTokens: ['t0ken'],
  });
  const challenge = unauthorized({ 'WWW-Authenticate': BASIC_CHALLENGE });

  test('each credential alone lets the visitor in and strips only its own header', () => {
    expect(visit(rules, '::1', { authorization: basic('alice:s3cret') })).toStrictEqual(ok(['authorization']));
    expect(visit(rules, '::1', { authorization: 'Bearer t0ken' })).toStrictEqual(ok(['authorization']));
    expect(visit(rules, '::1', { 'x-api-key': 'k3y' })).toStrictEqual(ok(['x-api-key']));
    expect(visit(rules, '::1', { 'x-api-key': 'other' })).toStrictEqual(ok(['x-api-key']));
    expect(visit(rules, '::1', { 'x-team': 'blue' })).toStrictEqual(ok(['x-team']));
  });

  test('a wrong one does not spoil a right one', () => {
    expect(visit(rules, '::1', { authorization: basic('alice:wrong'), 'x-team': 'blue' })).toStrictEqual(ok(['x-team']));
    expect(visit(rules, '::1', { authorization: 'Bearer nope', 'x-api-key': 'k3y' })).toStrictEqual(ok(['x-api-key']));
  });

  test('all wrong is 401 with the Basic challenge (Basic is configured)', () => {
    expect(visit(rules, '::1', { authorization: 'Bearer nope', 'x-api-key': 'nope', 'x-team': 'red' })).toStrictEqual(challenge);
  });

  test('answers are reused, not rebuilt per request', () => {
    const a = visit(rules, '::1', { 'x-team': 'blue' });
    expect(visit(rules, '::2', { 'x-team': 'blue' })).toBe(a);
    expect(visit(rules, '::1')).toBe(visit(rules, '::2'));
    expect(Object.isFrozen(a) && a.ok && Object.isFrozen(a.strip)).toBe(true);
  });
});
