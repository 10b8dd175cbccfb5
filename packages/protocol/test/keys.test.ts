import { createPublicKey, verify as cryptoVerify } from 'node:crypto';
import { base64url, type Ed25519Jwk, keyPairFromJwk, keyPairFromSeed, keyPairToJwk, thumbprint } from '@burrow/protocol';
import nacl from 'tweetnacl';
import { codeOf } from './helpers';

/** RFC 8037 Appendix A.1. */
const RFC_JWK: Ed25519Jwk = {
  kty: 'OKP',
  crv: 'Ed25519',
  d: 'nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A',
  x: '11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo',
};

describe('keys', () => {
  const rfc = keyPairFromJwk(RFC_JWK);

  test('the RFC 8037 JWK parses: the seed d derives the public key x', () => {
    expect(base64url(rfc.publicKey)).toBe(RFC_JWK.x);
    expect(rfc.secretKey.length).toBe(64);
    expect(base64url(rfc.secretKey.subarray(0, 32))).toBe(RFC_JWK.d);
    expect(base64url(rfc.secretKey.subarray(32))).toBe(RFC_JWK.x);
    expect(base64url(thumbprint(rfc.publicKey))).toBe('kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k');
  });

  test('the parsed key signs the RFC 8037 A.4 example exactly', () => {
    const input = Buffer.from('eyJhbGciOiJFZERTQSJ9.RXhhbXBsZSBvZiBFZDI1NTE5IHNpZ25pbmc');
    const sig = nacl.sign.detached(input, rfc.secretKey);
    expect(base64url(sig)).toBe('hgyY0il_MGCjP0JzlnLWG1PPOt7-09PGcvMg3AIbQR6dWbhijcNR4ki4iylGjg5BhVsPt9g7sVvpAr_MuM0KAg');
    const pub = createPublicKey({ key: { kty: 'OKP', crv: 'Ed25519', x: RFC_JWK.x }, format: 'jwk' });
    expect(cryptoVerify(null, input, pub, sig)).toBe(true);
  });

  test('JWK round trip: toJwk(fromJwk(jwk)) is the same JWK', () => {
    expect(keyPairToJwk(rfc)).toStrictEqual(RFC_JWK);
  });

  test('seed -> JWK -> key pair gives the same keys', () => {
    const kp = keyPairFromSeed(Buffer.alloc(32, 7));
    const jwk = keyPairToJwk(kp);
    expect(Object.keys(jwk).sort()).toStrictEqual(['crv', 'd', 'kty', 'x']);
    expect(jwk.kty).toBe('OKP');
    expect(jwk.crv).toBe('Ed25519');
    expect(jwk.d).toBe(base64url(Buffer.alloc(32, 7)));
    const back = keyPairFromJwk(JSON.parse(JSON.stringify(jwk)));
    expect(Buffer.from(back.publicKey)).toStrictEqual(Buffer.from(kp.publicKey));
    expect(Buffer.from(back.secretKey)).toStrictEqual(Buffer.from(kp.secretKey));
  });

  test('an x that does not match d is BAD_REGISTRATION', () => {
    const other = keyPairToJwk(keyPairFromSeed(Buffer.alloc(32, 8)));
    expect(codeOf(() => keyPairFromJwk({ ...RFC_JWK, x: other.x }))).toBe('BURROW_ERR_BAD_REGISTRATION');
  });

  test.each([
    ['kty EC', { ...RFC_JWK, kty: 'EC' }],
    ['kty missing', { crv: 'Ed25519', x: RFC_JWK.x, d: RFC_JWK.d }],
    ['crv X25519', { ...RFC_JWK, crv: 'X25519' }],
    ['crv Ed448', { ...RFC_JWK, crv: 'Ed448' }],
    ['d missing', { kty: 'OKP', crv: 'Ed25519', x: RFC_JWK.x }],
    ['x missing', { kty: 'OKP', crv: 'Ed25519', d: RFC_JWK.d }],
    ['d not a string', { ...RFC_JWK, d: 5 }],
    ['d not base64url', { ...RFC_JWK, d: 'nWGxne/9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A=' }],
    ['d of 31 bytes', { ...RFC_JWK, d: base64url(Buffer.alloc(31, 1)) }],
    ['null', null],
    ['a string', 'OKP'],
    ['a number', 42],
  ])('%s is BAD_REGISTRATION', (_what, value) => {
    expect(codeOf(() => keyPairFromJwk(value))).toBe('BURROW_ERR_BAD_REGISTRATION');
  });

  test('a seed that is not 32 bytes is BAD_REGISTRATION', () => {
    expect(codeOf(() => keyPairFromSeed(Buffer.alloc(31)))).toBe('BURROW_ERR_BAD_REGISTRATION');
    expect(codeOf(() => keyPairFromSeed(Buffer.alloc(64)))).toBe('BURROW_ERR_BAD_REGISTRATION');
  });
});

describe('native key derivation matches tweetnacl', () => {
  test('keyPairFromSeed gives the same public and secret keys as tweetnacl for many seeds', () => {
    for (let i = 0; i < 20; i++) {
      const seed = Buffer.alloc(32, i * 7 + 1);
      seed[0] = i;
      const ours = keyPairFromSeed(seed);
      const theirs = nacl.sign.keyPair.fromSeed(seed);
      expect(Buffer.from(ours.publicKey).equals(Buffer.from(theirs.publicKey))).toBe(true);
      expect(Buffer.from(ours.secretKey).equals(Buffer.from(theirs.secretKey))).toBe(true);
    }
  });
});
