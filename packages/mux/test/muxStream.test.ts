import { MuxStream, type MuxStreamOptions } from '@burrow/mux';
import { decodeCredit, decodeReason, encodeCredit, encodeReason, FLAG_FIN, FrameType, MAX_DATA_CHUNK_BYTES } from '@burrow/protocol';
import { pseudoRandomBytes, Recorder, RecordingSink } from './harness';

interface Setup {
  stream: MuxStream;
  sink: RecordingSink;
  rec: Recorder;
  closes: MuxStream[];
}

function setup(windowBytes: number, extra: Partial<MuxStreamOptions> = {}, id = 1): Setup {
  const sink = new RecordingSink();
  const closes: MuxStream[] = [];
  const stream = new MuxStream(id, sink, { windowBytes, onClose: (s) => closes.push(s), ...extra });
  const rec = new Recorder(stream);
  stream.handler = rec;
  return { stream, sink, rec, closes };
}

/** The peer's head arrives, so DATA/END from the peer are legal. */
const head = (s: MuxStream, fin = false): void => s.receive(FrameType.RESPONSE, fin ? FLAG_FIN : 0, Buffer.from('head'));
const credit = (s: MuxStream, n: number): void => s.receive(FrameType.CREDIT, 0, encodeCredit(n));

describe('sending within credit', () => {
  test('a write within credit goes out at once as one DATA frame', () => {
    const { stream, sink } = setup(100);
    expect(stream.write(Buffer.from('hello'))).toBe(true);
    expect(sink.frames).toStrictEqual([{ type: FrameType.DATA, flags: 0, streamId: 1, payload: Buffer.from('hello') }]);
    expect(stream.bufferedBytes).toBe(0);
  });

  test('an empty write sends nothing and returns true', () => {
    const { stream, sink } = setup(100);
    expect(stream.write(Buffer.alloc(0))).toBe(true);
    expect(sink.frames).toHaveLength(0);
  });

  test('never more than windowBytes leave before CREDIT; CREDIT releases exactly that much more, in order', () => {
    const { stream, sink } = setup(1000);
    const input = pseudoRandomBytes(3000);
    for (let i = 0; i < 10; i++) stream.write(input.subarray(i * 300, (i + 1) * 300));
    expect(sink.dataBytes()).toBe(1000);
    expect(stream.bufferedBytes).toBe(2000);
    credit(stream, 1);
    expect(sink.dataBytes()).toBe(1001);
    credit(stream, 499);
    expect(sink.dataBytes()).toBe(1500);
    expect(stream.bufferedBytes).toBe(1500);
    credit(stream, 100_000);
    expect(sink.dataBytes()).toBe(3000);
    expect(stream.bufferedBytes).toBe(0);
    expect(Buffer.concat(sink.ofType(FrameType.DATA).map((f) => f.payload))).toStrictEqual(input);
    // 1000 + 1 + 499 + 100_000 - 3000 = 98_500 bytes of credit are left: all of it can go now, not a byte more.
    expect(stream.write(Buffer.alloc(98_500))).toBe(true);
    expect(sink.dataBytes()).toBe(101_500);
    expect(stream.bufferedBytes).toBe(0);
    expect(stream.write(Buffer.alloc(1))).toBe(true);
    expect(sink.dataBytes()).toBe(101_500);
    expect(stream.bufferedBytes).toBe(1);
  });

  test('a write never overtakes queued bytes even when it would fit the remaining credit', () => {
    const { stream, sink } = setup(10);
    stream.write(Buffer.from('0123456789ab')); // 10 out, 'ab' queued
    credit(stream, 5);
    expect(sink.ofType(FrameType.DATA).map((f) => f.payload.toString())).toStrictEqual(['0123456789', 'ab']);
    stream.write(Buffer.from('c')); // 3 credit left, queue empty: straight out
    expect(sink.ofType(FrameType.DATA).map((f) => f.payload.toString())).toStrictEqual(['0123456789', 'ab', 'c']);
  });

  test('a chunk larger than MAX_DATA_CHUNK_BYTES is split into frames at the cap', () => {
    expect(MAX_DATA_CHUNK_BYTES).toBe(16384);
    const { stream, sink } = setup(200_000);
    const input = pseudoRandomBytes(150_000);
    expect(stream.write(input)).toBe(true);
    expect(sink.ofType(FrameType.DATA).map((f) => f.payload.length)).toStrictEqual([...Array<number>(9).fill(16384), 2544]);
    expect(Buffer.concat(sink.ofType(FrameType.DATA).map((f) => f.payload))).toStrictEqual(input);
    expect(stream.bufferedBytes).toBe(0);
  });
});

describe('high water and drain', () => {
  test('write returns false above highWaterBytes; onDrain fires once credit brings the queue back to it', () => {
    const { stream, sink, rec } = setup(10, { highWaterBytes: 100 });
    expect(stream.write(Buffer.alloc(50))).toBe(true); // 10 sent, 40 queued
    expect(stream.write(Buffer.alloc(60))).toBe(true); // 100 queued: at the mark, not above
    expect(stream.bufferedBytes).toBe(100);
    expect(stream.write(Buffer.alloc(10))).toBe(false); // 110 queued
    credit(stream, 5); // 105 queued
    expect(rec.count('drain')).toBe(0);
    credit(stream, 5); // 100 queued
    expect(rec.count('drain')).toBe(1);
    credit(stream, 50); // 50 queued: no second drain without another false write
    expect(rec.count('drain')).toBe(1);
    expect(sink.dataBytes()).toBe(70);
    expect(stream.write(Buffer.alloc(100))).toBe(false);
    credit(stream, 1000);
    expect(rec.count('drain')).toBe(2);
    expect(stream.bufferedBytes).toBe(0);
  });

  test('the default high water mark is one data chunk (64 KiB)', () => {
    const { stream } = setup(1);
    expect(stream.write(Buffer.alloc(65536 + 1))).toBe(true); // 1 sent, 65536 queued
    expect(stream.write(Buffer.alloc(1))).toBe(false);
  });

  test('no onDrain when write never returned false', () => {
    const { stream, rec } = setup(10, { highWaterBytes: 100 });
    stream.write(Buffer.alloc(50));
    credit(stream, 100);
    expect(rec.count('drain')).toBe(0);
  });
});

describe('returning credit', () => {
  test('consumed() returns credit in batches of at least window / 4', () => {
    const { stream, sink } = setup(1000);
    head(stream);
    stream.receive(FrameType.DATA, 0, Buffer.alloc(600));
    stream.consumed(100);
    stream.consumed(149);
    expect(sink.ofType(FrameType.CREDIT)).toHaveLength(0);
    stream.consumed(1);
    expect(sink.ofType(FrameType.CREDIT).map((f) => decodeCredit(f.payload))).toStrictEqual([250]);
    stream.consumed(300);
    expect(sink.ofType(FrameType.CREDIT).map((f) => decodeCredit(f.payload))).toStrictEqual([250, 300]);
    // Receive window is now 1000 - 600 + 250 + 300 = 950: exactly that much is accepted, one more byte is not.
    stream.receive(FrameType.DATA, 0, Buffer.alloc(950));
    expect(stream.isClosed).toBe(false);
    stream.receive(FrameType.DATA, 0, Buffer.alloc(1));
    expect(stream.isClosed).toBe(true);
  });

  test('a tiny window still returns credit (threshold at least 1 byte)', () => {
    const { stream, sink } = setup(3);
    head(stream);
    stream.receive(FrameType.DATA, 0, Buffer.alloc(1));
    stream.consumed(1);
    expect(sink.ofType(FrameType.CREDIT).map((f) => decodeCredit(f.payload))).toStrictEqual([1]);
  });

  test('no credit is sent once the peer has ended, or after reset', () => {
    const a = setup(100);
    head(a.stream);
    a.stream.receive(FrameType.DATA, FLAG_FIN, Buffer.alloc(80));
    a.stream.consumed(80);
    expect(a.sink.ofType(FrameType.CREDIT)).toHaveLength(0);

    const b = setup(100);
    head(b.stream);
    b.stream.receive(FrameType.DATA, 0, Buffer.alloc(80));
    b.stream.reset('BURROW_ERR_CANCELLED');
    b.stream.consumed(80);
    expect(b.sink.ofType(FrameType.CREDIT)).toHaveLength(0);
  });
});

describe('ending', () => {
  test('end() with nothing queued sends END once', () => {
    const { stream, sink } = setup(100);
    stream.end();
    stream.end();
    expect(sink.frames).toStrictEqual([{ type: FrameType.END, flags: 0, streamId: 1, payload: Buffer.alloc(0) }]);
    expect(stream.isLocalEnded).toBe(true);
    expect(stream.write(Buffer.from('late'))).toBe(false);
    expect(sink.frames).toHaveLength(1);
  });

  test('end() with queued data puts FIN on the last DATA and sends no END', () => {
    const { stream, sink } = setup(10);
    stream.sendHead(FrameType.OPEN, Buffer.from('h'));
    stream.write(Buffer.from('0123456789abcdefghijklmno')); // 25 bytes: 10 out, 15 queued
    stream.end();
    expect(stream.isLocalEnded).toBe(false);
    expect(stream.write(Buffer.from('x'))).toBe(false); // refused once end() was called
    stream.end(); // no-op
    credit(stream, 10);
    credit(stream, 100);
    expect(sink.frames.map((f) => [f.type, f.flags, f.payload.toString()])).toStrictEqual([
      [FrameType.OPEN, 0, 'h'],
      [FrameType.DATA, 0, '0123456789'],
      [FrameType.DATA, 0, 'abcdefghij'],
      [FrameType.DATA, FLAG_FIN, 'klmno'],
    ]);
    expect(sink.ofType(FrameType.END)).toHaveLength(0);
    expect(stream.isLocalEnded).toBe(true);
    credit(stream, 100);
    expect(sink.frames).toHaveLength(4);
  });

  test('sendHead with fin ends the sending side: OPEN carries FIN, no END follows', () => {
    const { stream, sink } = setup(10);
    stream.sendHead(FrameType.OPEN, Buffer.from('h'), true);
    expect(stream.isLocalEnded).toBe(true);
    stream.end();
    expect(stream.write(Buffer.from('x'))).toBe(false);
    stream.sendHead(FrameType.OPEN, Buffer.from('again'));
    expect(sink.frames).toStrictEqual([{ type: FrameType.OPEN, flags: FLAG_FIN, streamId: 1, payload: Buffer.from('h') }]);
  });

  test('local end then remote END closes the stream exactly once', () => {
    const { stream, rec, closes } = setup(10);
    head(stream);
    stream.end();
    expect(stream.isClosed).toBe(false);
    stream.receive(FrameType.END, 0, Buffer.alloc(0));
    expect(stream.isClosed).toBe(true);
    expect(closes).toStrictEqual([stream]);
    expect(rec.kinds).toStrictEqual(['head', 'end']);
  });

  test('remote FIN then local end closes the stream exactly once', () => {
    const { stream, rec, closes } = setup(10);
    head(stream);
    stream.receive(FrameType.DATA, FLAG_FIN, Buffer.from('bye'));
    expect(stream.isRemoteEnded).toBe(true);
    expect(closes).toHaveLength(0);
    stream.end();
    stream.end();
    expect(closes).toStrictEqual([stream]);
    expect(rec.kinds).toStrictEqual(['head', 'data', 'end']);
    expect(rec.bytes.toString()).toBe('bye');
  });

  test('an empty DATA with FIN ends without an onData call', () => {
    const { stream, rec } = setup(10);
    head(stream);
    stream.receive(FrameType.DATA, FLAG_FIN, Buffer.alloc(0));
    expect(rec.kinds).toStrictEqual(['head', 'end']);
  });

  test('a head with FIN reports fin and ends the receiving side', () => {
    const { stream, rec } = setup(10);
    head(stream, true);
    expect(rec.events).toStrictEqual([{ kind: 'head', payload: Buffer.from('head'), fin: true }, { kind: 'end' }]);
    expect(stream.isRemoteEnded).toBe(true);
  });
});

describe('peer violations reset the stream', () => {
  function expectViolation(s: Setup, code: string): void {
    const resets = s.sink.ofType(FrameType.RESET);
    expect(resets).toHaveLength(1);
    expect(decodeReason((resets[0] as { payload: Buffer }).payload).code).toBe(code);
    expect(s.rec.resets.map((r) => r.code)).toStrictEqual([code]);
    expect(s.rec.kinds[s.rec.kinds.length - 1]).toBe('reset');
    expect(s.stream.isClosed).toBe(true);
    expect(s.closes).toHaveLength(1);
  }

  test('DATA beyond credit: FLOW_CONTROL reset, the handler is told, the chunk is not delivered', () => {
    const s = setup(100);
    head(s.stream);
    s.stream.receive(FrameType.DATA, 0, Buffer.alloc(60));
    s.stream.receive(FrameType.DATA, 0, Buffer.alloc(41));
    expectViolation(s, 'BURROW_ERR_FLOW_CONTROL');
    expect(s.rec.bytes.length).toBe(60);
    // Nothing more reaches the handler or the wire.
    s.stream.receive(FrameType.DATA, 0, Buffer.alloc(1));
    s.stream.receive(FrameType.END, 0, Buffer.alloc(0));
    s.stream.reset('BURROW_ERR_INTERNAL');
    expectViolation(s, 'BURROW_ERR_FLOW_CONTROL');
  });

  test('exactly the window is accepted', () => {
    const s = setup(100);
    head(s.stream);
    s.stream.receive(FrameType.DATA, 0, Buffer.alloc(100));
    expect(s.stream.isClosed).toBe(false);
    expect(s.sink.frames).toHaveLength(0);
  });

  test('DATA before the head: PROTOCOL', () => {
    const s = setup(100);
    s.stream.receive(FrameType.DATA, 0, Buffer.from('x'));
    expectViolation(s, 'BURROW_ERR_PROTOCOL');
    expect(s.rec.count('data')).toBe(0);
  });

  test('DATA after END: PROTOCOL', () => {
    const s = setup(100);
    head(s.stream);
    s.stream.receive(FrameType.END, 0, Buffer.alloc(0));
    s.stream.receive(FrameType.DATA, 0, Buffer.from('x'));
    expectViolation(s, 'BURROW_ERR_PROTOCOL');
    expect(s.rec.kinds).toStrictEqual(['head', 'end', 'reset']);
  });

  test('DATA after a FIN DATA: PROTOCOL', () => {
    const s = setup(100);
    head(s.stream);
    s.stream.receive(FrameType.DATA, FLAG_FIN, Buffer.from('a'));
    s.stream.receive(FrameType.DATA, 0, Buffer.from('b'));
    expectViolation(s, 'BURROW_ERR_PROTOCOL');
  });

  test('END before the head: PROTOCOL', () => {
    const s = setup(100);
    s.stream.receive(FrameType.END, 0, Buffer.alloc(0));
    expectViolation(s, 'BURROW_ERR_PROTOCOL');
  });

  test('END twice: PROTOCOL', () => {
    const s = setup(100);
    head(s.stream);
    s.stream.receive(FrameType.END, 0, Buffer.alloc(0));
    s.stream.receive(FrameType.END, 0, Buffer.alloc(0));
    expectViolation(s, 'BURROW_ERR_PROTOCOL');
  });

  test('a second head: PROTOCOL', () => {
    const s = setup(100);
    head(s.stream);
    s.stream.receive(FrameType.OPEN, 0, Buffer.from('again'));
    expectViolation(s, 'BURROW_ERR_PROTOCOL');
    expect(s.rec.count('head')).toBe(1);
  });

  test('a session frame type routed to a stream: PROTOCOL', () => {
    const s = setup(100);
    s.stream.receive(FrameType.PING, 0, Buffer.alloc(0));
    expectViolation(s, 'BURROW_ERR_PROTOCOL');
  });

  test.each([
    ['three bytes', Buffer.alloc(3)],
    ['zero credit', encodeCredit(1).fill(0)],
  ])('a malformed CREDIT (%s): PROTOCOL', (_what, payload) => {
    const s = setup(100);
    s.stream.receive(FrameType.CREDIT, 0, payload);
    expectViolation(s, 'BURROW_ERR_PROTOCOL');
  });

  test('CREDIT that would overflow u32: FLOW_CONTROL', () => {
    const s = setup(100);
    s.stream.receive(FrameType.CREDIT, 0, encodeCredit(0xffff_ffff - 100));
    expect(s.stream.isClosed).toBe(false);
    s.stream.receive(FrameType.CREDIT, 0, encodeCredit(1));
    expectViolation(s, 'BURROW_ERR_FLOW_CONTROL');
  });

  test('a malformed RESET (1 byte): PROTOCOL', () => {
    const s = setup(100);
    s.stream.receive(FrameType.RESET, 0, Buffer.alloc(1));
    expectViolation(s, 'BURROW_ERR_PROTOCOL');
  });

  test('a handler that throws is treated like a violation (PROTOCOL reset), not a crash', () => {
    const s = setup(100);
    head(s.stream);
    s.stream.handler = {
      onData() {
        throw new Error('consumer bug');
      },
      onEnd() {},
      onReset: (r) => s.rec.onReset(r),
    };
    s.stream.receive(FrameType.DATA, 0, Buffer.from('x'));
    expectViolation(s, 'BURROW_ERR_PROTOCOL');
  });
});

describe('reset and abort', () => {
  test('reset() sends exactly one RESET carrying the code and message, and closes', () => {
    const { stream, sink, rec, closes } = setup(10);
    stream.write(Buffer.alloc(30)); // leaves 20 queued
    stream.reset('BURROW_ERR_TIMEOUT', 'too slow');
    stream.reset('BURROW_ERR_INTERNAL');
    const resets = sink.ofType(FrameType.RESET);
    expect(resets).toHaveLength(1);
    expect(resets[0]?.payload).toStrictEqual(encodeReason('BURROW_ERR_TIMEOUT', 'too slow'));
    expect(stream.isClosed).toBe(true);
    expect(stream.bufferedBytes).toBe(0);
    expect(closes).toHaveLength(1);
    // The local side chose to reset: its own handler is not called back.
    expect(rec.events).toHaveLength(0);
    // Credit arriving later does not release the dropped queue.
    credit(stream, 100);
    expect(sink.dataBytes()).toBe(10);
    expect(stream.write(Buffer.from('x'))).toBe(false);
    stream.end();
    expect(sink.frames).toHaveLength(2);
  });

  test('reset() uses the title when no message is given', () => {
    const { stream, sink } = setup(10);
    stream.reset('BURROW_ERR_CANCELLED');
    expect(decodeReason((sink.frames[0] as { payload: Buffer }).payload)).toStrictEqual({ code: 'BURROW_ERR_CANCELLED', message: 'Client went away' });
  });

  test('reset() after the stream finished both ways sends nothing', () => {
    const { stream, sink } = setup(10);
    head(stream);
    stream.end();
    stream.receive(FrameType.END, 0, Buffer.alloc(0));
    sink.take();
    stream.reset('BURROW_ERR_INTERNAL');
    expect(sink.frames).toHaveLength(0);
  });

  test('a RESET from the peer notifies the handler once with its reason and sends nothing', () => {
    const { stream, sink, rec, closes } = setup(10);
    head(stream);
    stream.receive(FrameType.RESET, 0, encodeReason('BURROW_ERR_LOCAL_UNREACHABLE', 'ECONNREFUSED'));
    stream.receive(FrameType.RESET, 0, encodeReason('BURROW_ERR_INTERNAL'));
    expect(rec.resets).toStrictEqual([{ code: 'BURROW_ERR_LOCAL_UNREACHABLE', message: 'ECONNREFUSED' }]);
    expect(sink.frames).toHaveLength(0);
    expect(closes).toHaveLength(1);
    stream.reset('BURROW_ERR_INTERNAL');
    expect(sink.frames).toHaveLength(0);
  });

  test('abort() notifies the handler once, sends nothing, and is idempotent', () => {
    const { stream, sink, rec, closes } = setup(10);
    stream.write(Buffer.alloc(20));
    sink.take();
    stream.abort({ code: 'BURROW_ERR_AGENT_DISCONNECTED', message: 'gone' });
    stream.abort({ code: 'BURROW_ERR_INTERNAL', message: 'again' });
    stream.reset('BURROW_ERR_INTERNAL');
    expect(rec.resets).toStrictEqual([{ code: 'BURROW_ERR_AGENT_DISCONNECTED', message: 'gone' }]);
    expect(sink.frames).toHaveLength(0);
    expect(closes).toHaveLength(1);
    expect(stream.isClosed).toBe(true);
    expect(stream.bufferedBytes).toBe(0);
  });

  test('abort() without a handler does not throw', () => {
    const sink = new RecordingSink();
    const s = new MuxStream(3, sink, { windowBytes: 10 });
    expect(() => s.abort({ code: 'BURROW_ERR_INTERNAL', message: '' })).not.toThrow();
    expect(s.isClosed).toBe(true);
  });

  test('frames after close are ignored: no callbacks, nothing sent', () => {
    const { stream, sink, rec } = setup(10);
    head(stream);
    stream.abort({ code: 'BURROW_ERR_INTERNAL', message: '' });
    const before = rec.events.length;
    stream.receive(FrameType.DATA, 0, Buffer.from('x'));
    stream.receive(FrameType.END, 0, Buffer.alloc(0));
    stream.receive(FrameType.RESET, 0, encodeReason('BURROW_ERR_INTERNAL'));
    stream.receive(FrameType.CREDIT, 0, Buffer.alloc(0));
    expect(rec.events).toHaveLength(before);
    expect(sink.frames).toHaveLength(0);
  });
});
