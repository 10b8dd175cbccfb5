import { createHash } from 'node:crypto';
import {
  base64url,
  fromBase64url,
  hostPort,
  isKeyLabel,
  KEY_LABEL_LENGTH,
  labelFor,
  normalizeSubdomain,
  thumbprint,
  thumbprintInput,
  urlAuthority,
  validateSessionName,
} from '@burrow/protocol';
import { codeOf } from './helpers';

/** RFC 8037 Appendix A.1 Ed25519 public key. */
const RFC8037_X = '11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo';
const rfcPub = Buffer.from(RFC8037_X, 'base64url');
/** RFC 8037 Appendix A.3: the RFC 7638 thumbprint of that key. */
const RFC8037_THUMBPRINT = 'kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k';
/**
 * Lowercase unpadded RFC 4648 base32 of the thumbprint bytes, computed independently with
 * python3: base64.b32encode(base64.urlsafe_b64decode(RFC8037_THUMBPRINT + '=')).rstrip(b'=').lower()
 */
const RFC8037_LABEL = 'sd5mv7vjwfkwngcub5ymael2elvdppk46pwtyryjhqlqokbljoeq';
/** base32(SHA-256(thumbprint bytes || UTF-8 "web")), also computed with python3. */
const RFC8037_WEB_LABEL = 'ja63orcmig4z2cg6iiozx6rblxc2hnw4tu2bvrebyy5r2jzywtla';

/** Minimal reference RFC 4648 base32 (lowercase, unpadded), written for this test only. */
function refBase32(bytes: Uint8Array): string {
  const alphabet = 'abcdefghijklmnopqrstuvwxyz234567';
  let out = '';
  let acc = 0;
  let bits = 0;
  for (const b of bytes) {
    acc = (acc << 8) | b;
    bits += 8;
    while (bits >= 5) {
      out += alphabet[(acc >>> (bits - 5)) & 31];
      bits -= 5;
    }
    acc &= (1 << bits) - 1;
  }
  if (bits > 0) out += alphabet[(acc << (5 - bits)) & 31];
  return out;
}

describe('reference base32 encoder (sanity, RFC 4648 section 10 vectors)', () => {
  test.each([
    ['', ''],
    ['f', 'my'],
    ['fo', 'mzxq'],
    ['foo', 'mzxw6'],
    ['foob', 'mzxw6yq'],
    ['fooba', 'mzxw6ytb'],
    ['foobar', 'mzxw6ytboi'],
  ])('%p -> %p', (input, expected) => {
    expect(refBase32(Buffer.from(input))).toBe(expected);
  });
});

describe('key labels: RFC 8037 test vector', () => {
  test('thumbprint input is the RFC 7638 canonical JSON', () => {
    expect(thumbprintInput(rfcPub)).toBe(`{"crv":"Ed25519","kty":"OKP","x":"${RFC8037_X}"}`);
  });

  test('thumbprint matches RFC 8037 A.3', () => {
    expect(base64url(thumbprint(rfcPub))).toBe(RFC8037_THUMBPRINT);
  });

  test('label is the lowercase unpadded base32 of the 32 thumbprint bytes', () => {
    const tp = Buffer.from(RFC8037_THUMBPRINT, 'base64url');
    expect(tp.length).toBe(32);
    expect(refBase32(tp)).toBe(RFC8037_LABEL);
    expect(labelFor(rfcPub)).toBe(RFC8037_LABEL);
  });

  test('session label is base32 of SHA-256 over thumbprint bytes then the UTF-8 name', () => {
    const tp = Buffer.from(RFC8037_THUMBPRINT, 'base64url');
    const digest = createHash('sha256').update(tp).update(Buffer.from('web', 'utf8')).digest();
    expect(refBase32(digest)).toBe(RFC8037_WEB_LABEL);
    expect(labelFor(rfcPub, 'web')).toBe(RFC8037_WEB_LABEL);
  });

  test('a label is 52 chars of [a-z2-7] and passes isKeyLabel', () => {
    expect(KEY_LABEL_LENGTH).toBe(52);
    for (const label of [labelFor(rfcPub), labelFor(rfcPub, 'a'), labelFor(Buffer.alloc(32, 9)), labelFor(Buffer.alloc(32, 9), 'Z.z_-9')]) {
      expect(label).toMatch(/^[a-z2-7]{52}$/);
      expect(isKeyLabel(label)).toBe(true);
    }
  });

  test('different sessions and different keys give different labels; the same input is stable', () => {
    const labels = [
      labelFor(rfcPub),
      labelFor(rfcPub, 'web'),
      labelFor(rfcPub, 'api'),
      labelFor(rfcPub, 'Web'),
      labelFor(Buffer.alloc(32, 1)),
      labelFor(Buffer.alloc(32, 1), 'web'),
    ];
    expect(new Set(labels).size).toBe(labels.length);
    expect(labelFor(rfcPub, 'web')).toBe(labelFor(Buffer.from(rfcPub), 'web'));
  });

  test('an invalid session name is INVALID_NAME when deriving a label', () => {
    expect(codeOf(() => labelFor(rfcPub, 'bad name'))).toBe('BURROW_ERR_INVALID_NAME');
    expect(codeOf(() => labelFor(rfcPub, ''))).toBe('BURROW_ERR_INVALID_NAME');
  });
});

describe('isKeyLabel', () => {
  test.each([
    [RFC8037_LABEL, true],
    [RFC8037_LABEL.toUpperCase(), false],
    [RFC8037_LABEL.slice(1), false],
    [`${RFC8037_LABEL}a`, false],
    [`${RFC8037_LABEL.slice(1)}1`, false],
    ['', false],
  ])('%p -> %p', (label, expected) => {
    expect(isKeyLabel(label)).toBe(expected);
  });
});

describe('validateSessionName', () => {
  test.each(['a', 'A', 'web', 'A.b_c-9', '-', '.', 'x'.repeat(63)])('accepts %p', (name) => {
    expect(codeOf(() => validateSessionName(name))).toBeUndefined();
  });
  test.each(['', 'x'.repeat(64), 'a b', 'a/b', 'é', 'a:b', 'a\n', 'web\u0000'])('rejects %p with INVALID_NAME', (name) => {
    expect(codeOf(() => validateSessionName(name))).toBe('BURROW_ERR_INVALID_NAME');
  });
});

describe('normalizeSubdomain', () => {
  test.each([
    ['myapp', 'myapp'],
    ['MyApp', 'myapp'],
    ['MY-APP-2', 'my-app-2'],
    ['a', 'a'],
    ['0', '0'],
    ['a-b', 'a-b'],
    ['a--b', 'a--b'],
    ['x'.repeat(63), 'x'.repeat(63)],
    // 52 characters but not key-label-shaped (contains '1', '0' or '-'), so it cannot pose as one.
    [`${'a'.repeat(51)}1`, `${'a'.repeat(51)}1`],
    [`${'a'.repeat(50)}-b`, `${'a'.repeat(50)}-b`],
    // 51 and 53 base32 characters are not key-label length.
    ['a'.repeat(51), 'a'.repeat(51)],
    ['a'.repeat(53), 'a'.repeat(53)],
  ])('accepts %p as %p', (input, expected) => {
    expect(normalizeSubdomain(input)).toBe(expected);
  });

  test.each([
    ['empty', ''],
    ['leading hyphen', '-app'],
    ['trailing hyphen', 'app-'],
    ['only a hyphen', '-'],
    ['64 characters', 'x'.repeat(64)],
    ['underscore', 'my_app'],
    ['dot', 'a.b'],
    ['space', 'a b'],
    ['non-ASCII', 'café'],
    ['key-label-shaped', RFC8037_LABEL],
    ['key-label-shaped, upper case', RFC8037_LABEL.toUpperCase()],
    ['52 base32 letters', 'a'.repeat(52)],
  ])('rejects %s with INVALID_NAME', (_what, input) => {
    expect(codeOf(() => normalizeSubdomain(input))).toBe('BURROW_ERR_INVALID_NAME');
  });
});

describe('urlAuthority', () => {
  test.each([
    ['http://x', 'x'],
    ['http://x:80', 'x'],
    ['ws://x:80', 'x'],
    ['ws://x', 'x'],
    ['https://h:443', 'h'],
    ['wss://h:443/path', 'h'],
    ['https://h:8443', 'h:8443'],
    ['http://x:443', 'x:443'],
    ['HTTPS://Relay.Example.COM/Path?Q=1', 'relay.example.com'],
    ['http://localhost:8080/', 'localhost:8080'],
    ['http://user:pw@host:81/', 'host:81'],
    ['http://[::1]:3000', '[::1]:3000'],
  ])('%p -> %p', (url, expected) => {
    expect(urlAuthority(url)).toBe(expected);
  });

  test.each(['', 'relay.example.com', '://x', 'http://'])('%p is not a URL: WRONG_AUDIENCE', (url) => {
    expect(codeOf(() => urlAuthority(url))).toBe('BURROW_ERR_WRONG_AUDIENCE');
  });
});

describe('base64url helpers', () => {
  test('base64url encodes only the view, not the whole underlying buffer', () => {
    const backing = Buffer.from([0xff, 0xfb, 0xef, 0x01, 0x02]);
    expect(base64url(backing.subarray(0, 3))).toBe('__vv');
    expect(base64url(new Uint8Array(backing.buffer, backing.byteOffset + 3, 2))).toBe('AQI');
  });

  test('fromBase64url decodes unpadded base64url', () => {
    expect(fromBase64url('__vv')).toStrictEqual(Buffer.from([0xff, 0xfb, 0xef]));
    expect(fromBase64url('')).toStrictEqual(Buffer.alloc(0));
  });

  test.each(['a+b', 'a/b', 'ab==', 'a b', 'é'])('fromBase64url rejects %p with BAD_REGISTRATION', (text) => {
    expect(codeOf(() => fromBase64url(text))).toBe('BURROW_ERR_BAD_REGISTRATION');
  });
});

describe('hostPort', () => {
  test('IPv4 and names as they are, IPv6 in brackets', () => {
    expect(hostPort('127.0.0.1', 80)).toBe('127.0.0.1:80');
    expect(hostPort('db.internal', 5432)).toBe('db.internal:5432');
    expect(hostPort('::1', 7000)).toBe('[::1]:7000');
    expect(hostPort('::ffff:10.0.0.1', 1)).toBe('[::ffff:10.0.0.1]:1');
  });
});
