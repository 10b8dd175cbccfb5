import { EventEmitter, once } from 'node:events';
import net, { type AddressInfo } from 'node:net';
import { type Bridged, type BridgeOptions, type ByteDuplex, bridge, closeGently, FrameBatcher, Mux, type MuxStream } from '@burrow/mux';
import {
  decodeCredit,
  decodeReason,
  type ErrorCode,
  encodeRequestHead,
  encodeResponseHead,
  type Frame,
  FrameDecoder,
  FrameType,
  type Reason,
  StreamKind,
} from '@burrow/protocol';
import { muxPair, pseudoRandomBytes, Recorder } from './harness';

const tcpHead = encodeRequestHead({ kind: StreamKind.TCP, method: '', target: 'localhost:5432', headers: [] });
const okHead = encodeResponseHead({ status: 200, reason: 'OK', headers: [] });

/** A byte duplex whose every move the test controls (stands in for a socket; not our code). */
class FakeDuplex extends EventEmitter implements ByteDuplex {
  readonly written: Buffer[] = [];
  /** What write() answers: false means "my buffer is full, wait for drain". */
  accepting = true;
  ended = false;
  destroyed = false;
  paused = true;
  resumeCalls = 0;
  write(chunk: Buffer): boolean {
    this.written.push(Buffer.from(chunk));
    return this.accepting;
  }
  end(): void {
    this.ended = true;
  }
  destroy(): void {
    this.destroyed = true;
  }
  pause(): void {
    this.paused = true;
  }
  resume(): void {
    this.paused = false;
    this.resumeCalls++;
  }
  get bytes(): Buffer {
    return Buffer.concat(this.written);
  }
}

describe('bridge with a controlled duplex (agent side), relay stream driven by hand', () => {
  function setup(windowBytes: number, failureCode: ErrorCode = 'BURROW_ERR_LOCAL_ERROR', extra: Partial<BridgeOptions> = {}) {
    const duplex = new FakeDuplex();
    const done: Array<Reason | undefined> = [];
    let agentStream: MuxStream | undefined;
    let bridged: Bridged | undefined;
    const pair = muxPair({
      windowBytes,
      onAgentOpen(stream) {
        agentStream = stream;
        stream.sendHead(FrameType.RESPONSE, okHead);
        bridged = bridge(duplex, stream, { failureCode, onDone: (r) => done.push(r), ...extra });
      },
    });
    const rs = pair.relay.open();
    const rec = new Recorder(rs);
    rs.handler = rec;
    rs.sendHead(FrameType.OPEN, tcpHead);
    pair.pump();
    if (agentStream === undefined || bridged === undefined) throw new Error('no agent stream');
    return { duplex, done, pair, rs, rec, agentStream, bridged };
  }

  test('the duplex is resumed when bridged', () => {
    const { duplex } = setup(1000);
    expect(duplex.paused).toBe(false);
    expect(duplex.resumeCalls).toBe(1);
  });

  test('stream bytes are written to the duplex and credit is returned as soon as it takes them', () => {
    const { duplex, pair, rs } = setup(1000);
    const body = pseudoRandomBytes(300, 5);
    rs.write(body);
    pair.pump();
    expect(duplex.bytes).toStrictEqual(body);
    expect(pair.toRelay.ofType(FrameType.CREDIT).map((f) => decodeCredit(f.payload))).toStrictEqual([300]);
  });

  test('when the duplex refuses (write false), credit waits for its drain', () => {
    const { duplex, pair, rs } = setup(1000);
    duplex.accepting = false;
    rs.write(pseudoRandomBytes(1000, 6));
    pair.pump();
    expect(duplex.bytes.length).toBe(1000);
    expect(pair.toRelay.ofType(FrameType.CREDIT)).toHaveLength(0);
    rs.write(Buffer.alloc(500, 1));
    pair.pump();
    expect(rs.bufferedBytes).toBe(500);
    expect(duplex.bytes.length).toBe(1000);

    duplex.accepting = true;
    duplex.emit('drain');
    expect(pair.toRelay.ofType(FrameType.CREDIT).map((f) => decodeCredit(f.payload))).toStrictEqual([1000]);
    pair.pump();
    expect(duplex.bytes.length).toBe(1500);
    expect(rs.bufferedBytes).toBe(0);
    duplex.emit('drain'); // nothing owed: no credit
    expect(pair.toRelay.ofType(FrameType.CREDIT).map((f) => decodeCredit(f.payload))).toStrictEqual([1000, 500]);
  });

  test('duplex data beyond the stream high-water mark pauses the duplex until credit drains the queue', () => {
    const { duplex, pair, rs, rec, agentStream } = setup(1000);
    const input = pseudoRandomBytes(70_000, 7);
    duplex.emit('data', input);
    expect(duplex.paused).toBe(true); // 69_000 queued > 64 KiB
    pair.pump();
    expect(rec.bytes.length).toBe(1000);
    let consumed = 0;
    let steps = 0;
    while (duplex.paused) {
      if (++steps > 100) throw new Error('never resumed');
      const take = rec.bytes.length - consumed;
      rs.consumed(take);
      consumed += take;
      pair.pump();
    }
    // Credit comes back 1000 bytes at a time; the queue went 69_000, 68_000, ... and the duplex was
    // resumed on the first step that brought it to the 65_536 mark or below: 65_000 queued, 5_000 sent.
    expect(rec.bytes.length).toBe(5000);
    expect(agentStream.bufferedBytes).toBe(65_000);
    expect(rec.count('reset')).toBe(0);
    while (rec.bytes.length < input.length) {
      if (++steps > 1000) throw new Error('stalled');
      const take = rec.bytes.length - consumed;
      rs.consumed(take);
      consumed += take;
      pair.pump();
    }
    expect(rec.bytes).toStrictEqual(input);
  });

  test('half-close both ways: duplex end → END, END → duplex.end(); onDone(undefined) once, after both', () => {
    const { duplex, done, pair, rs, rec, agentStream } = setup(1000);
    duplex.emit('data', Buffer.from('from app'));
    duplex.emit('end');
    pair.pump();
    expect(rec.bytes.toString()).toBe('from app');
    expect(rec.count('end')).toBe(1);
    expect(done).toHaveLength(0);
    expect(duplex.ended).toBe(false);

    rs.write(Buffer.from('from client'));
    rs.end();
    pair.pump();
    expect(duplex.bytes.toString()).toBe('from client');
    expect(duplex.ended).toBe(true);
    expect(done).toStrictEqual([undefined]);
    expect(agentStream.isClosed).toBe(true);
    expect(pair.agent.size).toBe(0);

    duplex.emit('close', false);
    pair.pump();
    expect(done).toStrictEqual([undefined]);
    expect(pair.toRelay.ofType(FrameType.RESET)).toHaveLength(0);
  });

  test('peer END first, then duplex end: onDone(undefined) once', () => {
    const { duplex, done, pair, rs } = setup(1000);
    rs.end();
    pair.pump();
    expect(duplex.ended).toBe(true);
    expect(done).toHaveLength(0);
    duplex.emit('end');
    expect(done).toStrictEqual([undefined]);
    duplex.emit('close', false);
    expect(done).toHaveLength(1);
    expect(pair.toRelay.ofType(FrameType.RESET)).toHaveLength(0);
  });

  test('a RESET from the peer destroys the duplex and reports the reason once', () => {
    const { duplex, done, pair, rs } = setup(1000);
    rs.reset('BURROW_ERR_CANCELLED', 'client went away');
    pair.pump();
    expect(duplex.destroyed).toBe(true);
    expect(done).toStrictEqual([{ code: 'BURROW_ERR_CANCELLED', message: 'client went away' }]);
    duplex.emit('close', false);
    expect(done).toHaveLength(1);
    expect(pair.toRelay.ofType(FrameType.RESET)).toHaveLength(0);
  });

  test('the duplex closing before the stream finished resets the stream with the failure code', () => {
    const { duplex, done, pair, rec } = setup(1000, 'BURROW_ERR_LOCAL_UNREACHABLE');
    duplex.emit('close', false);
    pair.pump();
    const resets = pair.toRelay.ofType(FrameType.RESET);
    expect(resets.map((f) => decodeReason(f.payload))).toStrictEqual([{ code: 'BURROW_ERR_LOCAL_UNREACHABLE', message: 'connection closed' }]);
    expect(done).toStrictEqual([{ code: 'BURROW_ERR_LOCAL_UNREACHABLE', message: 'connection closed' }]);
    expect(rec.resets).toStrictEqual([{ code: 'BURROW_ERR_LOCAL_UNREACHABLE', message: 'connection closed' }]);
    expect(pair.agent.size).toBe(0);
    expect(pair.relay.size).toBe(0);
  });

  test('the duplex ending then closing before the peer finished resets with a message saying so', () => {
    const { duplex, done, pair } = setup(1000);
    duplex.emit('end');
    duplex.emit('close', false);
    pair.pump();
    const expected = { code: 'BURROW_ERR_LOCAL_ERROR', message: 'connection closed before the peer finished' };
    expect(pair.toRelay.ofType(FrameType.RESET).map((f) => decodeReason(f.payload))).toStrictEqual([expected]);
    expect(done).toStrictEqual([expected]);
  });

  test('closeGentlyOn: a RESET with such a code ends the duplex (FIN) instead of destroying it; others still destroy', () => {
    const gentle = setup(1000, 'BURROW_ERR_LOCAL_ERROR', { closeGentlyOn: (code) => code === 'BURROW_ERR_TCP_IDLE' });
    gentle.rs.reset('BURROW_ERR_TCP_IDLE', 'idle');
    gentle.pair.pump();
    expect(gentle.duplex.ended).toBe(true);
    expect(gentle.duplex.destroyed).toBe(false);
    expect(gentle.done).toStrictEqual([{ code: 'BURROW_ERR_TCP_IDLE', message: 'idle' }]);
    const hard = setup(1000, 'BURROW_ERR_LOCAL_ERROR', { closeGentlyOn: (code) => code === 'BURROW_ERR_TCP_IDLE' });
    hard.rs.reset('BURROW_ERR_PROTOCOL', 'broken');
    hard.pair.pump();
    expect(hard.duplex.destroyed).toBe(true);
  });

  test('farewell: a RESET writes its bytes to the duplex, then closes it gently; undefined falls back to destroying it', () => {
    const farewell = (r: Reason): Buffer | undefined => (r.code === 'BURROW_ERR_AGENT_DISCONNECTED' ? Buffer.from(`bye ${r.message}`) : undefined);
    const told = setup(1000, 'BURROW_ERR_CANCELLED', { farewell });
    told.rs.reset('BURROW_ERR_AGENT_DISCONNECTED', 'agent gone');
    told.pair.pump();
    expect(told.duplex.bytes.toString()).toBe('bye agent gone');
    expect(told.duplex.ended).toBe(true);
    expect(told.duplex.destroyed).toBe(false);
    expect(told.done).toStrictEqual([{ code: 'BURROW_ERR_AGENT_DISCONNECTED', message: 'agent gone' }]);
    const untold = setup(1000, 'BURROW_ERR_CANCELLED', { farewell });
    untold.rs.reset('BURROW_ERR_PROTOCOL', 'broken');
    untold.pair.pump();
    expect(untold.duplex.written).toHaveLength(0);
    expect(untold.duplex.destroyed).toBe(true);
  });

  test('farewell is not asked once the duplex has ended its side: nothing is written after an end', () => {
    let asked = 0;
    const { duplex, pair, rs } = setup(1000, 'BURROW_ERR_CANCELLED', {
      farewell: () => {
        asked++;
        return Buffer.from('late');
      },
    });
    rs.end();
    pair.pump();
    expect(duplex.ended).toBe(true);
    Object.defineProperty(duplex, 'writableEnded', { value: true });
    rs.reset('BURROW_ERR_AGENT_DISCONNECTED', 'agent gone');
    pair.pump();
    expect(asked).toBe(0);
    expect(duplex.written).toHaveLength(0);
  });

  test('closedMessage words the reset sent when the duplex closes first', () => {
    const { duplex, done } = setup(1000, 'BURROW_ERR_CANCELLED', { closedMessage: (endedFirst) => (endedFirst ? 'ended early' : 'client gone') });
    duplex.emit('close', false);
    expect(done).toStrictEqual([{ code: 'BURROW_ERR_CANCELLED', message: 'client gone' }]);
  });

  test('cut() resets the stream with its reason, reports it once, and closes the duplex gently', () => {
    const { duplex, done, pair, bridged, rec } = setup(1000);
    bridged.cut('BURROW_ERR_TCP_IDLE', 'no bytes for a while');
    pair.pump();
    expect(pair.toRelay.ofType(FrameType.RESET).map((f) => decodeReason(f.payload))).toStrictEqual([
      { code: 'BURROW_ERR_TCP_IDLE', message: 'no bytes for a while' },
    ]);
    expect(rec.resets).toStrictEqual([{ code: 'BURROW_ERR_TCP_IDLE', message: 'no bytes for a while' }]);
    expect(done).toStrictEqual([{ code: 'BURROW_ERR_TCP_IDLE', message: 'no bytes for a while' }]);
    expect(duplex.ended).toBe(true);
    expect(duplex.destroyed).toBe(false);
    duplex.emit('close', false);
    expect(done).toHaveLength(1);
  });

  test('onHead is called when the peer head arrives on the bridged stream', () => {
    const heads: number[] = [];
    const duplex = new FakeDuplex();
    const pair = muxPair({ windowBytes: 1000, onAgentOpen: (stream) => stream.sendHead(FrameType.RESPONSE, okHead) });
    const rs = pair.relay.open();
    bridge(duplex, rs, { failureCode: 'BURROW_ERR_CANCELLED', onHead: () => heads.push(1) });
    rs.sendHead(FrameType.OPEN, tcpHead);
    pair.pump();
    expect(heads).toStrictEqual([1]);
  });

  test('closeGently ends the duplex, drains what still comes, switches off its idle timer and destroys it after the linger', async () => {
    const duplex = new FakeDuplex();
    const timeouts: number[] = [];
    (duplex as unknown as { setTimeout(ms: number): void }).setTimeout = (ms) => timeouts.push(ms);
    closeGently(duplex, 20);
    expect(duplex.ended).toBe(true);
    expect(duplex.paused).toBe(false);
    expect(timeouts).toStrictEqual([0]);
    expect(duplex.listenerCount('data')).toBe(1);
    expect(duplex.destroyed).toBe(false);
    await new Promise((r) => setTimeout(r, 60));
    expect(duplex.destroyed).toBe(true);
    const gone = new FakeDuplex();
    gone.destroyed = true;
    closeGently(gone, 20);
    expect(gone.ended).toBe(false);
  });

  test('an error alone changes nothing; the close that follows resets', () => {
    const { duplex, done, pair } = setup(1000);
    duplex.emit('error', new Error('ECONNRESET'));
    expect(pair.toRelay.ofType(FrameType.RESET)).toHaveLength(0);
    expect(done).toHaveLength(0);
    duplex.emit('close', true);
    expect(pair.toRelay.ofType(FrameType.RESET)).toHaveLength(1);
    expect(done.map((r) => r?.code)).toStrictEqual(['BURROW_ERR_LOCAL_ERROR']);
  });
});

describe('bridge over real TCP sockets', () => {
  const sockets: net.Socket[] = [];
  const servers: net.Server[] = [];
  const batchers: FrameBatcher[] = [];

  afterEach(async () => {
    for (const b of batchers.splice(0)) b.close();
    for (const s of sockets.splice(0)) s.destroy();
    await Promise.all(servers.splice(0).map((srv) => new Promise<void>((resolve) => srv.close(() => resolve()))));
  });

  /** Two connected half-open-capable sockets on 127.0.0.1. */
  async function socketPair(): Promise<[net.Socket, net.Socket]> {
    const server = net.createServer({ allowHalfOpen: true });
    servers.push(server);
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    const accepted = once(server, 'connection') as Promise<[net.Socket]>;
    const client = net.connect({ port: (server.address() as AddressInfo).port, host: '127.0.0.1', allowHalfOpen: true });
    sockets.push(client);
    await once(client, 'connect');
    const [serverSide] = await accepted;
    sockets.push(serverSide);
    return [client, serverSide];
  }

  /** Collects what a socket receives until it ends (or closes). */
  function collect(socket: net.Socket): { chunks: Buffer[]; ended: Promise<Buffer> } {
    const chunks: Buffer[] = [];
    socket.on('data', (c: Buffer) => chunks.push(c));
    const ended = new Promise<Buffer>((resolve) => {
      socket.once('end', () => resolve(Buffer.concat(chunks)));
      socket.once('close', () => resolve(Buffer.concat(chunks)));
    });
    return { chunks, ended };
  }

  function deferred<T>(): { promise: Promise<T>; resolve: (v: T) => void } {
    let resolve!: (v: T) => void;
    const promise = new Promise<T>((r) => {
      resolve = r;
    });
    return { promise, resolve };
  }

  /** Polls `cond` on every turn of the event loop until it holds, or fails after `ms`. */
  async function until(cond: () => boolean, what: string, ms = 3000): Promise<void> {
    const deadline = Date.now() + ms;
    while (!cond()) {
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
      await new Promise((r) => setImmediate(r));
    }
  }

  /**
   * publicClient ⇄ relayEnd ══ relay Mux ⇄ (FrameBatcher → FrameDecoder) ⇄ agent Mux ══ agentEnd ⇄ localApp
   * relayEnd and agentEnd are bridged to the two ends of one stream.
   */
  async function tunnel(windowBytes = 64 * 1024) {
    const [publicClient, relayEnd] = await socketPair();
    const [agentEnd, localApp] = await socketPair();
    const muxes: { relay?: Mux; agent?: Mux } = {};
    const link = (direction: 'relayToAgent' | 'agentToRelay', target: 'relay' | 'agent'): FrameBatcher => {
      const decoder = new FrameDecoder(direction);
      const b = new FrameBatcher((batch) => decoder.push(batch, (f: Frame) => muxes[target]?.receive(f)));
      batchers.push(b);
      return b;
    };
    const relayDone = deferred<Reason | undefined>();
    const agentDone = deferred<Reason | undefined>();
    const doneCalls = { relay: 0, agent: 0 };
    const agent = new Mux(link('agentToRelay', 'relay'), {
      role: 'agent',
      windowBytes,
      onOpen(stream) {
        stream.sendHead(FrameType.RESPONSE, okHead);
        bridge(agentEnd, stream, {
          failureCode: 'BURROW_ERR_LOCAL_ERROR',
          onDone(r) {
            doneCalls.agent++;
            agentDone.resolve(r);
          },
        });
      },
    });
    const relay = new Mux(link('relayToAgent', 'agent'), { role: 'relay', windowBytes });
    muxes.agent = agent;
    muxes.relay = relay;
    const stream = relay.open();
    stream.sendHead(FrameType.OPEN, tcpHead);
    bridge(relayEnd, stream, {
      failureCode: 'BURROW_ERR_CANCELLED',
      onDone(r) {
        doneCalls.relay++;
        relayDone.resolve(r);
      },
    });
    return { publicClient, relayEnd, agentEnd, localApp, relay, agent, stream, relayDone: relayDone.promise, agentDone: agentDone.promise, doneCalls };
  }

  test('bytes travel both ways byte-exact, concurrently, through small windows', async () => {
    const t = await tunnel(16 * 1024);
    const up = pseudoRandomBytes(1_000_000, 21);
    const down = pseudoRandomBytes(700_000, 22);
    const atApp = collect(t.localApp);
    const atClient = collect(t.publicClient);
    t.publicClient.end(up);
    t.localApp.end(down);
    const [gotUp, gotDown] = await Promise.all([atApp.ended, atClient.ended]);
    expect(gotUp.length).toBe(up.length);
    expect(gotUp.equals(up)).toBe(true);
    expect(gotDown.length).toBe(down.length);
    expect(gotDown.equals(down)).toBe(true);
    expect(await t.relayDone).toBeUndefined();
    expect(await t.agentDone).toBeUndefined();
    await until(() => t.relay.size === 0 && t.agent.size === 0, 'both stream tables to empty');
    expect(t.doneCalls).toStrictEqual({ relay: 1, agent: 1 });
  });

  test('half-close passes through: the app sees end and can still answer', async () => {
    const t = await tunnel();
    const atApp = collect(t.localApp);
    const atClient = collect(t.publicClient);
    t.publicClient.end('request, then my side is done');
    expect((await atApp.ended).toString()).toBe('request, then my side is done');
    expect(t.localApp.writable).toBe(true);
    t.localApp.write('reply after ');
    t.localApp.end('your end');
    expect((await atClient.ended).toString()).toBe('reply after your end');
    expect(await t.relayDone).toBeUndefined();
    expect(await t.agentDone).toBeUndefined();
    await until(() => t.relay.size === 0 && t.agent.size === 0, 'both stream tables to empty');
    expect(t.doneCalls).toStrictEqual({ relay: 1, agent: 1 });
  });

  test('a reset of the relay stream destroys the agent-side socket; the app sees its connection close', async () => {
    const t = await tunnel();
    const atApp = collect(t.localApp);
    t.publicClient.write('hello');
    await until(() => Buffer.concat(atApp.chunks).toString() === 'hello', 'the first bytes at the app');
    t.stream.reset('BURROW_ERR_CANCELLED', 'client went away');
    expect(await t.agentDone).toStrictEqual({ code: 'BURROW_ERR_CANCELLED', message: 'client went away' });
    await atApp.ended;
    await until(() => t.agentEnd.destroyed, 'the agent-side socket to be destroyed');
    await until(() => t.agent.size === 0, 'the agent table to empty');
    expect(t.relay.size).toBe(0);
  });

  test('the bridged socket closing before the stream finished resets it with the failure code; the other side is torn down', async () => {
    const t = await tunnel();
    const atApp = collect(t.localApp);
    const atClient = collect(t.publicClient);
    t.publicClient.write('hello');
    await until(() => Buffer.concat(atApp.chunks).length === 5, 'the first bytes at the app');
    t.agentEnd.destroy();
    const expected = { code: 'BURROW_ERR_LOCAL_ERROR', message: 'connection closed' };
    expect(await t.agentDone).toStrictEqual(expected);
    expect(await t.relayDone).toStrictEqual(expected);
    await atClient.ended;
    await until(() => t.relayEnd.destroyed, 'the relay-side socket to be destroyed');
    await until(() => t.relay.size === 0 && t.agent.size === 0, 'both stream tables to empty');
    expect(t.doneCalls).toStrictEqual({ relay: 1, agent: 1 });
  });

  test('the local app resetting its connection (RST) resets the stream with the failure code', async () => {
    const t = await tunnel();
    const atApp = collect(t.localApp);
    t.publicClient.write('hello');
    await until(() => Buffer.concat(atApp.chunks).length === 5, 'the first bytes at the app');
    t.localApp.resetAndDestroy();
    const r = await t.relayDone;
    expect(r?.code).toBe('BURROW_ERR_LOCAL_ERROR');
    expect((await t.agentDone)?.code).toBe('BURROW_ERR_LOCAL_ERROR');
    await until(() => t.relayEnd.destroyed, 'the relay-side socket to be destroyed');
  });
});
