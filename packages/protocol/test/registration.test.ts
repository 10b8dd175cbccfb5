/**
 * Registration signing and verification.
 *
 * Cost note: tweetnacl runs ~4x slower inside jest's VM context (~100 ms per verify), so each
 * verifyRegistration call that reaches the signature check is deliberate. Test-side signing uses
 * node:crypto (ed25519 signatures are deterministic, so it produces the very bytes tweetnacl would;
 * the first test checks that against signRegistration).
 */
import { createPrivateKey, sign as cryptoSign, type KeyObject } from 'node:crypto';
import {
  accessRulesFrom,
  base64url,
  type KeyPair,
  keyPairFromSeed,
  keyPairToJwk,
  labelFor,
  MAX_CLOCK_SKEW_MS,
  PROTOCOL_VERSION,
  REGISTRATION_TTL_MS,
  type RegisterPayload,
  signRegistration,
  verifyRegistration,
} from '@burrow/protocol';
import { codeOf } from './helpers';

const NOW = 1_700_000_000_000;
const NONCE = 'relay-issued-nonce';
const AUDIENCE = 'https://relay.example.com';
const AUTHORITIES = ['relay.example.com'];

const keyA = keyPairFromSeed(Buffer.alloc(32, 1));
const keyB = keyPairFromSeed(Buffer.alloc(32, 2));
const nodeKey = (kp: KeyPair): KeyObject => createPrivateKey({ key: { ...keyPairToJwk(kp) }, format: 'jwk' });
const nodeKeyA = nodeKey(keyA);
const nodeKeyB = nodeKey(keyB);

/** Signs arbitrary claims (valid or not) the way an agent, buggy or hostile, could. */
function signRaw(claims: unknown, key: KeyObject = nodeKeyA): RegisterPayload {
  const bytes = Buffer.from(JSON.stringify(claims), 'utf8');
  return { claims: base64url(bytes), sig: base64url(cryptoSign(null, bytes, key)) };
}

function verify(payload: RegisterPayload, overrides: Partial<Parameters<typeof verifyRegistration>[1]> = {}) {
  return verifyRegistration(payload, { expectedNonce: NONCE, audiences: AUTHORITIES, nowMs: NOW, ...overrides });
}

function claimsOf(payload: RegisterPayload): Record<string, unknown> {
  return JSON.parse(Buffer.from(payload.claims, 'base64url').toString('utf8')) as Record<string, unknown>;
}

/** Claims exactly as signRegistration lays them out (key order matters for the signed bytes). */
const baseClaims = { v: PROTOCOL_VERSION, pub: base64url(keyA.publicKey), nonce: NONCE, iat: NOW, ttl: REGISTRATION_TTL_MS, aud: AUDIENCE };
const claimsWith = (o: Record<string, unknown>): Record<string, unknown> => ({ ...baseClaims, ...o });

describe('signRegistration', () => {
  test('lays out v, pub, nonce, iat, ttl, aud (+ session, subdomain) and signs those exact bytes', () => {
    const plain = signRegistration({ secretKey: keyA.secretKey, nonce: NONCE, audience: AUDIENCE, nowMs: NOW });
    expect(claimsOf(plain)).toStrictEqual(baseClaims);
    expect(plain).toStrictEqual(signRaw(baseClaims));
    expect(Buffer.from(plain.sig, 'base64url').length).toBe(64);

    const full = signRegistration({ secretKey: keyA.secretKey, nonce: NONCE, audience: AUDIENCE, nowMs: NOW, ttlMs: 5000, session: 'web', subdomain: 'app' });
    expect(full).toStrictEqual(signRaw(claimsWith({ ttl: 5000, session: 'web', subdomain: 'app' })));
  });
});

describe('verifyRegistration: accepted', () => {
  test('a valid registration verifies and yields the key label (checked at its last valid ms, audience with an explicit :443)', () => {
    const p = signRegistration({ secretKey: keyA.secretKey, nonce: NONCE, audience: 'https://Relay.Example.com:443/agent', nowMs: NOW });
    const v = verify(p, { nowMs: NOW + REGISTRATION_TTL_MS });
    expect(v.label).toBe(labelFor(keyA.publicKey));
    expect(v.keyId).toBe(base64url(keyA.publicKey));
    expect(Buffer.from(v.publicKey)).toStrictEqual(Buffer.from(keyA.publicKey));
    expect(Object.keys(v).sort()).toStrictEqual(['keyId', 'label', 'publicKey']);
  });

  test('session and subdomain claims: session label, lowercase subdomain (signed MAX_CLOCK_SKEW_MS ahead: still accepted)', () => {
    expect(MAX_CLOCK_SKEW_MS).toBe(30_000);
    const v = verify(signRaw(claimsWith({ iat: NOW + MAX_CLOCK_SKEW_MS, session: 'web', subdomain: 'My-App' })));
    expect(v.session).toBe('web');
    expect(v.label).toBe(labelFor(keyA.publicKey, 'web'));
    expect(v.label).not.toBe(labelFor(keyA.publicKey));
    expect(v.subdomain).toBe('my-app');
  });
});

describe('verifyRegistration: signature', () => {
  test('claims changed after signing are BAD_SIGNATURE', () => {
    const good = signRaw(baseClaims);
    const tampered = signRaw(claimsWith({ subdomain: 'stolen' }));
    expect(codeOf(() => verify({ claims: tampered.claims, sig: good.sig }))).toBe('BURROW_ERR_BAD_SIGNATURE');
  });

  test('a signature by another key than pub is BAD_SIGNATURE', () => {
    expect(codeOf(() => verify(signRaw(baseClaims, nodeKeyB)))).toBe('BURROW_ERR_BAD_SIGNATURE');
  });

  test('a signature of the wrong length is BAD_SIGNATURE', () => {
    const p = signRaw(baseClaims);
    expect(codeOf(() => verify({ claims: p.claims, sig: p.sig.slice(0, 40) }))).toBe('BURROW_ERR_BAD_SIGNATURE');
    expect(codeOf(() => verify({ claims: p.claims, sig: '' }))).toBe('BURROW_ERR_BAD_SIGNATURE');
    expect(codeOf(() => verify({ claims: p.claims, sig: `${p.sig}AA` }))).toBe('BURROW_ERR_BAD_SIGNATURE');
  });
});

describe('verifyRegistration: nonce', () => {
  const p = signRaw(baseClaims);
  test('a nonce other than the one issued is NONCE_REPLAYED', () => {
    expect(codeOf(() => verify(p, { expectedNonce: 'other' }))).toBe('BURROW_ERR_NONCE_REPLAYED');
  });
  test('no expected nonce (already used) is NONCE_REPLAYED', () => {
    expect(codeOf(() => verify(p, { expectedNonce: undefined }))).toBe('BURROW_ERR_NONCE_REPLAYED');
  });
});

describe('verifyRegistration: time (the inclusive boundaries are checked in the accepted tests above)', () => {
  test('one ms past iat + ttl is TOKEN_EXPIRED', () => {
    expect(codeOf(() => verify(signRaw(claimsWith({ ttl: 10_000 })), { nowMs: NOW + 10_001 }))).toBe('BURROW_ERR_TOKEN_EXPIRED');
  });

  test('a ttl above 60 s is capped at REGISTRATION_TTL_MS', () => {
    expect(REGISTRATION_TTL_MS).toBe(60_000);
    expect(codeOf(() => verify(signRaw(claimsWith({ ttl: 3_600_000 })), { nowMs: NOW + 60_001 }))).toBe('BURROW_ERR_TOKEN_EXPIRED');
  });

  test('iat more than MAX_CLOCK_SKEW_MS in the future is TOKEN_EXPIRED', () => {
    expect(codeOf(() => verify(signRaw(claimsWith({ iat: NOW + 30_001 }))))).toBe('BURROW_ERR_TOKEN_EXPIRED');
  });
});

describe('verifyRegistration: audience (urlAuthority itself is covered in naming.test.ts)', () => {
  test('ws://x:80 is accepted by a relay answering to x', () => {
    expect(codeOf(() => verify(signRaw(claimsWith({ aud: 'ws://x:80' })), { audiences: ['other', 'x'] }))).toBeUndefined();
  });
  test('another relay (same host, other port) is WRONG_AUDIENCE', () => {
    expect(codeOf(() => verify(signRaw(claimsWith({ aud: 'https://relay.example.com:8443' }))))).toBe('BURROW_ERR_WRONG_AUDIENCE');
  });
  test('an audience that is not a URL is WRONG_AUDIENCE', () => {
    expect(codeOf(() => verify(signRaw(claimsWith({ aud: 'relay.example.com' }))))).toBe('BURROW_ERR_WRONG_AUDIENCE');
  });
});

describe('verifyRegistration: malformed (rejected before the signature is checked)', () => {
  const sig = signRaw(baseClaims).sig;

  test('claims or sig that are not base64url are BAD_REGISTRATION', () => {
    const p = signRaw(baseClaims);
    expect(codeOf(() => verify({ claims: 'not base64!', sig: p.sig }))).toBe('BURROW_ERR_BAD_REGISTRATION');
    expect(codeOf(() => verify({ claims: `${p.claims}==`, sig: p.sig }))).toBe('BURROW_ERR_BAD_REGISTRATION');
    expect(codeOf(() => verify({ claims: p.claims, sig: `${p.sig}+/` }))).toBe('BURROW_ERR_BAD_REGISTRATION');
  });

  test('claims that are not a JSON object are BAD_REGISTRATION', () => {
    for (const text of ['', '{', 'null', '[1,2]', '"s"', '7', '\xff\xfe']) {
      const claims = base64url(Buffer.from(text, 'latin1'));
      expect([text, codeOf(() => verify({ claims, sig }))]).toStrictEqual([text, 'BURROW_ERR_BAD_REGISTRATION']);
    }
  });

  test.each(['pub', 'nonce', 'aud', 'iat', 'ttl'])('missing %s is BAD_REGISTRATION', (key) => {
    const c: Record<string, unknown> = { ...baseClaims };
    delete c[key];
    expect(codeOf(() => verify(signRaw(c)))).toBe('BURROW_ERR_BAD_REGISTRATION');
  });

  test.each([
    ['pub', 5],
    ['nonce', null],
    ['aud', {}],
    ['iat', '1700000000000'],
    ['iat', 1.5],
    ['ttl', '60000'],
    ['ttl', 0],
    ['ttl', -5],
    ['ttl', 1.5],
    ['session', 7],
    ['subdomain', true],
  ])('%s = %p is BAD_REGISTRATION', (key, value) => {
    expect(codeOf(() => verify(signRaw(claimsWith({ [key]: value }))))).toBe('BURROW_ERR_BAD_REGISTRATION');
  });

  test('a public key that is not 32 bytes is BAD_REGISTRATION', () => {
    expect(codeOf(() => verify(signRaw(claimsWith({ pub: base64url(Buffer.alloc(31, 1)) }))))).toBe('BURROW_ERR_BAD_REGISTRATION');
    expect(codeOf(() => verify(signRaw(claimsWith({ pub: 'a+b' }))))).toBe('BURROW_ERR_BAD_REGISTRATION');
  });

  test('another or no protocol version is UNSUPPORTED_VERSION', () => {
    expect(codeOf(() => verify(signRaw(claimsWith({ v: 2 }))))).toBe('BURROW_ERR_UNSUPPORTED_VERSION');
    const c: Record<string, unknown> = { ...baseClaims };
    delete c.v;
    expect(codeOf(() => verify(signRaw(c)))).toBe('BURROW_ERR_UNSUPPORTED_VERSION');
  });

  test('a version that is an object with a "toString" that is not a function is refused with a code, not a TypeError (found by the fuzzer)', () => {
    expect(codeOf(() => verify(signRaw(claimsWith({ v: { toString: {} } }))))).toBe('BURROW_ERR_UNSUPPORTED_VERSION');
    expect(codeOf(() => verify(signRaw(claimsWith({ v: { valueOf: 1, toString: 'x'.repeat(500) } }))))).toBe('BURROW_ERR_UNSUPPORTED_VERSION');
  });
});

describe('verifyRegistration: names (the name rules themselves are covered in naming.test.ts)', () => {
  test('an invalid subdomain is INVALID_NAME', () => {
    expect(codeOf(() => verify(signRaw(claimsWith({ subdomain: 'my_app' }))))).toBe('BURROW_ERR_INVALID_NAME');
  });
  test('an invalid session name is INVALID_NAME', () => {
    expect(codeOf(() => verify(signRaw(claimsWith({ session: 'has space' }))))).toBe('BURROW_ERR_INVALID_NAME');
  });
});

describe('access rules and tenant token claims', () => {
  const access = accessRulesFrom({ basicAuth: ['alice:secret'], allowCidrs: ['10.0.0.0/8'], bearerTokens: ['t0k'] });
  const TOKEN = 'burrow_abc_secret';

  test('round trip: signed after session and subdomain, verified and returned as sent', () => {
    const p = signRegistration({ secretKey: keyA.secretKey, nonce: NONCE, audience: AUDIENCE, nowMs: NOW, session: 'web', access, token: TOKEN });
    expect(p).toStrictEqual(signRaw(claimsWith({ session: 'web', access, token: TOKEN })));
    expect(Object.keys(claimsOf(p))).toStrictEqual([...Object.keys(baseClaims), 'session', 'access', 'token']);
    const v = verify(p);
    expect(v.access).toStrictEqual(access);
    expect(Object.isFrozen(v.access)).toBe(true);
    expect(v.token).toBe(TOKEN);
    expect(v.label).toBe(labelFor(keyA.publicKey, 'web'));
  });

  test('each alone, and neither: absent from the result', () => {
    expect(verify(signRaw(claimsWith({ token: TOKEN })))).not.toHaveProperty('access');
    expect(verify(signRaw(claimsWith({ access: {} }))).access).toStrictEqual({});
    expect(verify(signRaw(claimsWith({ access })))).not.toHaveProperty('token');
  });

  test('header names sent in capitals are lowercased', () => {
    const sent = { headers: [{ name: 'X-Api-Key', sha256: access.basicAuth?.[0]?.sha256 }] };
    expect(verify(signRaw(claimsWith({ access: sent }))).access?.headers?.[0]?.name).toBe('x-api-key');
  });

  test('changing the rules or the token after signing breaks the signature', () => {
    const good = signRaw(claimsWith({ access, token: TOKEN }));
    const looser = signRaw(claimsWith({ access: { ...access, allowCidrs: ['0.0.0.0/0'] }, token: TOKEN }));
    const dropped = signRaw(claimsWith({ token: TOKEN }));
    const otherToken = signRaw(claimsWith({ access, token: 'burrow_abc_other' }));
    for (const tampered of [looser, dropped, otherToken]) {
      expect(codeOf(() => verify({ claims: tampered.claims, sig: good.sig }))).toBe('BURROW_ERR_BAD_SIGNATURE');
    }
  });

  test.each([
    ['access that is not an object', { access: ['10.0.0.0/8'] }],
    ['an unknown rule', { access: { denyCidrs: ['10.0.0.0/8'] } }],
    ['a bad CIDR', { access: { allowCidrs: ['10.0.0.0/33'] } }],
    ['a digest that is not one', { access: { basicAuth: [{ user: 'alice', sha256: 'secret' }] } }],
    ['a hop-by-hop header', { access: { headers: [{ name: 'connection', sha256: access.basicAuth?.[0]?.sha256 }] } }],
    ['17 CIDRs', { access: { allowCidrs: Array.from({ length: 17 }, () => '::1') } }],
    ['a numeric token', { token: 42 }],
    ['an empty token', { token: '' }],
    ['a 201-character token', { token: 't'.repeat(201) }],
  ])('%s is BAD_REGISTRATION (signed, so only validation can refuse it)', (_label, extra) => {
    expect(codeOf(() => verify(signRaw(claimsWith(extra))))).toBe('BURROW_ERR_BAD_REGISTRATION');
  });

  test('a 200-character token is accepted', () => {
    expect(verify(signRaw(claimsWith({ token: 't'.repeat(200) }))).token).toHaveLength(200);
  });
});

describe('native Ed25519 matches tweetnacl', () => {
  test('signatures are byte-identical and verify both ways', () => {
    const nacl = require('tweetnacl') as typeof import('tweetnacl');
    const { signDetached, verifyDetached } = require('@burrow/protocol') as typeof import('@burrow/protocol');
    for (let i = 0; i < 5; i++) {
      const kp = nacl.sign.keyPair.fromSeed(Buffer.alloc(32, i + 1));
      const message = Buffer.from(`message ${i}`);
      const native = signDetached(message, kp.secretKey);
      expect(Buffer.from(nacl.sign.detached(message, kp.secretKey)).equals(native)).toBe(true);
      expect(nacl.sign.detached.verify(message, native, kp.publicKey)).toBe(true);
      expect(verifyDetached(message, native, kp.publicKey)).toBe(true);
      const tampered = Buffer.from(native);
      tampered[0] = (tampered[0] as number) ^ 1;
      expect(verifyDetached(message, tampered, kp.publicKey)).toBe(false);
      expect(verifyDetached(message, native.subarray(0, 63), kp.publicKey)).toBe(false);
      expect(verifyDetached(message, native, kp.publicKey.subarray(0, 31))).toBe(false);
    }
  });
});

describe('tcp claim', () => {
  test('signRegistration adds tcp: true last, and verification returns it', () => {
    const payload = signRegistration({ secretKey: keyA.secretKey, nonce: NONCE, audience: AUDIENCE, nowMs: NOW, tcp: true });
    expect(claimsOf(payload)).toStrictEqual(claimsWith({ tcp: true }));
    expect(verify(payload).tcp).toBe(true);
  });
  test('no tcp claim: nothing in the claims, nothing in the result', () => {
    const payload = signRegistration({ secretKey: keyA.secretKey, nonce: NONCE, audience: AUDIENCE, nowMs: NOW, tcp: false });
    expect('tcp' in claimsOf(payload)).toBe(false);
    expect('tcp' in verify(payload)).toBe(false);
  });
  test.each([false, 1, 'yes'])('tcp: %p is BAD_REGISTRATION', (value) => {
    expect(codeOf(() => verify(signRaw(claimsWith({ tcp: value }))))).toBe('BURROW_ERR_BAD_REGISTRATION');
  });
});
