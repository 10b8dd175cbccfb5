import {
  BurrowError,
  codeFromWire,
  decodeCredit,
  decodeHello,
  decodeReason,
  decodeRegister,
  decodeRegistered,
  ERRORS,
  type ErrorCode,
  encodeCredit,
  encodeJson,
  encodeReason,
  isErrorCode,
  MAX_REASON_BYTES,
} from '@burrow/protocol';
import { codeOf, hex } from './helpers';

describe('reason (ERROR / RESET / GOAWAY payload)', () => {
  test('exact bytes: wire number u16 BE then UTF-8 message', () => {
    expect(encodeReason('BURROW_ERR_TIMEOUT', 'slow')).toStrictEqual(hex('0068 736c6f77'));
    expect(encodeReason('BURROW_ERR_INTERNAL', '')).toStrictEqual(hex('00c7'));
  });

  test('the default message is the title', () => {
    expect(decodeReason(encodeReason('BURROW_ERR_CANCELLED'))).toStrictEqual({ code: 'BURROW_ERR_CANCELLED', message: 'Client went away' });
  });

  test('every code round-trips through its wire number', () => {
    for (const code of Object.keys(ERRORS) as ErrorCode[]) {
      expect(decodeReason(encodeReason(code, `m ${code}`))).toStrictEqual({ code, message: `m ${code}` });
    }
  });

  test('UTF-8 messages round-trip', () => {
    expect(decodeReason(encodeReason('BURROW_ERR_LOCAL_ERROR', 'café ☕ 🚇')).message).toBe('café ☕ 🚇');
  });

  test('a message longer than MAX_REASON_BYTES is cut to exactly that many bytes', () => {
    expect(MAX_REASON_BYTES).toBe(1024);
    const enc = encodeReason('BURROW_ERR_PROTOCOL', 'x'.repeat(5000));
    expect(enc.length).toBe(2 + 1024);
    const dec = decodeReason(enc);
    expect(dec.code).toBe('BURROW_ERR_PROTOCOL');
    expect(dec.message).toBe('x'.repeat(1024));
    expect(encodeReason('BURROW_ERR_PROTOCOL', 'y'.repeat(1024)).length).toBe(1026);
  });

  test('a long message is cut on a UTF-8 character boundary, never inside a character', () => {
    // 'a' + 600 x 'é' (2 bytes each) = 1201 bytes; byte 1024 would split an 'é'.
    const enc = encodeReason('BURROW_ERR_PROTOCOL', `a${'é'.repeat(600)}`);
    expect(enc.length).toBe(2 + 1023);
    expect(decodeReason(enc).message).toBe(`a${'é'.repeat(511)}`);
    // 4-byte characters: 1024 / 4 = 256 fit exactly; with a 1-byte prefix only 255 fit.
    expect(decodeReason(encodeReason('BURROW_ERR_PROTOCOL', '🚇'.repeat(300))).message).toBe('🚇'.repeat(256));
    const shifted = encodeReason('BURROW_ERR_PROTOCOL', `x${'🚇'.repeat(300)}`);
    expect(shifted.length).toBe(2 + 1 + 255 * 4);
    expect(decodeReason(shifted).message).toBe(`x${'🚇'.repeat(255)}`);
  });

  test('decode: shorter than 2 bytes or longer than 2 + MAX_REASON_BYTES is PROTOCOL', () => {
    expect(codeOf(() => decodeReason(Buffer.alloc(0)))).toBe('BURROW_ERR_PROTOCOL');
    expect(codeOf(() => decodeReason(hex('00')))).toBe('BURROW_ERR_PROTOCOL');
    expect(codeOf(() => decodeReason(Buffer.alloc(2 + MAX_REASON_BYTES + 1)))).toBe('BURROW_ERR_PROTOCOL');
    expect(codeOf(() => decodeReason(Buffer.concat([hex('0001'), Buffer.alloc(MAX_REASON_BYTES, 0x61)])))).toBeUndefined();
  });

  test('an unknown wire number decodes as INTERNAL, keeping the message', () => {
    expect(decodeReason(hex('ffff 6869'))).toStrictEqual({ code: 'BURROW_ERR_INTERNAL', message: 'hi' });
    expect(decodeReason(hex('0000'))).toStrictEqual({ code: 'BURROW_ERR_INTERNAL', message: '' });
    expect(codeFromWire(5)).toBe('BURROW_ERR_INTERNAL');
    expect(codeFromWire(107)).toBe('BURROW_ERR_TOO_MANY_STREAMS');
  });
});

describe('errors module', () => {
  test('BurrowError carries code, status, close code and the title as default message', () => {
    const e = new BurrowError('BURROW_ERR_NAME_TAKEN');
    expect(e).toBeInstanceOf(Error);
    expect(e.name).toBe('BurrowError');
    expect(e.code).toBe('BURROW_ERR_NAME_TAKEN');
    expect(e.status).toBe(409);
    expect(e.closeCode).toBe(4009);
    expect(e.message).toBe('Subdomain is bound to another key');
    expect(new BurrowError('BURROW_ERR_TIMEOUT', 'custom').message).toBe('custom');
  });

  test('isErrorCode accepts table keys only', () => {
    expect(isErrorCode('BURROW_ERR_PROTOCOL')).toBe(true);
    expect(isErrorCode('BURROW_ERR_NOPE')).toBe(false);
    expect(isErrorCode('toString')).toBe(false);
    expect(isErrorCode(1)).toBe(false);
    expect(isErrorCode(undefined)).toBe(false);
  });
});

describe('credit', () => {
  test('exact bytes: u32 BE', () => {
    expect(encodeCredit(1)).toStrictEqual(hex('00000001'));
    expect(encodeCredit(0x01020304)).toStrictEqual(hex('01020304'));
    expect(encodeCredit(0xffff_ffff)).toStrictEqual(hex('ffffffff'));
  });

  test('round-trip', () => {
    for (const n of [1, 255, 65536, 262144, 0xffff_ffff]) expect(decodeCredit(encodeCredit(n))).toBe(n);
  });

  test('encode refuses 0, negatives, fractions and values over u32 with FLOW_CONTROL', () => {
    for (const n of [0, -1, 1.5, 2 ** 32, Number.NaN, Number.POSITIVE_INFINITY]) {
      expect([n, codeOf(() => encodeCredit(n))]).toStrictEqual([n, 'BURROW_ERR_FLOW_CONTROL']);
    }
  });

  test('decode refuses 0 and any size other than 4 with PROTOCOL', () => {
    expect(codeOf(() => decodeCredit(hex('00000000')))).toBe('BURROW_ERR_PROTOCOL');
    for (const payload of [hex(''), hex('01'), hex('000001'), hex('0000000001'), hex('0000000000000001')]) {
      expect(codeOf(() => decodeCredit(payload))).toBe('BURROW_ERR_PROTOCOL');
    }
  });
});

describe('HELLO', () => {
  const valid = { v: 1, nonce: 'n0nce', relay: 'https://relay.example', windowBytes: 262144, maxBodyBytes: 10485760, pingIntervalMs: 20000 };

  test('round-trips through encodeJson', () => {
    expect(decodeHello(encodeJson(valid))).toStrictEqual(valid);
  });

  test('unknown extra fields are ignored', () => {
    expect(decodeHello(encodeJson({ ...valid, future: true }))).toStrictEqual(valid);
  });

  test('another protocol version is UNSUPPORTED_VERSION', () => {
    expect(codeOf(() => decodeHello(encodeJson({ ...valid, v: 2 })))).toBe('BURROW_ERR_UNSUPPORTED_VERSION');
    expect(codeOf(() => decodeHello(encodeJson({ ...valid, v: 99 })))).toBe('BURROW_ERR_UNSUPPORTED_VERSION');
  });

  test.each(['v', 'nonce', 'relay', 'windowBytes', 'maxBodyBytes', 'pingIntervalMs'])('missing %s is PROTOCOL', (key) => {
    const o: Record<string, unknown> = { ...valid };
    delete o[key];
    expect(codeOf(() => decodeHello(encodeJson(o)))).toBe('BURROW_ERR_PROTOCOL');
  });

  test.each([
    ['windowBytes', 0],
    ['windowBytes', -1],
    ['windowBytes', 1.5],
    ['windowBytes', '262144'],
    ['maxBodyBytes', null],
    ['pingIntervalMs', 2 ** 53],
    ['v', 0],
    ['v', '1'],
    ['nonce', 5],
    ['relay', null],
  ])('%s = %p is PROTOCOL', (key, value) => {
    expect(codeOf(() => decodeHello(encodeJson({ ...valid, [key]: value })))).toBe('BURROW_ERR_PROTOCOL');
  });

  test('not JSON, or not an object, is PROTOCOL', () => {
    for (const text of ['', '{', 'null', '[]', '"hello"', '42']) {
      expect([text, codeOf(() => decodeHello(Buffer.from(text)))]).toStrictEqual([text, 'BURROW_ERR_PROTOCOL']);
    }
  });
});

describe('REGISTER', () => {
  test('decodes claims and sig', () => {
    expect(decodeRegister(encodeJson({ claims: 'abc', sig: 'def', extra: 1 }))).toStrictEqual({ claims: 'abc', sig: 'def' });
  });

  test('missing or non-string fields are BAD_REGISTRATION', () => {
    expect(codeOf(() => decodeRegister(encodeJson({ claims: 'abc' })))).toBe('BURROW_ERR_BAD_REGISTRATION');
    expect(codeOf(() => decodeRegister(encodeJson({ sig: 'def' })))).toBe('BURROW_ERR_BAD_REGISTRATION');
    expect(codeOf(() => decodeRegister(encodeJson({ claims: 1, sig: 'def' })))).toBe('BURROW_ERR_BAD_REGISTRATION');
  });

  test('not JSON or not an object is BAD_REGISTRATION', () => {
    for (const text of ['', 'nope', '[1]', 'null']) {
      expect(codeOf(() => decodeRegister(Buffer.from(text)))).toBe('BURROW_ERR_BAD_REGISTRATION');
    }
  });
});

describe('REGISTERED', () => {
  const base = { label: 'abc', url: 'https://abc.relay.example', sessionId: 's1' };

  test('without a subdomain URL', () => {
    const out = decodeRegistered(encodeJson(base));
    expect(out).toStrictEqual(base);
    expect('subdomainUrl' in out).toBe(false);
  });

  test('with a subdomain URL', () => {
    expect(decodeRegistered(encodeJson({ ...base, subdomainUrl: 'https://app.relay.example' }))).toStrictEqual({
      ...base,
      subdomainUrl: 'https://app.relay.example',
    });
  });

  test('a non-string subdomainUrl is dropped', () => {
    expect(decodeRegistered(encodeJson({ ...base, subdomainUrl: 42 }))).toStrictEqual(base);
  });

  test('with a TCP URL; a non-string tcpUrl is dropped', () => {
    expect(decodeRegistered(encodeJson({ ...base, tcpUrl: 'tcp://relay.example:20001' }))).toStrictEqual({ ...base, tcpUrl: 'tcp://relay.example:20001' });
    expect(decodeRegistered(encodeJson({ ...base, tcpUrl: 20001 }))).toStrictEqual(base);
  });

  test.each(['label', 'url', 'sessionId'])('missing %s is PROTOCOL', (key) => {
    const o: Record<string, unknown> = { ...base };
    delete o[key];
    expect(codeOf(() => decodeRegistered(encodeJson(o)))).toBe('BURROW_ERR_PROTOCOL');
  });

  test('not JSON is PROTOCOL', () => {
    expect(codeOf(() => decodeRegistered(Buffer.from('{"label":')))).toBe('BURROW_ERR_PROTOCOL');
  });
});

test('encodeJson is compact UTF-8 JSON', () => {
  expect(encodeJson({ a: 'é', b: [1] })).toStrictEqual(Buffer.from('{"a":"é","b":[1]}', 'utf8'));
});
