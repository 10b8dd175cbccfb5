/** Token format, parsing, digests and constant-time comparison. */
import { digestSecret, generateToken, isTokenId, parseToken, randomBase32, safeEqual, secretMatches, TOKEN_CHARS } from '../src/tenancy/tokens';

describe('tokens', () => {
  test('burrow_<12 base32>_<43 base64url>; the digest is SHA-256 of the secret', () => {
    const t = generateToken();
    expect(t.token).toMatch(/^burrow_[a-z2-7]{12}_[A-Za-z0-9_-]{43}$/);
    expect(t.token).toHaveLength(TOKEN_CHARS);
    const parsed = parseToken(t.token);
    expect(parsed?.id).toBe(t.id);
    expect(isTokenId(t.id)).toBe(true);
    expect(t.digest).toBe(digestSecret(parsed?.secret ?? ''));
    expect(t.digest).toMatch(/^[0-9a-f]{64}$/);
    expect(t.token).not.toContain(t.digest);
  });

  test('tokens and ids are unique', () => {
    const ids = new Set(Array.from({ length: 500 }, () => generateToken().id));
    expect(ids.size).toBe(500);
    expect(randomBase32(20)).toMatch(/^[a-z2-7]{20}$/);
  });

  test('parseToken rejects anything else', () => {
    const { token } = generateToken();
    for (const bad of [
      '',
      token.slice(1),
      `${token}x`,
      token.replace('burrow_', 'Burrow_'),
      token.replace('burrow_', 'borrow_'),
      `burrow_${'A'.repeat(12)}_${'a'.repeat(43)}`,
      `burrow_${'a'.repeat(12)}-${'a'.repeat(43)}`,
      `burrow_${'a'.repeat(12)}_${'a'.repeat(42)}=`,
      'x'.repeat(100_000),
      123 as unknown as string,
    ]) {
      expect(parseToken(bad)).toBeUndefined();
    }
    // A secret may itself contain _ and -.
    expect(parseToken(`burrow_${'a'.repeat(12)}_${'_-'.repeat(21)}a`)).toEqual({ id: 'a'.repeat(12), secret: `${'_-'.repeat(21)}a` });
  });

  test('secretMatches compares digests; a malformed stored digest never matches', () => {
    const digest = digestSecret('s3cret');
    expect(secretMatches('s3cret', digest)).toBe(true);
    expect(secretMatches('s3creT', digest)).toBe(false);
    expect(secretMatches('s3cret', 'abcd')).toBe(false);
    expect(secretMatches('s3cret', '')).toBe(false);
  });

  test('safeEqual works for any lengths', () => {
    expect(safeEqual('admin-token-123456', 'admin-token-123456')).toBe(true);
    expect(safeEqual('admin-token-123456', 'admin-token-12345')).toBe(false);
    expect(safeEqual('', '')).toBe(true);
    expect(safeEqual('a', '')).toBe(false);
  });
});
