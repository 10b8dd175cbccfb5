/**
 * Test harness for @burrow/mux (not a test file itself): sinks that record frames, a wire
 * that carries encoded bytes between two real Muxes with the codec's direction checks, and a
 * handler that records every callback in order.
 */

import { type FrameSink, Mux, type MuxOptions, type MuxStream, type StreamHandler } from '@burrow/mux';
import { type Direction, decodeFrames, encodeFrame, type Frame, FrameType, type Reason } from '@burrow/protocol';

export interface SentFrame {
  readonly type: FrameType;
  readonly flags: number;
  readonly streamId: number;
  readonly payload: Buffer;
}

const EMPTY = Buffer.alloc(0);

/** Records frames as sent (after checking they encode: a frame over the cap throws here, as on a real wire). */
export class RecordingSink implements FrameSink {
  readonly frames: SentFrame[] = [];
  sendFrame(type: FrameType, flags: number, streamId: number, payload?: Buffer): void {
    encodeFrame(type, flags, streamId, payload);
    this.frames.push({ type, flags, streamId, payload: Buffer.from(payload ?? EMPTY) });
  }
  /** Removes and returns what was sent so far. */
  take(): SentFrame[] {
    return this.frames.splice(0);
  }
  ofType(type: FrameType): SentFrame[] {
    return this.frames.filter((f) => f.type === type);
  }
  dataBytes(streamId?: number): number {
    return this.frames
      .filter((f) => f.type === FrameType.DATA && (streamId === undefined || f.streamId === streamId))
      .reduce((n, f) => n + f.payload.length, 0);
  }
}

/**
 * One direction of a frame channel. Every frame is encoded with encodeFrame, queued, and on
 * flush decoded with decodeFrames (so direction, flag and id rules apply) and handed to `deliver`.
 */
export class Wire implements FrameSink {
  readonly log: SentFrame[] = [];
  private readonly queue: Buffer[] = [];
  deliver: (frame: Frame) => void = () => {
    throw new Error('wire not connected');
  };
  /** Called at send time, before queueing (for invariants checked as frames leave). */
  onSend: ((frame: SentFrame) => void) | undefined;
  constructor(readonly direction: Direction) {}

  sendFrame(type: FrameType, flags: number, streamId: number, payload?: Buffer): void {
    const bytes = encodeFrame(type, flags, streamId, payload);
    const sent = { type, flags, streamId, payload: Buffer.from(payload ?? EMPTY) };
    this.log.push(sent);
    this.onSend?.(sent);
    this.queue.push(bytes);
  }
  get pending(): number {
    return this.queue.length;
  }
  /** Delivers one queued message; false when none was queued. */
  deliverOne(): boolean {
    const message = this.queue.shift();
    if (message === undefined) return false;
    decodeFrames(message, this.direction, (f) => this.deliver(f));
    return true;
  }
  ofType(type: FrameType): SentFrame[] {
    return this.log.filter((f) => f.type === type);
  }
  dataBytes(streamId?: number): number {
    return this.log.filter((f) => f.type === FrameType.DATA && (streamId === undefined || f.streamId === streamId)).reduce((n, f) => n + f.payload.length, 0);
  }
}

export interface Pair {
  readonly relay: Mux;
  readonly agent: Mux;
  /** Frames the relay sends (relay → agent). */
  readonly toAgent: Wire;
  /** Frames the agent sends (agent → relay). */
  readonly toRelay: Wire;
  /** Delivers queued frames both ways, alternating one message at a time, until both wires are idle. */
  pump(): void;
}

export interface PairOptions {
  readonly windowBytes: number;
  readonly agentMaxStreams?: number;
  readonly onAgentOpen?: MuxOptions['onOpen'];
  readonly onRelayOpen?: MuxOptions['onOpen'];
}

export function muxPair(options: PairOptions): Pair {
  const toAgent = new Wire('relayToAgent');
  const toRelay = new Wire('agentToRelay');
  const relay = new Mux(toAgent, { role: 'relay', windowBytes: options.windowBytes, ...(options.onRelayOpen ? { onOpen: options.onRelayOpen } : {}) });
  const agent = new Mux(toRelay, {
    role: 'agent',
    windowBytes: options.windowBytes,
    ...(options.agentMaxStreams !== undefined ? { maxStreams: options.agentMaxStreams } : {}),
    ...(options.onAgentOpen ? { onOpen: options.onAgentOpen } : {}),
  });
  toAgent.deliver = (f) => agent.receive(f);
  toRelay.deliver = (f) => relay.receive(f);
  const pump = (): void => {
    for (let rounds = 0; rounds < 100_000; rounds++) {
      const a = toAgent.deliverOne();
      const b = toRelay.deliverOne();
      if (!a && !b) return;
    }
    throw new Error('pump did not settle');
  };
  return { relay, agent, toAgent, toRelay, pump };
}

export type Event =
  | { readonly kind: 'head'; readonly payload: Buffer; readonly fin: boolean }
  | { readonly kind: 'data'; readonly chunk: Buffer }
  | { readonly kind: 'end' }
  | { readonly kind: 'reset'; readonly reason: Reason }
  | { readonly kind: 'drain' };

/** A StreamHandler that records every callback, copying payloads. Optionally consumes data as it arrives. */
export class Recorder implements StreamHandler {
  readonly events: Event[] = [];
  constructor(
    private readonly stream?: MuxStream,
    private readonly autoConsume = false,
  ) {}
  onHead(payload: Buffer, fin: boolean): void {
    this.events.push({ kind: 'head', payload: Buffer.from(payload), fin });
  }
  onData(chunk: Buffer): void {
    this.events.push({ kind: 'data', chunk: Buffer.from(chunk) });
    if (this.autoConsume) this.stream?.consumed(chunk.length);
  }
  onEnd(): void {
    this.events.push({ kind: 'end' });
  }
  onReset(reason: Reason): void {
    this.events.push({ kind: 'reset', reason });
  }
  onDrain(): void {
    this.events.push({ kind: 'drain' });
  }
  count(kind: Event['kind']): number {
    return this.events.filter((e) => e.kind === kind).length;
  }
  get bytes(): Buffer {
    return Buffer.concat(this.events.flatMap((e) => (e.kind === 'data' ? [e.chunk] : [])));
  }
  get resets(): Reason[] {
    return this.events.flatMap((e) => (e.kind === 'reset' ? [e.reason] : []));
  }
  /** Event kinds in order, e.g. ['head', 'data', 'end']. */
  get kinds(): string[] {
    return this.events.map((e) => e.kind);
  }
}

/** Deterministic pseudo-random bytes (xorshift32), so failures reproduce. */
export function pseudoRandomBytes(length: number, seed = 0x9e3779b9): Buffer {
  const out = Buffer.allocUnsafe(length);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < length; i++) {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    out[i] = x & 0xff;
  }
  return out;
}
