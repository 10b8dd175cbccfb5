/**
 * A stream table over one frame channel: creates streams for the peer's OPENs, routes stream
 * frames by id, allocates ids for streams this side opens, and aborts everything when the
 * channel goes. Session-level frames (id 0) are not its business and are returned to the caller.
 */
import { BurrowError, type Frame, FrameType, type Reason } from '@burrow/protocol';
import { type FrameSink, MuxStream } from './muxStream';

export interface MuxOptions {
  readonly windowBytes: number;
  /** Ids this side allocates are odd (relay) or even (agent), so the two never collide. */
  readonly role: 'relay' | 'agent';
  /** Most streams open at once; OPENs beyond it are refused with TOO_MANY_STREAMS. */
  readonly maxStreams?: number;
  /** A new stream from the peer; set stream.handler before returning. */
  readonly onOpen?: (stream: MuxStream, head: Buffer, fin: boolean) => void;
}

export class Mux {
  private readonly streams = new Map<number, MuxStream>();
  private nextId: number;
  /** Highest peer-allocated id seen: lower unknown ids are stale (already closed), higher are lies. */
  private highestPeerId = 0;
  private readonly removeStream = (s: MuxStream): void => {
    this.streams.delete(s.id);
  };

  constructor(
    private readonly sink: FrameSink,
    private readonly options: MuxOptions,
  ) {
    this.nextId = options.role === 'relay' ? 1 : 2;
  }

  get size(): number {
    return this.streams.size;
  }

  get(id: number): MuxStream | undefined {
    return this.streams.get(id);
  }

  /** Opens a stream from this side; send its head with stream.sendHead(FrameType.OPEN, ...). */
  open(): MuxStream {
    const id = this.nextId;
    if (id > 0xffff_fffe) throw new BurrowError('BURROW_ERR_PROTOCOL', 'stream ids exhausted; reconnect');
    this.nextId += 2;
    const stream = new MuxStream(id, this.sink, { windowBytes: this.options.windowBytes, onClose: this.removeStream });
    this.streams.set(id, stream);
    return stream;
  }

  private isPeerId(id: number): boolean {
    return (id % 2 === 1) === (this.options.role === 'agent');
  }

  /**
   * Routes one stream frame. Throws BurrowError for violations that must end the session
   * (ids the peer never opened); per-stream violations only reset that stream.
   */
  receive(frame: Frame): void {
    const { type, streamId } = frame;
    const stream = this.streams.get(streamId);
    if (stream !== undefined) {
      stream.receive(type, frame.flags, frame.payload);
      return;
    }
    if (type === FrameType.OPEN && this.isPeerId(streamId)) {
      if (streamId <= this.highestPeerId) throw new BurrowError('BURROW_ERR_PROTOCOL', `stream id ${streamId} reused`);
      this.highestPeerId = streamId;
      const s = new MuxStream(streamId, this.sink, { windowBytes: this.options.windowBytes, onClose: this.removeStream });
      if (this.options.maxStreams !== undefined && this.streams.size >= this.options.maxStreams) {
        s.reset('BURROW_ERR_TOO_MANY_STREAMS', `more than ${this.options.maxStreams} streams at once`);
        return;
      }
      this.streams.set(streamId, s);
      s.receive(type, frame.flags, frame.payload);
      this.options.onOpen?.(s, frame.payload, (frame.flags & 1) !== 0);
      return;
    }
    const known = this.isPeerId(streamId) ? streamId <= this.highestPeerId : streamId < this.nextId;
    if (!known) throw new BurrowError('BURROW_ERR_PROTOCOL', `frame for stream ${streamId}, which was never opened`);
    // A frame for a stream that already ended here (a race with our RESET): drop it.
  }

  /** The channel is gone: every open stream is aborted with `reason`, no frames sent. */
  abortAll(reason: Reason): void {
    for (const s of [...this.streams.values()]) s.abort(reason);
    this.streams.clear();
  }
}
