import { Mux, type MuxStream } from '@burrow/mux';
import {
  BurrowError,
  decodeCredit,
  decodeReason,
  decodeRequestHead,
  decodeResponseHead,
  encodeCredit,
  encodeReason,
  encodeRequestHead,
  encodeResponseHead,
  FLAG_FIN,
  type Frame,
  FrameType,
  StreamKind,
} from '@burrow/protocol';
import { muxPair, pseudoRandomBytes, Recorder, RecordingSink } from './harness';

const reqHead = encodeRequestHead({ kind: StreamKind.HTTP, method: 'POST', target: '/upload', headers: ['Host', 'x.example'] });
const resHead = encodeResponseHead({ status: 201, reason: 'Created', headers: ['Set-Cookie', 'a=1', 'Set-Cookie', 'b=2'] });

const frame = (type: FrameType, streamId: number, payload: Buffer = Buffer.alloc(0), flags = 0): Frame => ({ type, flags, streamId, payload });

/** What the peer's Mux throws for a frame, as a code; undefined when it does not throw. */
function codeOfReceive(mux: Mux, f: Frame): string | undefined {
  try {
    mux.receive(f);
  } catch (err) {
    if (err instanceof BurrowError) return err.code;
    throw err;
  }
  return undefined;
}

describe('a stream both ways over a pair of Muxes', () => {
  test('open, head, data and end each way: both sides end exactly once and drop the stream', () => {
    const agentSide: { stream?: MuxStream; rec?: Recorder } = {};
    const requestBody = pseudoRandomBytes(5000, 1);
    const responseBody = pseudoRandomBytes(7000, 2);
    const pair = muxPair({
      windowBytes: 1024,
      onAgentOpen(stream, head, fin) {
        expect(decodeRequestHead(head)).toStrictEqual({ kind: StreamKind.HTTP, method: 'POST', target: '/upload', headers: ['Host', 'x.example'] });
        expect(fin).toBe(false);
        const rec = new Recorder(stream, true);
        stream.handler = rec;
        agentSide.stream = stream;
        agentSide.rec = rec;
      },
    });
    const relayStream = pair.relay.open();
    expect(relayStream.id).toBe(1);
    const relayRec = new Recorder(relayStream, true);
    relayStream.handler = relayRec;
    relayStream.sendHead(FrameType.OPEN, reqHead);
    relayStream.write(requestBody);
    relayStream.end();
    pair.pump();

    const { stream: agentStream, rec: agentRec } = agentSide;
    if (agentStream === undefined || agentRec === undefined) throw new Error('agent never saw the OPEN');
    expect(agentStream.id).toBe(1);
    expect(agentRec.bytes).toStrictEqual(requestBody);
    expect(agentRec.count('end')).toBe(1);
    expect(pair.agent.size).toBe(1); // agent has not answered yet

    agentStream.sendHead(FrameType.RESPONSE, resHead);
    agentStream.write(responseBody);
    agentStream.end();
    pair.pump();

    expect(relayRec.kinds[0]).toBe('head');
    const first = relayRec.events[0];
    expect(first?.kind === 'head' && decodeResponseHead(first.payload).headers).toStrictEqual(['Set-Cookie', 'a=1', 'Set-Cookie', 'b=2']);
    expect(relayRec.bytes).toStrictEqual(responseBody);
    expect(relayRec.count('end')).toBe(1);
    expect(relayRec.count('reset')).toBe(0);
    expect(agentRec.count('reset')).toBe(0);
    expect(relayStream.isClosed).toBe(true);
    expect(agentStream.isClosed).toBe(true);
    expect(pair.relay.size).toBe(0);
    expect(pair.agent.size).toBe(0);
    expect(pair.relay.get(1)).toBeUndefined();
    // Window 1024 and bodies of several KiB: credit must have flowed both ways.
    expect(pair.toRelay.ofType(FrameType.CREDIT).length).toBeGreaterThan(0);
    expect(pair.toAgent.ofType(FrameType.CREDIT).length).toBeGreaterThan(0);
    // FIN was coalesced or END sent, but never both, and no RESET anywhere.
    expect(pair.toAgent.ofType(FrameType.RESET)).toHaveLength(0);
    expect(pair.toRelay.ofType(FrameType.RESET)).toHaveLength(0);
  });

  test('a head with FIN reaches onOpen as fin=true and the stream is remote-ended', () => {
    let seen: { fin: boolean; remoteEnded: boolean } | undefined;
    const pair = muxPair({
      windowBytes: 100,
      onAgentOpen(stream, _head, fin) {
        seen = { fin, remoteEnded: stream.isRemoteEnded };
        stream.handler = new Recorder(stream);
      },
    });
    const s = pair.relay.open();
    s.sendHead(FrameType.OPEN, reqHead, true);
    pair.pump();
    expect(seen).toStrictEqual({ fin: true, remoteEnded: true });
    const agentStream = pair.agent.get(1);
    agentStream?.sendHead(FrameType.RESPONSE, resHead, true);
    pair.pump();
    expect(s.isClosed).toBe(true);
    expect(pair.agent.size).toBe(0);
    expect(pair.relay.size).toBe(0);
  });

  test('the sender never has more than windowBytes unacknowledged; credit from consumed() keeps it going', () => {
    const window = 4096;
    const body = pseudoRandomBytes(50_000, 3);
    let agentStream: MuxStream | undefined;
    const agentRec = new Recorder();
    const pair = muxPair({
      windowBytes: window,
      onAgentOpen(stream) {
        agentStream = stream;
        stream.handler = agentRec;
      },
    });
    // Invariant checked at the moment each frame leaves: DATA sent <= window + CREDIT delivered.
    let dataSent = 0;
    let creditDelivered = 0;
    let maxOutstanding = 0;
    pair.toAgent.onSend = (f) => {
      if (f.type !== FrameType.DATA) return;
      dataSent += f.payload.length;
      maxOutstanding = Math.max(maxOutstanding, dataSent - creditDelivered);
      expect(dataSent).toBeLessThanOrEqual(window + creditDelivered);
    };
    const deliverToRelay = pair.toRelay.deliver;
    pair.toRelay.deliver = (f) => {
      if (f.type === FrameType.CREDIT) creditDelivered += decodeCredit(f.payload);
      deliverToRelay(f);
    };

    const s = pair.relay.open();
    const relayRec = new Recorder(s);
    s.handler = relayRec;
    s.sendHead(FrameType.OPEN, reqHead);
    expect(s.write(body)).toBe(true); // 45_904 bytes queued: below the 64 KiB high-water mark
    pair.pump();
    // The agent consumed nothing: exactly one window arrived.
    expect(agentRec.bytes.length).toBe(window);
    expect(s.bufferedBytes).toBe(body.length - window);

    // Consume in steps; every step returns credit and lets more through, never past the window.
    let consumed = 0;
    let steps = 0;
    while (agentRec.bytes.length < body.length) {
      if (++steps > 1000) throw new Error('transfer stalled');
      const received = agentRec.bytes.length;
      expect(received - consumed).toBeLessThanOrEqual(window);
      agentStream?.consumed(received - consumed);
      consumed = received;
      pair.pump();
    }
    expect(agentRec.bytes).toStrictEqual(body);
    expect(maxOutstanding).toBe(window);
    expect(s.bufferedBytes).toBe(0);
  });

  test('ids: the relay allocates odd ids, the agent even ones, never reused', () => {
    const pair = muxPair({ windowBytes: 100 });
    expect([pair.relay.open().id, pair.relay.open().id, pair.relay.open().id]).toStrictEqual([1, 3, 5]);
    expect([pair.agent.open().id, pair.agent.open().id, pair.agent.open().id]).toStrictEqual([2, 4, 6]);
    const s = pair.relay.open();
    s.reset('BURROW_ERR_CANCELLED');
    expect(pair.relay.open().id).toBe(9);
    expect(pair.relay.size).toBe(4);
    expect(pair.agent.size).toBe(3);
  });
});

describe('Mux.receive routing rules', () => {
  function agentMux(extra: { maxStreams?: number } = {}) {
    const sink = new RecordingSink();
    const opened: MuxStream[] = [];
    const recs = new Map<number, Recorder>();
    const mux = new Mux(sink, {
      role: 'agent',
      windowBytes: 100,
      ...extra,
      onOpen(stream) {
        opened.push(stream);
        const rec = new Recorder(stream);
        recs.set(stream.id, rec);
        stream.handler = rec;
      },
    });
    return { mux, sink, opened, recs };
  }

  test('a peer OPEN creates a stream, runs onOpen and hands the head to onOpen (not to onHead)', () => {
    const { mux, opened, recs } = agentMux();
    mux.receive(frame(FrameType.OPEN, 1, reqHead));
    expect(opened.map((s) => s.id)).toStrictEqual([1]);
    expect(recs.get(1)?.events).toStrictEqual([]);
    expect(mux.get(1)).toBe(opened[0]);
    expect(mux.size).toBe(1);
  });

  test('a peer OPEN reusing a closed id throws PROTOCOL', () => {
    const { mux } = agentMux();
    mux.receive(frame(FrameType.OPEN, 1, reqHead));
    mux.get(1)?.reset('BURROW_ERR_CANCELLED');
    expect(mux.size).toBe(0);
    expect(codeOfReceive(mux, frame(FrameType.OPEN, 1, reqHead))).toBe('BURROW_ERR_PROTOCOL');
  });

  test('a peer OPEN with an id lower than one already seen throws PROTOCOL', () => {
    const { mux } = agentMux();
    mux.receive(frame(FrameType.OPEN, 5, reqHead));
    expect(codeOfReceive(mux, frame(FrameType.OPEN, 3, reqHead))).toBe('BURROW_ERR_PROTOCOL');
    expect(codeOfReceive(mux, frame(FrameType.OPEN, 7, reqHead))).toBeUndefined();
  });

  test('a second OPEN on a stream that is still open resets that stream (PROTOCOL), not the session', () => {
    const { mux, sink, recs } = agentMux();
    mux.receive(frame(FrameType.OPEN, 1, reqHead));
    expect(codeOfReceive(mux, frame(FrameType.OPEN, 1, reqHead))).toBeUndefined();
    expect(sink.ofType(FrameType.RESET).map((f) => [f.streamId, decodeReason(f.payload).code])).toStrictEqual([[1, 'BURROW_ERR_PROTOCOL']]);
    expect(recs.get(1)?.resets.map((r) => r.code)).toStrictEqual(['BURROW_ERR_PROTOCOL']);
    expect(mux.size).toBe(0);
  });

  test.each([
    ['DATA on a peer id above any opened', frame(FrameType.DATA, 7, Buffer.from('x'))],
    ['END on a peer id above any opened', frame(FrameType.END, 1)],
    ['CREDIT on a peer id above any opened', frame(FrameType.CREDIT, 3, encodeCredit(10))],
    ['RESET on a peer id above any opened', frame(FrameType.RESET, 9, encodeReason('BURROW_ERR_CANCELLED'))],
    ['DATA on an own id never allocated', frame(FrameType.DATA, 2, Buffer.from('x'))],
    ['RESPONSE on an own id never allocated', frame(FrameType.RESPONSE, 4, Buffer.from('x'))],
    ['OPEN on an own-parity id', frame(FrameType.OPEN, 2, reqHead)],
  ])('%s throws BurrowError PROTOCOL (the session must close)', (_what, f) => {
    const { mux, sink } = agentMux();
    expect(codeOfReceive(mux, f)).toBe('BURROW_ERR_PROTOCOL');
    expect(sink.frames).toHaveLength(0);
  });

  test('late frames for peer streams that already closed are dropped silently', () => {
    const { mux, sink, recs } = agentMux();
    mux.receive(frame(FrameType.OPEN, 1, reqHead));
    mux.receive(frame(FrameType.OPEN, 3, reqHead));
    mux.get(1)?.reset('BURROW_ERR_TIMEOUT');
    sink.take();
    for (const f of [
      frame(FrameType.DATA, 1, Buffer.from('late')),
      frame(FrameType.DATA, 1, Buffer.from('late'), FLAG_FIN),
      frame(FrameType.END, 1),
      frame(FrameType.CREDIT, 1, encodeCredit(5)),
      frame(FrameType.RESET, 1, encodeReason('BURROW_ERR_CANCELLED')),
    ]) {
      expect(codeOfReceive(mux, f)).toBeUndefined();
    }
    expect(sink.frames).toHaveLength(0);
    expect(recs.get(1)?.events).toStrictEqual([]);
    expect(mux.size).toBe(1);
  });

  test('late frames for own streams that already closed are dropped silently', () => {
    const { mux, sink } = agentMux();
    const s = mux.open();
    expect(s.id).toBe(2);
    s.reset('BURROW_ERR_CANCELLED');
    sink.take();
    expect(codeOfReceive(mux, frame(FrameType.RESPONSE, 2, resHead))).toBeUndefined();
    expect(codeOfReceive(mux, frame(FrameType.DATA, 2, Buffer.from('x')))).toBeUndefined();
    expect(codeOfReceive(mux, frame(FrameType.RESET, 2, encodeReason('BURROW_ERR_CANCELLED')))).toBeUndefined();
    expect(sink.frames).toHaveLength(0);
    // id 4 was never allocated: still a violation.
    expect(codeOfReceive(mux, frame(FrameType.DATA, 4, Buffer.from('x')))).toBe('BURROW_ERR_PROTOCOL');
  });

  test('maxStreams: the OPEN beyond it is refused with one RESET carrying TOO_MANY_STREAMS', () => {
    const { mux, sink, opened } = agentMux({ maxStreams: 2 });
    mux.receive(frame(FrameType.OPEN, 1, reqHead));
    mux.receive(frame(FrameType.OPEN, 3, reqHead));
    mux.receive(frame(FrameType.OPEN, 5, reqHead));
    expect(opened.map((s) => s.id)).toStrictEqual([1, 3]);
    expect(mux.size).toBe(2);
    expect(mux.get(5)).toBeUndefined();
    const resets = sink.ofType(FrameType.RESET);
    expect(resets.map((f) => [f.streamId, decodeReason(f.payload).code])).toStrictEqual([[5, 'BURROW_ERR_TOO_MANY_STREAMS']]);
    // The refused stream's later frames (sent before the peer saw the RESET) are dropped.
    expect(codeOfReceive(mux, frame(FrameType.DATA, 5, Buffer.from('body')))).toBeUndefined();
    expect(codeOfReceive(mux, frame(FrameType.END, 5))).toBeUndefined();
    expect(sink.frames).toHaveLength(1);
    // Once a stream closes there is room again.
    mux.get(1)?.reset('BURROW_ERR_CANCELLED');
    mux.receive(frame(FrameType.OPEN, 7, reqHead));
    expect(opened.map((s) => s.id)).toStrictEqual([1, 3, 7]);
    expect(mux.size).toBe(2);
  });

  test('abortAll notifies every open stream once, sends nothing, and empties the table', () => {
    const { mux, sink, recs } = agentMux();
    mux.receive(frame(FrameType.OPEN, 1, reqHead));
    mux.receive(frame(FrameType.OPEN, 3, reqHead));
    const own = mux.open();
    const ownRec = new Recorder(own);
    own.handler = ownRec;
    sink.take();
    const reason = { code: 'BURROW_ERR_AGENT_DISCONNECTED', message: 'socket closed' } as const;
    mux.abortAll(reason);
    mux.abortAll({ code: 'BURROW_ERR_INTERNAL', message: 'twice' });
    expect(recs.get(1)?.resets).toStrictEqual([reason]);
    expect(recs.get(3)?.resets).toStrictEqual([reason]);
    expect(ownRec.resets).toStrictEqual([reason]);
    expect(sink.frames).toHaveLength(0);
    expect(mux.size).toBe(0);
    expect(own.isClosed).toBe(true);
    // Frames still in flight for those streams are late frames now.
    expect(codeOfReceive(mux, frame(FrameType.DATA, 3, Buffer.from('x')))).toBeUndefined();
    expect(codeOfReceive(mux, frame(FrameType.END, 2))).toBeUndefined();
  });
});

describe('maxStreams across a pair', () => {
  test('the refused stream is reset on the opener with TOO_MANY_STREAMS; its early DATA is dropped', () => {
    const agentOpened: number[] = [];
    const pair = muxPair({
      windowBytes: 1000,
      agentMaxStreams: 2,
      onAgentOpen(stream) {
        agentOpened.push(stream.id);
        stream.handler = new Recorder(stream);
      },
    });
    const recs: Recorder[] = [];
    for (let i = 0; i < 3; i++) {
      const s = pair.relay.open();
      const rec = new Recorder(s);
      s.handler = rec;
      recs.push(rec);
      s.sendHead(FrameType.OPEN, reqHead);
      s.write(Buffer.from(`body ${i}`));
    }
    pair.pump();
    expect(agentOpened).toStrictEqual([1, 3]);
    expect(recs.map((r) => r.resets.map((x) => x.code))).toStrictEqual([[], [], ['BURROW_ERR_TOO_MANY_STREAMS']]);
    expect(pair.relay.size).toBe(2);
    expect(pair.agent.size).toBe(2);
    expect(pair.toRelay.ofType(FrameType.RESET)).toHaveLength(1);
  });
});
