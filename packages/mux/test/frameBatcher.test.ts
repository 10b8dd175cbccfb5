import { FrameBatcher, MAX_BATCH_BYTES, Mux, type MuxStream } from '@burrow/mux';
import { decodeFrames, encodeFrame, encodeRequestHead, encodeResponseHead, FLAG_FIN, type Frame, FrameDecoder, FrameType, StreamKind } from '@burrow/protocol';
import { pseudoRandomBytes, Recorder } from './harness';

/** A scheduler under the test's control: flushes run only when the test says so. */
class ManualScheduler {
  readonly pending: Array<() => void> = [];
  readonly schedule = (flush: () => void): void => {
    this.pending.push(flush);
  };
  runAll(): void {
    for (const f of this.pending.splice(0)) f();
  }
}

const decode = (batch: Buffer): Array<[number, number, number, string]> => {
  const out: Array<[number, number, number, string]> = [];
  decodeFrames(batch, 'relayToAgent', (f) => out.push([f.type, f.flags, f.streamId, f.payload.toString()]));
  return out;
};

describe('FrameBatcher', () => {
  test('MAX_BATCH_BYTES leaves room for a WebSocket header within 64 KiB', () => {
    expect(MAX_BATCH_BYTES).toBe(64 * 1024 - 16);
  });

  test('several frames become one write per scheduled flush, in order, byte-identical to encodeFrame', () => {
    const writes: Buffer[] = [];
    const sched = new ManualScheduler();
    const b = new FrameBatcher((batch) => writes.push(Buffer.from(batch)), sched.schedule);
    b.sendFrame(FrameType.OPEN, 0, 1, Buffer.from('head'));
    b.sendFrame(FrameType.DATA, FLAG_FIN, 1, Buffer.from('body'));
    b.sendFrame(FrameType.PING, 0, 0);
    expect(sched.pending).toHaveLength(1);
    expect(writes).toHaveLength(0);
    sched.runAll();
    expect(writes).toHaveLength(1);
    expect(writes[0]).toStrictEqual(
      Buffer.concat([
        encodeFrame(FrameType.OPEN, 0, 1, Buffer.from('head')),
        encodeFrame(FrameType.DATA, FLAG_FIN, 1, Buffer.from('body')),
        encodeFrame(FrameType.PING, 0, 0),
      ]),
    );
    expect(decode(writes[0] as Buffer)).toStrictEqual([
      [FrameType.OPEN, 0, 1, 'head'],
      [FrameType.DATA, FLAG_FIN, 1, 'body'],
      [FrameType.PING, 0, 0, ''],
    ]);
    // The next frame schedules a new flush.
    b.sendFrame(FrameType.END, 0, 1);
    expect(sched.pending).toHaveLength(1);
    sched.runAll();
    expect(writes.map((w) => w.toString('hex'))).toStrictEqual([(writes[0] as Buffer).toString('hex'), '14000000000100000000']);
  });

  test('a flush with nothing pending writes nothing', () => {
    const writes: Buffer[] = [];
    const sched = new ManualScheduler();
    const b = new FrameBatcher((batch) => writes.push(batch), sched.schedule);
    b.flush();
    b.sendFrame(FrameType.PING, 0, 0);
    b.flush();
    sched.runAll(); // the scheduled flush finds nothing left
    expect(writes).toHaveLength(1);
  });

  test('a frame that would take the batch past maxBatchBytes starts the next batch; a full batch goes at once', () => {
    const writes: Buffer[] = [];
    const sched = new ManualScheduler();
    const b = new FrameBatcher((batch) => writes.push(Buffer.from(batch)), sched.schedule, 100);
    b.sendFrame(FrameType.DATA, 0, 1, Buffer.alloc(89, 0x61)); // 99 bytes: below
    expect(writes).toHaveLength(0);
    b.sendFrame(FrameType.DATA, 0, 1, Buffer.from('b')); // 99 + 11 = 110 > 100: the 99 go first
    expect(writes.map((w) => w.length)).toStrictEqual([99]);
    b.sendFrame(FrameType.DATA, 0, 3, Buffer.alloc(90)); // 11 + 100 > 100: the 11 go, then exactly 100 at once
    expect(writes.map((w) => w.length)).toStrictEqual([99, 11, 100]);
    sched.runAll();
    expect(writes).toHaveLength(3);
    // No batch ever exceeds the cap unless a single frame does.
    b.sendFrame(FrameType.DATA, 0, 1, Buffer.alloc(200));
    expect(writes.map((w) => w.length)).toStrictEqual([99, 11, 100, 210]);
  });

  test('with the default cap, three full DATA frames share a message and a fourth starts the next', () => {
    const writes: number[] = [];
    const sched = new ManualScheduler();
    const b = new FrameBatcher((batch) => writes.push(batch.length), sched.schedule);
    const chunk = Buffer.alloc(16 * 1024);
    for (let i = 0; i < 3; i++) b.sendFrame(FrameType.DATA, 0, 1, chunk);
    expect(writes).toHaveLength(0);
    b.sendFrame(FrameType.DATA, 0, 1, chunk);
    expect(writes).toStrictEqual([3 * (16 * 1024 + 10)]);
    sched.runAll();
    expect(writes).toStrictEqual([3 * (16 * 1024 + 10), 16 * 1024 + 10]);
  });

  test('close() flushes what is pending, then nothing is written any more', () => {
    const writes: Buffer[] = [];
    const sched = new ManualScheduler();
    const b = new FrameBatcher((batch) => writes.push(Buffer.from(batch)), sched.schedule);
    b.sendFrame(FrameType.GOAWAY, 0, 0, Buffer.from([0, 19]));
    b.close();
    expect(writes).toStrictEqual([encodeFrame(FrameType.GOAWAY, 0, 0, Buffer.from([0, 19]))]);
    b.sendFrame(FrameType.PING, 0, 0);
    b.flush();
    sched.runAll();
    b.close();
    expect(writes).toHaveLength(1);
  });

  test('the default scheduler (setImmediate) flushes on a later turn of the event loop', async () => {
    const written = new Promise<Buffer>((resolve) => {
      const b = new FrameBatcher(resolve);
      b.sendFrame(FrameType.PONG, 0, 0, Buffer.from('12345678'));
      b.sendFrame(FrameType.PING, 0, 0);
    });
    expect(decode(await written)).toStrictEqual([
      [FrameType.PONG, 0, 0, '12345678'],
      [FrameType.PING, 0, 0, ''],
    ]);
  });

  test('two Muxes joined by FrameBatchers (queueMicrotask) and FrameDecoders move bodies both ways intact', async () => {
    const muxes: { relay?: Mux; agent?: Mux } = {};
    // Each batch is cut into odd-sized chunks before decoding, as a byte stream would deliver it.
    const pipe = (direction: 'relayToAgent' | 'agentToRelay', target: 'relay' | 'agent'): FrameBatcher => {
      const decoder = new FrameDecoder(direction);
      const deliver = (f: Frame): void => muxes[target]?.receive(f);
      return new FrameBatcher((batch) => {
        for (let o = 0; o < batch.length; o += 777) decoder.push(batch.subarray(o, o + 777), deliver);
      }, queueMicrotask);
    };
    const toAgent = pipe('relayToAgent', 'agent');
    const toRelay = pipe('agentToRelay', 'relay');
    const request = pseudoRandomBytes(300_000, 11);
    const response = pseudoRandomBytes(200_000, 12);
    const window = 16 * 1024;

    // Agent: echo-style app that answers once the request body has ended.
    let agentStream: MuxStream | undefined;
    const agentRec = new Recorder();
    const agent = new Mux(toRelay, {
      role: 'agent',
      windowBytes: window,
      onOpen(stream) {
        agentStream = stream;
        stream.handler = {
          onData(chunk) {
            agentRec.onData(chunk);
            stream.consumed(chunk.length);
          },
          onReset: (r) => agentRec.onReset(r),
          onEnd() {
            agentRec.onEnd();
            stream.sendHead(FrameType.RESPONSE, encodeResponseHead({ status: 200, reason: 'OK', headers: [] }));
            stream.write(response);
            stream.end();
          },
        };
      },
    });
    const relay = new Mux(toAgent, { role: 'relay', windowBytes: window });
    muxes.relay = relay;
    muxes.agent = agent;

    const s = relay.open();
    const relayRec = new Recorder(s, true);
    const finished = new Promise<void>((resolve) => {
      s.handler = {
        onHead: (p, fin) => relayRec.onHead(p, fin),
        onData: (c) => relayRec.onData(c),
        onReset(r) {
          relayRec.onReset(r);
          resolve();
        },
        onEnd() {
          relayRec.onEnd();
          resolve();
        },
      };
    });
    s.sendHead(FrameType.OPEN, encodeRequestHead({ kind: StreamKind.HTTP, method: 'PUT', target: '/', headers: [] }));
    s.write(request);
    s.end();
    await finished;

    expect(agentRec.bytes.equals(request)).toBe(true);
    expect(agentRec.kinds.filter((k) => k !== 'data')).toStrictEqual(['end']);
    expect(relayRec.bytes.equals(response)).toBe(true);
    expect(relayRec.kinds.filter((k) => k !== 'data')).toStrictEqual(['head', 'end']);
    expect(agentStream?.isClosed).toBe(true);
    expect(s.isClosed).toBe(true);
    expect(relay.size).toBe(0);
    expect(agent.size).toBe(0);
    toAgent.close();
    toRelay.close();
  });
});
