import {
  type Direction,
  decodeFrames,
  encodeFrame,
  FLAG_FIN,
  FRAME_HEADER_BYTES,
  type Frame,
  FrameDecoder,
  FrameType,
  MAX_FRAME_PAYLOAD_BYTES,
  writeFrameHeader,
} from '@burrow/protocol';
import { codeOf, hex } from './helpers';

interface Plain {
  type: number;
  flags: number;
  streamId: number;
  payload: string;
}

/** A frame with its payload copied to hex, so results can be kept and compared. */
const plain = (f: Frame): Plain => ({ type: f.type, flags: f.flags, streamId: f.streamId, payload: f.payload.toString('hex') });

function decodeAll(message: Buffer, direction: Direction): Plain[] {
  const out: Plain[] = [];
  decodeFrames(message, direction, (f) => out.push(plain(f)));
  return out;
}

/** A header with arbitrary (possibly invalid) fields, bypassing encodeFrame's checks. */
function rawHeader(type: number, flags: number, streamId: number, length: number): Buffer {
  const b = Buffer.alloc(FRAME_HEADER_BYTES);
  b[0] = type;
  b[1] = flags;
  b.writeUInt32BE(streamId, 2);
  b.writeUInt32BE(length, 6);
  return b;
}

describe('encodeFrame', () => {
  test('DATA with FIN: type, flags, stream id BE, length BE, payload', () => {
    expect(encodeFrame(FrameType.DATA, FLAG_FIN, 5, Buffer.from('hi')).toString('hex')).toBe('12' + '01' + '00000005' + '00000002' + '6869');
  });

  test('PING on the session has an empty payload', () => {
    expect(encodeFrame(FrameType.PING, 0, 0).toString('hex')).toBe('05' + '00' + '00000000' + '00000000');
  });

  test('stream id and length are big-endian u32', () => {
    const payload = Buffer.alloc(0x0102, 0xab);
    const out = encodeFrame(FrameType.OPEN, 0, 0x01020304, payload);
    expect(out.subarray(0, FRAME_HEADER_BYTES)).toStrictEqual(hex('10 00 01020304 00000102'));
    expect(out.length).toBe(FRAME_HEADER_BYTES + 0x0102);
    expect(out.subarray(FRAME_HEADER_BYTES)).toStrictEqual(payload);
  });

  test('CREDIT on the largest stream id', () => {
    expect(encodeFrame(FrameType.CREDIT, 0, 0xffff_ffff, hex('00040000'))).toStrictEqual(hex('13 00 ffffffff 00000004 00040000'));
  });

  test('copies the payload (later changes to the input do not leak into the frame)', () => {
    const payload = Buffer.from('abc');
    const out = encodeFrame(FrameType.DATA, 0, 1, payload);
    payload[0] = 0x7a;
    expect(out.subarray(FRAME_HEADER_BYTES).toString()).toBe('abc');
  });

  test('accepts a Uint8Array payload', () => {
    expect(encodeFrame(FrameType.DATA, 0, 2, new Uint8Array([1, 2, 3]))).toStrictEqual(hex('12 00 00000002 00000003 010203'));
  });

  test('a payload of exactly the cap is allowed', () => {
    const out = encodeFrame(FrameType.DATA, 0, 1, Buffer.alloc(MAX_FRAME_PAYLOAD_BYTES));
    expect(out.length).toBe(FRAME_HEADER_BYTES + 65536);
    expect(out.readUInt32BE(6)).toBe(65536);
  });

  test('a payload one byte over the cap throws FRAME_TOO_LARGE', () => {
    expect(codeOf(() => encodeFrame(FrameType.DATA, 0, 1, Buffer.alloc(MAX_FRAME_PAYLOAD_BYTES + 1)))).toBe('BURROW_ERR_FRAME_TOO_LARGE');
  });

  test('writeFrameHeader writes at an offset and leaves the rest alone', () => {
    const target = Buffer.alloc(14, 0xee);
    writeFrameHeader(target, 2, FrameType.END, 0, 7, 0);
    expect(target).toStrictEqual(hex('eeee 14 00 00000007 00000000 eeee'));
  });
});

/** Frames valid from the relay (relayToAgent), in one byte string. */
const relayFrames: Plain[] = [
  { type: FrameType.HELLO, flags: 0, streamId: 0, payload: Buffer.from('{"v":1}').toString('hex') },
  { type: FrameType.OPEN, flags: 0, streamId: 1, payload: '0103474554' },
  { type: FrameType.DATA, flags: 0, streamId: 1, payload: '' },
  { type: FrameType.DATA, flags: FLAG_FIN, streamId: 1, payload: 'deadbeef' },
  { type: FrameType.CREDIT, flags: 0, streamId: 3, payload: '00010000' },
  { type: FrameType.PING, flags: 0, streamId: 0, payload: '0102030405060708' },
  { type: FrameType.END, flags: 0, streamId: 0xffff_ffff, payload: '' },
];
const relayBytes = Buffer.concat(relayFrames.map((f) => encodeFrame(f.type as FrameType, f.flags, f.streamId, Buffer.from(f.payload, 'hex'))));

describe('decodeFrames', () => {
  test('round-trips several frames from one message', () => {
    expect(decodeAll(relayBytes, 'relayToAgent')).toStrictEqual(relayFrames);
  });

  test('an empty message holds no frames', () => {
    expect(decodeAll(Buffer.alloc(0), 'relayToAgent')).toStrictEqual([]);
  });

  test('payloads are zero-copy views into the message', () => {
    const message = Buffer.concat([encodeFrame(FrameType.DATA, 0, 2, Buffer.from('abc')), encodeFrame(FrameType.DATA, 0, 2, Buffer.from('xyz'))]);
    const payloads: Buffer[] = [];
    decodeFrames(message, 'agentToRelay', (f) => payloads.push(f.payload));
    expect(payloads).toHaveLength(2);
    const [first, second] = payloads as [Buffer, Buffer];
    expect(first.buffer).toBe(message.buffer);
    expect(first.byteOffset).toBe(message.byteOffset + FRAME_HEADER_BYTES);
    expect(second.byteOffset).toBe(message.byteOffset + 2 * FRAME_HEADER_BYTES + 3);
    message[FRAME_HEADER_BYTES] = 0x41; // 'A'
    expect(first.toString()).toBe('Abc');
  });

  test('a message that ends inside a header throws PROTOCOL', () => {
    for (let cut = 1; cut < FRAME_HEADER_BYTES; cut++) {
      expect(codeOf(() => decodeFrames(relayBytes.subarray(0, cut), 'relayToAgent', () => {}))).toBe('BURROW_ERR_PROTOCOL');
    }
  });

  test('a message that ends inside a payload throws PROTOCOL after the whole frames before it', () => {
    const one = encodeFrame(FrameType.DATA, 0, 1, Buffer.from('0123456789'));
    const message = Buffer.concat([encodeFrame(FrameType.PING, 0, 0), one.subarray(0, one.length - 1)]);
    const seen: number[] = [];
    expect(codeOf(() => decodeFrames(message, 'relayToAgent', (f) => seen.push(f.type)))).toBe('BURROW_ERR_PROTOCOL');
    expect(seen).toStrictEqual([FrameType.PING]);
  });

  test('every truncation of a multi-frame message that is not on a frame boundary throws PROTOCOL', () => {
    const boundaries = new Set<number>([0]);
    let at = 0;
    for (const f of relayFrames) {
      at += FRAME_HEADER_BYTES + f.payload.length / 2;
      boundaries.add(at);
    }
    for (let cut = 0; cut <= relayBytes.length; cut++) {
      const code = codeOf(() => decodeFrames(relayBytes.subarray(0, cut), 'relayToAgent', () => {}));
      expect([cut, code]).toStrictEqual([cut, boundaries.has(cut) ? undefined : 'BURROW_ERR_PROTOCOL']);
    }
  });

  test('respects a smaller payload cap', () => {
    const frame = encodeFrame(FrameType.DATA, 0, 1, Buffer.alloc(101));
    expect(codeOf(() => decodeFrames(frame, 'relayToAgent', () => {}, 100))).toBe('BURROW_ERR_FRAME_TOO_LARGE');
    expect(codeOf(() => decodeFrames(frame, 'relayToAgent', () => {}, 101))).toBeUndefined();
  });
});

/** Which direction may send each type: [type, relayToAgent, agentToRelay]. */
const DIRECTIONS: ReadonlyArray<readonly [keyof typeof FrameType, boolean, boolean]> = [
  ['HELLO', true, false],
  ['REGISTER', false, true],
  ['REGISTERED', true, false],
  ['ERROR', true, true],
  ['PING', true, true],
  ['PONG', true, true],
  ['GOAWAY', true, true],
  ['OPEN', true, true],
  ['RESPONSE', true, true],
  ['DATA', true, true],
  ['CREDIT', true, true],
  ['END', true, true],
  ['RESET', true, true],
];
const STREAM_TYPES = new Set(['OPEN', 'RESPONSE', 'DATA', 'CREDIT', 'END', 'RESET']);

describe('header validation', () => {
  test.each(DIRECTIONS)('%s: relayToAgent %p, agentToRelay %p', (name, fromRelay, fromAgent) => {
    const type = FrameType[name];
    // CREDIT needs a valid 4-byte payload only at a higher layer; the codec does not look at payloads.
    const frame = encodeFrame(type, 0, STREAM_TYPES.has(name) ? 9 : 0);
    expect(codeOf(() => decodeFrames(frame, 'relayToAgent', () => {}))).toBe(fromRelay ? undefined : 'BURROW_ERR_PROTOCOL');
    expect(codeOf(() => decodeFrames(frame, 'agentToRelay', () => {}))).toBe(fromAgent ? undefined : 'BURROW_ERR_PROTOCOL');
  });

  test('REGISTER from the relay side and HELLO from the agent side are rejected', () => {
    expect(codeOf(() => decodeFrames(encodeFrame(FrameType.REGISTER, 0, 0, Buffer.from('{}')), 'relayToAgent', () => {}))).toBe('BURROW_ERR_PROTOCOL');
    expect(codeOf(() => decodeFrames(encodeFrame(FrameType.HELLO, 0, 0, Buffer.from('{}')), 'agentToRelay', () => {}))).toBe('BURROW_ERR_PROTOCOL');
  });

  test('unknown frame types are rejected in both directions', () => {
    for (const type of [0x00, 0x08, 0x0f, 0x16, 0x20, 0x7f, 0xff]) {
      for (const dir of ['relayToAgent', 'agentToRelay'] as const) {
        expect([type, dir, codeOf(() => decodeFrames(rawHeader(type, 0, 0, 0), dir, () => {}))]).toStrictEqual([type, dir, 'BURROW_ERR_PROTOCOL']);
        expect([type, dir, codeOf(() => decodeFrames(rawHeader(type, 0, 1, 0), dir, () => {}))]).toStrictEqual([type, dir, 'BURROW_ERR_PROTOCOL']);
      }
    }
  });

  test('FIN is allowed on OPEN, RESPONSE and DATA only', () => {
    expect(codeOf(() => decodeFrames(rawHeader(FrameType.OPEN, FLAG_FIN, 1, 0), 'relayToAgent', () => {}))).toBeUndefined();
    expect(codeOf(() => decodeFrames(rawHeader(FrameType.RESPONSE, FLAG_FIN, 1, 0), 'agentToRelay', () => {}))).toBeUndefined();
    expect(codeOf(() => decodeFrames(rawHeader(FrameType.DATA, FLAG_FIN, 1, 0), 'agentToRelay', () => {}))).toBeUndefined();
    for (const name of ['END', 'CREDIT', 'RESET'] as const) {
      expect([name, codeOf(() => decodeFrames(rawHeader(FrameType[name], FLAG_FIN, 1, 0), 'agentToRelay', () => {}))]).toStrictEqual([
        name,
        'BURROW_ERR_PROTOCOL',
      ]);
    }
    for (const name of ['PING', 'PONG', 'ERROR', 'GOAWAY'] as const) {
      expect([name, codeOf(() => decodeFrames(rawHeader(FrameType[name], FLAG_FIN, 0, 0), 'agentToRelay', () => {}))]).toStrictEqual([
        name,
        'BURROW_ERR_PROTOCOL',
      ]);
    }
  });

  test('any undefined flag bit is rejected, even on types that allow FIN', () => {
    for (const flags of [0x02, 0x03, 0x80, 0xff]) {
      expect(codeOf(() => decodeFrames(rawHeader(FrameType.DATA, flags, 1, 0), 'relayToAgent', () => {}))).toBe('BURROW_ERR_PROTOCOL');
    }
  });

  test('a stream frame with stream id 0 is rejected', () => {
    for (const name of ['OPEN', 'DATA', 'CREDIT', 'END', 'RESET'] as const) {
      expect([name, codeOf(() => decodeFrames(rawHeader(FrameType[name], 0, 0, 0), 'relayToAgent', () => {}))]).toStrictEqual([name, 'BURROW_ERR_PROTOCOL']);
    }
  });

  test('a session frame with a non-zero stream id is rejected', () => {
    for (const name of ['HELLO', 'REGISTERED', 'ERROR', 'PING', 'PONG', 'GOAWAY'] as const) {
      expect([name, codeOf(() => decodeFrames(rawHeader(FrameType[name], 0, 1, 0), 'relayToAgent', () => {}))]).toStrictEqual([name, 'BURROW_ERR_PROTOCOL']);
    }
    expect(codeOf(() => decodeFrames(rawHeader(FrameType.REGISTER, 0, 0xffff_ffff, 0), 'agentToRelay', () => {}))).toBe('BURROW_ERR_PROTOCOL');
  });

  test('a declared length over the cap is FRAME_TOO_LARGE; exactly the cap is fine', () => {
    const atCap = Buffer.concat([rawHeader(FrameType.DATA, 0, 1, MAX_FRAME_PAYLOAD_BYTES), Buffer.alloc(MAX_FRAME_PAYLOAD_BYTES)]);
    expect(codeOf(() => decodeFrames(atCap, 'relayToAgent', () => {}))).toBeUndefined();
    for (const length of [MAX_FRAME_PAYLOAD_BYTES + 1, 0x7fff_ffff, 0xffff_ffff]) {
      expect(codeOf(() => decodeFrames(rawHeader(FrameType.DATA, 0, 1, length), 'relayToAgent', () => {}))).toBe('BURROW_ERR_FRAME_TOO_LARGE');
    }
  });
});

describe('FrameDecoder', () => {
  function collect(decoder: FrameDecoder, chunks: Buffer[]): Plain[] {
    const out: Plain[] = [];
    for (const c of chunks) decoder.push(c, (f) => out.push(plain(f)));
    return out;
  }

  test('all frames in one chunk', () => {
    const d = new FrameDecoder('relayToAgent');
    expect(collect(d, [relayBytes])).toStrictEqual(relayFrames);
    expect(d.bufferedBytes).toBe(0);
    expect(() => d.finish()).not.toThrow();
  });

  test('the same bytes split into two chunks at every byte boundary', () => {
    for (let cut = 0; cut <= relayBytes.length; cut++) {
      const d = new FrameDecoder('relayToAgent');
      const got = collect(d, [relayBytes.subarray(0, cut), relayBytes.subarray(cut)]);
      expect([cut, got]).toStrictEqual([cut, relayFrames]);
      expect(d.bufferedBytes).toBe(0);
      d.finish();
    }
  });

  test('the same bytes split into three chunks at every pair of boundaries', () => {
    const n = relayBytes.length;
    const expected = JSON.stringify(relayFrames);
    let checked = 0;
    for (let i = 0; i <= n; i++) {
      for (let j = i; j <= n; j++) {
        const d = new FrameDecoder('relayToAgent');
        const got = collect(d, [relayBytes.subarray(0, i), relayBytes.subarray(i, j), relayBytes.subarray(j)]);
        // Cheap string comparison first (about 5000 splits); a full diff only on mismatch.
        if (JSON.stringify(got) !== expected || d.bufferedBytes !== 0) expect([i, j, got, d.bufferedBytes]).toStrictEqual([i, j, relayFrames, 0]);
        checked++;
      }
    }
    expect(checked).toBe(((n + 1) * (n + 2)) / 2);
  });

  test('one byte at a time', () => {
    const d = new FrameDecoder('relayToAgent');
    const chunks: Buffer[] = [];
    for (let i = 0; i < relayBytes.length; i++) chunks.push(relayBytes.subarray(i, i + 1));
    expect(collect(d, chunks)).toStrictEqual(relayFrames);
  });

  test('bufferedBytes counts the held partial frame', () => {
    const d = new FrameDecoder('relayToAgent');
    const frame = encodeFrame(FrameType.DATA, 0, 1, Buffer.from('hello'));
    const seen: Plain[] = [];
    d.push(frame.subarray(0, 4), (f) => seen.push(plain(f)));
    expect(d.bufferedBytes).toBe(4);
    d.push(frame.subarray(4, 12), (f) => seen.push(plain(f)));
    expect(d.bufferedBytes).toBe(12);
    expect(seen).toHaveLength(0);
    d.push(frame.subarray(12), (f) => seen.push(plain(f)));
    expect(d.bufferedBytes).toBe(0);
    expect(seen).toStrictEqual([{ type: FrameType.DATA, flags: 0, streamId: 1, payload: Buffer.from('hello').toString('hex') }]);
  });

  test('whole frames in a chunk are zero-copy views into that chunk', () => {
    const d = new FrameDecoder('agentToRelay');
    const chunk = Buffer.concat([encodeFrame(FrameType.DATA, 0, 2, Buffer.from('one')), encodeFrame(FrameType.DATA, 0, 2, Buffer.from('two'))]);
    const payloads: Buffer[] = [];
    d.push(chunk, (f) => payloads.push(f.payload));
    expect(payloads.map((p) => p.buffer === chunk.buffer)).toStrictEqual([true, true]);
    expect(payloads.map((p) => p.byteOffset - chunk.byteOffset)).toStrictEqual([10, 23]);
  });

  test('the held partial frame is a copy: reusing the input chunk does not corrupt it', () => {
    const d = new FrameDecoder('agentToRelay');
    const frame = encodeFrame(FrameType.DATA, 0, 2, Buffer.from('abcdef'));
    const reused = Buffer.from(frame.subarray(0, 13));
    const seen: string[] = [];
    d.push(reused, (f) => seen.push(f.payload.toString()));
    reused.fill(0);
    d.push(frame.subarray(13), (f) => seen.push(f.payload.toString()));
    expect(seen).toStrictEqual(['abcdef']);
  });

  test('an oversized length is rejected from the header alone, before any payload arrives', () => {
    const d = new FrameDecoder('relayToAgent');
    const header = rawHeader(FrameType.DATA, 0, 1, MAX_FRAME_PAYLOAD_BYTES + 1);
    d.push(header.subarray(0, 9), () => {});
    expect(d.bufferedBytes).toBe(9);
    expect(codeOf(() => d.push(header.subarray(9), () => {}))).toBe('BURROW_ERR_FRAME_TOO_LARGE');
  });

  test('a custom cap applies', () => {
    const d = new FrameDecoder('relayToAgent', 16);
    expect(codeOf(() => d.push(rawHeader(FrameType.DATA, 0, 1, 16), () => {}))).toBeUndefined();
    const d2 = new FrameDecoder('relayToAgent', 16);
    expect(codeOf(() => d2.push(rawHeader(FrameType.DATA, 0, 1, 17), () => {}))).toBe('BURROW_ERR_FRAME_TOO_LARGE');
  });

  test('a bad header after good frames: good frames are delivered, then it throws', () => {
    const d = new FrameDecoder('agentToRelay');
    const seen: number[] = [];
    const chunk = Buffer.concat([encodeFrame(FrameType.PONG, 0, 0), rawHeader(FrameType.HELLO, 0, 0, 0)]);
    expect(codeOf(() => d.push(chunk, (f) => seen.push(f.type)))).toBe('BURROW_ERR_PROTOCOL');
    expect(seen).toStrictEqual([FrameType.PONG]);
  });

  test.each([
    ['REGISTER from the relay', 'relayToAgent', rawHeader(FrameType.REGISTER, 0, 0, 0)],
    ['HELLO from an agent', 'agentToRelay', rawHeader(FrameType.HELLO, 0, 0, 0)],
    ['unknown type', 'agentToRelay', rawHeader(0x42, 0, 0, 0)],
    ['FIN on END', 'agentToRelay', rawHeader(FrameType.END, FLAG_FIN, 1, 0)],
    ['DATA on stream 0', 'agentToRelay', rawHeader(FrameType.DATA, 0, 0, 0)],
    ['PING on stream 1', 'agentToRelay', rawHeader(FrameType.PING, 0, 1, 0)],
  ] as const)('rejects %s with PROTOCOL', (_name, direction, header) => {
    const d = new FrameDecoder(direction);
    expect(codeOf(() => d.push(header, () => {}))).toBe('BURROW_ERR_PROTOCOL');
  });

  test('finish() with a partial frame held throws PROTOCOL and clears the buffer', () => {
    const d = new FrameDecoder('relayToAgent');
    d.push(relayBytes.subarray(0, relayBytes.length - 1), () => {});
    expect(d.bufferedBytes).toBeGreaterThan(0);
    expect(codeOf(() => d.finish())).toBe('BURROW_ERR_PROTOCOL');
    expect(d.bufferedBytes).toBe(0);
    expect(codeOf(() => d.finish())).toBeUndefined();
  });

  test('finish() with only part of a header held throws PROTOCOL', () => {
    const d = new FrameDecoder('relayToAgent');
    d.push(Buffer.from([FrameType.PING]), () => {});
    expect(codeOf(() => d.finish())).toBe('BURROW_ERR_PROTOCOL');
  });
});
