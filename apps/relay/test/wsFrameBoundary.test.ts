import { WsFrameBoundary, wsCloseFrame } from '../src/wsFrameBoundary';

/** One WebSocket frame, encoded straight from RFC 6455 §5.2 (independently of the code under test). */
function frame(opcode: number, payload: Buffer, options: { fin?: boolean; mask?: boolean } = {}): Buffer {
  const first = ((options.fin ?? true) ? 0x80 : 0) | opcode;
  const maskBit = options.mask === true ? 0x80 : 0;
  let header: Buffer;
  if (payload.length < 126) header = Buffer.from([first, maskBit | payload.length]);
  else if (payload.length < 65536) {
    header = Buffer.alloc(4);
    header.writeUInt8(first, 0);
    header.writeUInt8(maskBit | 126, 1);
    header.writeUInt16BE(payload.length, 2);
  } else {
    header = Buffer.alloc(10);
    header.writeUInt8(first, 0);
    header.writeUInt8(maskBit | 127, 1);
    header.writeBigUInt64BE(BigInt(payload.length), 2);
  }
  if (options.mask !== true) return Buffer.concat([header, payload]);
  const key = Buffer.from([1, 2, 3, 4]);
  const masked = Buffer.from(payload.map((b, i) => b ^ (key[i % 4] as number)));
  return Buffer.concat([header, key, masked]);
}

const SIZES = [0, 1, 125, 126, 127, 65535, 65536, 70_000];

/** A stream of frames of every length class, masked and not, a fragmented message among them. */
function stream(): { bytes: Buffer; boundaries: Set<number> } {
  const frames: Buffer[] = [];
  for (const size of SIZES) {
    frames.push(frame(0x2, Buffer.alloc(size, size & 0xff)));
    frames.push(frame(0x1, Buffer.alloc(size, 0x61), { mask: true }));
  }
  // A fragmented message with a ping between its fragments (allowed: control frames may interleave).
  frames.push(frame(0x1, Buffer.from('hel'), { fin: false }), frame(0x9, Buffer.from('p')), frame(0x0, Buffer.from('lo')));
  const boundaries = new Set<number>([0]);
  let at = 0;
  for (const f of frames) {
    at += f.length;
    boundaries.add(at);
  }
  return { bytes: Buffer.concat(frames), boundaries };
}

describe('WsFrameBoundary', () => {
  test('fed byte by byte, it stands at a boundary exactly between frames, for every length class, masked or not', () => {
    const { bytes, boundaries } = stream();
    const b = new WsFrameBoundary();
    const wrong: number[] = [];
    for (let i = 0; i <= bytes.length; i++) {
      if (b.canAddFrame !== boundaries.has(i)) wrong.push(i);
      if (i < bytes.length) b.feed(bytes.subarray(i, i + 1));
    }
    expect(wrong).toEqual([]);
  });

  test('fed in chunks of any size, it agrees at every chunk edge', () => {
    const { bytes, boundaries } = stream();
    const wrong: string[] = [];
    for (const size of [2, 3, 7, 125, 1000, 4096, 65_536, bytes.length]) {
      const b = new WsFrameBoundary();
      for (let i = 0; i < bytes.length; i += size) {
        b.feed(bytes.subarray(i, i + size));
        const edge = Math.min(bytes.length, i + size);
        if (b.canAddFrame !== boundaries.has(edge)) wrong.push(`chunks of ${size}: at ${edge}`);
      }
    }
    expect(wrong).toEqual([]);
  });

  test('after a close frame nothing may be added', () => {
    const b = new WsFrameBoundary();
    b.feed(frame(0x2, Buffer.from('x')));
    expect(b.canAddFrame).toBe(true);
    b.feed(frame(0x8, Buffer.from([0x03, 0xe8])));
    expect(b.canAddFrame).toBe(false);
    b.feed(frame(0x2, Buffer.from('y')));
    expect(b.canAddFrame).toBe(false);
  });

  test('a length beyond 2^53 cannot be followed: never a boundary again', () => {
    const b = new WsFrameBoundary();
    b.feed(Buffer.from([0x82, 127, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]));
    expect(b.canAddFrame).toBe(false);
    b.feed(Buffer.alloc(100));
    expect(b.canAddFrame).toBe(false);
  });
});

describe('wsCloseFrame', () => {
  test('an unmasked close frame with the code and the reason', () => {
    expect(wsCloseFrame(1011, 'BURROW_ERR_AGENT_DISCONNECTED')).toEqual(
      frame(0x8, Buffer.concat([Buffer.from([0x03, 0xf3]), Buffer.from('BURROW_ERR_AGENT_DISCONNECTED')])),
    );
  });

  test('a reason longer than a control frame holds is cut to 123 bytes', () => {
    const f = wsCloseFrame(1001, 'x'.repeat(200));
    expect(f.length).toBe(2 + 125);
    expect(f[1]).toBe(125);
    const b = new WsFrameBoundary();
    b.feed(f);
    expect(b.canAddFrame).toBe(false);
  });
});
