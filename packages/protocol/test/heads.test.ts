import {
  decodeRequestHead,
  decodeResponseHead,
  encodeRequestHead,
  encodeResponseHead,
  MAX_FRAME_PAYLOAD_BYTES,
  type RequestHead,
  type ResponseHead,
  StreamKind,
} from '@burrow/protocol';
import { codeOf, hex } from './helpers';

describe('request head', () => {
  test('exact bytes: kind u8, method len u8, method, target len u16, target, pair count u16, (len u16, bytes)*', () => {
    const head: RequestHead = { kind: StreamKind.HTTP, method: 'GET', target: '/', headers: ['Host', 'a'] };
    const bytes = encodeRequestHead(head);
    expect(bytes).toStrictEqual(hex('01 03 474554 0001 2f 0001 0004 486f7374 0001 61'));
    expect(decodeRequestHead(bytes)).toStrictEqual(head);
  });

  test('repeated headers keep order, case and multiplicity', () => {
    const head: RequestHead = {
      kind: StreamKind.HTTP,
      method: 'POST',
      target: '/path?q=1&q=2',
      headers: ['Host', 'example.com', 'Cookie', 'a=1', 'X-Custom', '', 'cookie', 'b=2', 'Host', 'dup'],
    };
    expect(decodeRequestHead(encodeRequestHead(head))).toStrictEqual(head);
  });

  test('latin1 bytes travel byte-exact', () => {
    const head: RequestHead = { kind: StreamKind.HTTP, method: 'GET', target: '/caf\xe9', headers: ['X-Name', 'caf\xe9', 'X-Bin', '\x00\x7f\x80\xff'] };
    const bytes = encodeRequestHead(head);
    expect(bytes.includes(hex('2f636166e9'))).toBe(true);
    expect(bytes.includes(hex('0004 007f80ff'))).toBe(true);
    const back = decodeRequestHead(bytes);
    expect(back).toStrictEqual(head);
    expect(back.headers[1]).toBe('caf\u00e9');
  });

  test('empty header list', () => {
    const head: RequestHead = { kind: StreamKind.WEBSOCKET, method: 'GET', target: '/ws', headers: [] };
    const bytes = encodeRequestHead(head);
    expect(bytes).toStrictEqual(hex('02 03 474554 0003 2f7773 0000'));
    expect(decodeRequestHead(bytes)).toStrictEqual(head);
  });

  test('TCP kind with an empty method and a host:port target', () => {
    const head: RequestHead = { kind: StreamKind.TCP, method: '', target: 'localhost:5432', headers: [] };
    const bytes = encodeRequestHead(head);
    expect(bytes.subarray(0, 4)).toStrictEqual(hex('03 00 000e'));
    expect(decodeRequestHead(bytes)).toStrictEqual(head);
  });

  test('every truncation throws PROTOCOL', () => {
    const bytes = encodeRequestHead({ kind: StreamKind.HTTP, method: 'GET', target: '/x', headers: ['A', 'b', 'Cc', 'dd'] });
    for (let n = 0; n < bytes.length; n++) {
      expect([n, codeOf(() => decodeRequestHead(bytes.subarray(0, n)))]).toStrictEqual([n, 'BURROW_ERR_PROTOCOL']);
    }
  });

  test('a trailing byte throws PROTOCOL', () => {
    const bytes = encodeRequestHead({ kind: StreamKind.HTTP, method: 'GET', target: '/', headers: [] });
    expect(codeOf(() => decodeRequestHead(Buffer.concat([bytes, hex('00')])))).toBe('BURROW_ERR_PROTOCOL');
  });

  test('unknown stream kind throws PROTOCOL', () => {
    for (const kind of [0, 4, 0xff]) {
      expect(codeOf(() => decodeRequestHead(hex(`${kind.toString(16).padStart(2, '0')} 00 0000 0000`)))).toBe('BURROW_ERR_PROTOCOL');
    }
    expect(decodeRequestHead(hex('03 00 0000 0000'))).toStrictEqual({ kind: 3, method: '', target: '', headers: [] });
  });

  test('method: 255 bytes is fine, 256 is BAD_REQUEST', () => {
    const ok: RequestHead = { kind: StreamKind.HTTP, method: 'M'.repeat(255), target: '/', headers: [] };
    expect(decodeRequestHead(encodeRequestHead(ok))).toStrictEqual(ok);
    expect(codeOf(() => encodeRequestHead({ ...ok, method: 'M'.repeat(256) }))).toBe('BURROW_ERR_BAD_REQUEST');
  });

  test('target over 65535 bytes is HEADERS_TOO_LARGE', () => {
    expect(codeOf(() => encodeRequestHead({ kind: StreamKind.HTTP, method: 'GET', target: '/'.repeat(65536), headers: [] }))).toBe(
      'BURROW_ERR_HEADERS_TOO_LARGE',
    );
  });

  test('a header field over 65535 bytes is HEADERS_TOO_LARGE', () => {
    expect(codeOf(() => encodeRequestHead({ kind: StreamKind.HTTP, method: 'GET', target: '/', headers: ['X', 'v'.repeat(65536)] }))).toBe(
      'BURROW_ERR_HEADERS_TOO_LARGE',
    );
    expect(codeOf(() => encodeRequestHead({ kind: StreamKind.HTTP, method: 'GET', target: '/', headers: ['n'.repeat(65536), 'v'] }))).toBe(
      'BURROW_ERR_HEADERS_TOO_LARGE',
    );
  });

  test('total head size: exactly 64 KiB is fine, one byte more is HEADERS_TOO_LARGE', () => {
    // 1 (kind) + 1 (method len) + 0 + 2 (target len) + target + 2 (pair count) = 6 + target.
    const fits: RequestHead = { kind: StreamKind.TCP, method: '', target: 't'.repeat(MAX_FRAME_PAYLOAD_BYTES - 6), headers: [] };
    const bytes = encodeRequestHead(fits);
    expect(bytes.length).toBe(65536);
    expect(decodeRequestHead(bytes)).toStrictEqual(fits);
    expect(codeOf(() => encodeRequestHead({ ...fits, target: 't'.repeat(MAX_FRAME_PAYLOAD_BYTES - 5) }))).toBe('BURROW_ERR_HEADERS_TOO_LARGE');
  });

  test('many small headers adding up past 64 KiB are HEADERS_TOO_LARGE', () => {
    const headers: string[] = [];
    for (let i = 0; i < 100; i++) headers.push(`X-H${i}`, 'v'.repeat(700));
    expect(codeOf(() => encodeRequestHead({ kind: StreamKind.HTTP, method: 'GET', target: '/', headers }))).toBe('BURROW_ERR_HEADERS_TOO_LARGE');
  });

  test('an odd header list is BAD_REQUEST', () => {
    expect(codeOf(() => encodeRequestHead({ kind: StreamKind.HTTP, method: 'GET', target: '/', headers: ['Host'] }))).toBe('BURROW_ERR_BAD_REQUEST');
  });

  test('a header length that runs past the payload throws PROTOCOL', () => {
    // one pair; name says 5 bytes but only 1 follows
    expect(codeOf(() => decodeRequestHead(hex('01 00 0000 0001 0005 41')))).toBe('BURROW_ERR_PROTOCOL');
  });
});

describe('response head', () => {
  test('exact bytes: status u16, reason len u8, reason, headers', () => {
    const head: ResponseHead = { status: 404, reason: 'Not Found', headers: ['A', 'b'] };
    const bytes = encodeResponseHead(head);
    expect(bytes).toStrictEqual(hex(`0194 09 ${Buffer.from('Not Found').toString('hex')} 0001 0001 41 0001 62`));
    expect(decodeResponseHead(bytes)).toStrictEqual(head);
  });

  test('two Set-Cookie headers stay two, in order', () => {
    const head: ResponseHead = { status: 200, reason: 'OK', headers: ['Set-Cookie', 'a=1; Path=/', 'Content-Type', 'text/plain', 'Set-Cookie', 'b=2'] };
    const back = decodeResponseHead(encodeResponseHead(head));
    expect(back).toStrictEqual(head);
    expect(back.headers.filter((_, i) => i % 2 === 0 && back.headers[i] === 'Set-Cookie')).toHaveLength(2);
  });

  test('latin1 reason and values are byte-exact', () => {
    const head: ResponseHead = { status: 200, reason: 'caf\xe9', headers: ['X', '\xff\xfe'] };
    const bytes = encodeResponseHead(head);
    expect(bytes.subarray(0, 7)).toStrictEqual(hex('00c8 04 636166e9'));
    expect(decodeResponseHead(bytes)).toStrictEqual(head);
  });

  test('empty headers and empty reason', () => {
    const head: ResponseHead = { status: 204, reason: '', headers: [] };
    const bytes = encodeResponseHead(head);
    expect(bytes).toStrictEqual(hex('00cc 00 0000'));
    expect(decodeResponseHead(bytes)).toStrictEqual(head);
  });

  test('a reason over 255 bytes is cut to 255', () => {
    const back = decodeResponseHead(encodeResponseHead({ status: 200, reason: 'r'.repeat(300), headers: [] }));
    expect(back.reason).toBe('r'.repeat(255));
  });

  test('status bounds: 100 and 999 encode; 99, 1000, non-integers are LOCAL_ERROR', () => {
    expect(decodeResponseHead(encodeResponseHead({ status: 100, reason: '', headers: [] })).status).toBe(100);
    expect(decodeResponseHead(encodeResponseHead({ status: 999, reason: '', headers: [] })).status).toBe(999);
    for (const status of [99, 1000, 0, -200, 200.5, Number.NaN]) {
      expect([status, codeOf(() => encodeResponseHead({ status, reason: '', headers: [] }))]).toStrictEqual([status, 'BURROW_ERR_LOCAL_ERROR']);
    }
  });

  test('decoding an out-of-range status throws PROTOCOL', () => {
    expect(codeOf(() => decodeResponseHead(hex('0063 00 0000')))).toBe('BURROW_ERR_PROTOCOL'); // 99
    expect(codeOf(() => decodeResponseHead(hex('03e8 00 0000')))).toBe('BURROW_ERR_PROTOCOL'); // 1000
    expect(codeOf(() => decodeResponseHead(hex('0064 00 0000')))).toBeUndefined(); // 100
  });

  test('every truncation and a trailing byte throw PROTOCOL', () => {
    const bytes = encodeResponseHead({ status: 301, reason: 'Moved', headers: ['Location', '/x'] });
    for (let n = 0; n < bytes.length; n++) {
      expect([n, codeOf(() => decodeResponseHead(bytes.subarray(0, n)))]).toStrictEqual([n, 'BURROW_ERR_PROTOCOL']);
    }
    expect(codeOf(() => decodeResponseHead(Buffer.concat([bytes, hex('ff')])))).toBe('BURROW_ERR_PROTOCOL');
  });

  test('oversized header fields and totals are HEADERS_TOO_LARGE; odd lists BAD_REQUEST', () => {
    expect(codeOf(() => encodeResponseHead({ status: 200, reason: '', headers: ['X', 'v'.repeat(65536)] }))).toBe('BURROW_ERR_HEADERS_TOO_LARGE');
    // 2 + 1 + 0 + 2 (count) + 2 + 1 ('X') + 2 + value = 10 + value
    const fits = { status: 200, reason: '', headers: ['X', 'v'.repeat(MAX_FRAME_PAYLOAD_BYTES - 10)] };
    expect(encodeResponseHead(fits).length).toBe(65536);
    expect(codeOf(() => encodeResponseHead({ ...fits, headers: ['XY', 'v'.repeat(MAX_FRAME_PAYLOAD_BYTES - 10)] }))).toBe('BURROW_ERR_HEADERS_TOO_LARGE');
    expect(codeOf(() => encodeResponseHead({ status: 200, reason: '', headers: ['a', 'b', 'c'] }))).toBe('BURROW_ERR_BAD_REQUEST');
  });
});
