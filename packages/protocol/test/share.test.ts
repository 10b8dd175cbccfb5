/** Share names, secrets, connect requests and the share/connect registration claims. */
import {
  BurrowError,
  decodeConnectRequest,
  encodeConnectRequest,
  keyPairFromSeed,
  normalizeShareName,
  shareSecretDigest,
  signRegistration,
  verifyRegistration,
} from '@burrow/protocol';

const codeOf = (fn: () => unknown): string | undefined => {
  try {
    fn();
  } catch (err) {
    return err instanceof BurrowError ? err.code : 'not a BurrowError';
  }
  return undefined;
};

describe('share names and connect requests', () => {
  test('names are DNS labels, lowercased', () => {
    expect(normalizeShareName('Prod-DB')).toBe('prod-db');
    for (const bad of ['', '-x', 'x-', 'a:b', 'a.b', 'x'.repeat(64)]) expect(codeOf(() => normalizeShareName(bad))).toBe('BURROW_ERR_INVALID_NAME');
  });

  test('the secret digest is base64url SHA-256', () => {
    expect(shareSecretDigest('s3cret')).toBe('HsHCa1DV08WNlYMYGvgHZlX-AHVr9yhZQLo2cPmfy6A');
  });

  test('a connect request round-trips; bad ones are BAD_REQUEST', () => {
    const req = { share: 'db', secret: 's', target: 'db.internal:5432' };
    expect(decodeConnectRequest(encodeConnectRequest(req))).toEqual(req);
    expect(decodeConnectRequest(encodeConnectRequest({ share: 'DB' }))).toEqual({ share: 'db' });
    for (const bad of [
      'nope',
      '[]',
      '{}',
      '{"share":"db","extra":1}',
      '{"share":"db","target":"x"}',
      '{"share":"db","target":"h:0"}',
      '{"share":"db","secret":""}',
    ]) {
      expect([bad, codeOf(() => decodeConnectRequest(Buffer.from(bad)))]).toEqual([bad, 'BURROW_ERR_BAD_REQUEST']);
    }
  });
});

describe('share and connect claims', () => {
  const key = keyPairFromSeed(Buffer.alloc(32, 7));
  const verify = (extra: Parameters<typeof signRegistration>[0] extends infer T ? Partial<T> : never) =>
    verifyRegistration(signRegistration({ secretKey: key.secretKey, nonce: 'n', audience: 'http://r', nowMs: 1000, ...extra }), {
      expectedNonce: 'n',
      audiences: ['r'],
      nowMs: 1000,
    });

  test('a share claim carries its name (normalized) and digest; connect is a flag', () => {
    const digest = shareSecretDigest('x');
    expect(verify({ share: { name: 'Db', secretSha256: digest } }).share).toEqual({ name: 'db', secretSha256: digest });
    expect(verify({ share: { name: 'db' } }).share).toEqual({ name: 'db' });
    expect(verify({ connect: true }).connect).toBe(true);
  });

  test('a share or connector cannot ask for a URL, a port or access rules; claims are strict', () => {
    expect(codeOf(() => verify({ share: { name: 'db' }, tcp: true }))).toBe('BURROW_ERR_BAD_REGISTRATION');
    expect(codeOf(() => verify({ share: { name: 'db' }, subdomain: 'x' }))).toBe('BURROW_ERR_BAD_REGISTRATION');
    expect(codeOf(() => verify({ share: { name: 'db' }, connect: true }))).toBe('BURROW_ERR_BAD_REGISTRATION');
    expect(codeOf(() => verify({ connect: true, tcp: true }))).toBe('BURROW_ERR_BAD_REGISTRATION');
    expect(codeOf(() => verify({ share: { name: 'db', secretSha256: 'short' } }))).toBe('BURROW_ERR_BAD_REGISTRATION');
    expect(codeOf(() => verify({ share: { name: 'db', extra: 1 } as never }))).toBe('BURROW_ERR_BAD_REGISTRATION');
    expect(codeOf(() => verify({ share: { name: 'a:b' } }))).toBe('BURROW_ERR_INVALID_NAME');
  });
});
