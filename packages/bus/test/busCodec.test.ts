import { BATCH_FORMAT, BusCodecError, type BusMessage, decodeBatch, encodeBatch, encodedSize, keySlot } from '@burrow/bus';
import { FLAG_FIN, FrameType } from '@burrow/protocol';

const everyByte = Buffer.from(Array.from({ length: 256 }, (_, i) => i));

const samples: BusMessage[] = [
  { kind: 'toSession', sessionId: 'sess-1', replyNode: 'node-a', frame: { type: FrameType.OPEN, flags: FLAG_FIN, streamId: 1, payload: everyByte } },
  { kind: 'toSession', sessionId: '', replyNode: 'ñødé-ü', frame: { type: FrameType.DATA, flags: 0, streamId: 0xffff_ffff, payload: Buffer.alloc(0) } },
  { kind: 'toIngress', frame: { type: FrameType.RESPONSE, flags: FLAG_FIN, streamId: 0, payload: everyByte } },
  { kind: 'toIngress', frame: { type: FrameType.END, flags: 0, streamId: 7, payload: Buffer.alloc(0) } },
  { kind: 'sessionReplaced', sessionId: 'sess-2' },
  { kind: 'sessionReplaced', sessionId: '' },
  { kind: 'closeSession', sessionId: 'sess-3', code: 'BURROW_ERR_ADMIN_DISCONNECT' },
  { kind: 'closeSession', sessionId: 'sess-4', code: 'BURROW_ERR_TOKEN_REVOKED' },
];

/** Plain comparable form (payloads as hex). */
const plain = (m: BusMessage): unknown => (!('frame' in m) ? m : { ...m, frame: { ...m.frame, payload: Buffer.from(m.frame.payload).toString('hex') } });

describe('bus codec', () => {
  test('round trip of every message kind, payloads with every byte value and empty payloads', () => {
    const batch = encodeBatch(samples);
    expect(batch[0]).toBe(BATCH_FORMAT);
    expect(batch.length).toBe(1 + samples.reduce((n, m) => n + encodedSize(m), 0));
    const back = decodeBatch(batch);
    expect(back.map(plain)).toStrictEqual(samples.map(plain));
    for (const m of back) if ('frame' in m) expect(Buffer.isBuffer(m.frame.payload)).toBe(true);
  });

  test('each message alone, and an empty batch', () => {
    for (const m of samples) expect(decodeBatch(encodeBatch([m])).map(plain)).toStrictEqual([plain(m)]);
    expect(decodeBatch(encodeBatch([]))).toStrictEqual([]);
  });

  test('a large payload (over 64 KiB) survives', () => {
    const big = Buffer.alloc(300_000);
    for (let i = 0; i < big.length; i++) big[i] = (i * 131) & 0xff;
    const [m] = decodeBatch(encodeBatch([{ kind: 'toIngress', frame: { type: FrameType.DATA, flags: 0, streamId: 9, payload: big } }]));
    if (m?.kind !== 'toIngress') throw new Error('wrong kind');
    expect(m.frame.payload.equals(big)).toBe(true);
  });

  test('every truncation of a valid batch throws BusCodecError', () => {
    const batch = encodeBatch(samples);
    // Cutting exactly at a record boundary yields a valid shorter batch; everywhere else must throw.
    const boundaries = new Set<number>([1]);
    let at = 1;
    for (const m of samples) {
      at += encodedSize(m);
      boundaries.add(at);
    }
    for (let n = 0; n < batch.length; n++) {
      const cut = batch.subarray(0, n);
      if (boundaries.has(n)) expect(() => decodeBatch(cut)).not.toThrow();
      else expect(() => decodeBatch(cut)).toThrow(BusCodecError);
    }
  });

  test('garbage is rejected with a clear error', () => {
    expect(() => decodeBatch(Buffer.alloc(0))).toThrow(/empty/);
    expect(() => decodeBatch(Buffer.from('hello world'))).toThrow(/unknown format byte 0x68/);
    expect(() => decodeBatch(Buffer.from([BATCH_FORMAT, 9]))).toThrow(/unknown message kind 9/);
    expect(() => decodeBatch(Buffer.from([BATCH_FORMAT, 2, 0xee, 0, 0, 0, 0, 1, 0, 0, 0, 0]))).toThrow(/unknown frame type 0xee/);
    expect(() => decodeBatch(Buffer.from([BATCH_FORMAT, 2, FrameType.DATA, 0, 0, 0, 0, 1, 0xff, 0xff, 0xff, 0xff, 1]))).toThrow(/truncated/);
    // Random bytes never crash with anything but BusCodecError.
    let seed = 12345;
    const rnd = (): number => {
      seed = (seed * 1103515245 + 12345) & 0x7fffffff;
      return seed;
    };
    for (let i = 0; i < 2000; i++) {
      const buf = Buffer.alloc(rnd() % 64);
      for (let j = 0; j < buf.length; j++) buf[j] = rnd() & 0xff;
      if (buf.length > 0 && i % 2 === 0) buf[0] = BATCH_FORMAT;
      try {
        decodeBatch(buf);
      } catch (err) {
        expect(err).toBeInstanceOf(BusCodecError);
      }
    }
  });

  test('ids longer than 65535 bytes cannot be encoded', () => {
    expect(() => encodeBatch([{ kind: 'sessionReplaced', sessionId: 'x'.repeat(70_000) }])).toThrow(RangeError);
  });
});

describe('keySlot', () => {
  test('matches the Redis cluster spec examples and honours hash tags', () => {
    expect(keySlot('123456789')).toBe(0x31c3 % 16384); // CRC16-XMODEM check value 0x31C3
    expect(keySlot('foo')).toBe(12182);
    expect(keySlot('{user1000}.following')).toBe(keySlot('user1000'));
    expect(keySlot('foo{}{bar}')).not.toBe(keySlot('bar')); // an empty first tag: the whole key is hashed
    expect(keySlot('foo{{bar}}zap')).toBe(keySlot('{bar'));
    expect(keySlot('foo{bar}{zap}')).toBe(keySlot('bar'));
  });
});
