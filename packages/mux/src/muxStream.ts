/**
 * One stream's state: credit windows both ways, a bounded send queue, and end/reset
 * bookkeeping so that every stream ends exactly once. It never touches a socket: frames go
 * out through a FrameSink, frames come in through receive().
 */
import {
  BurrowError,
  decodeCredit,
  decodeReason,
  type ErrorCode,
  encodeCredit,
  encodeReason,
  FLAG_FIN,
  FrameType,
  MAX_DATA_CHUNK_BYTES,
  MAX_FRAME_PAYLOAD_BYTES,
  type Reason,
} from '@burrow/protocol';

export interface FrameSink {
  /** Queue one frame for the peer. The sink may keep `payload`; callers must not reuse it. */
  sendFrame(type: FrameType, flags: number, streamId: number, payload?: Buffer): void;
}

export interface StreamHandler {
  /** The peer's head (OPEN or RESPONSE payload). `fin`: nothing follows it. */
  onHead?(payload: Buffer, fin: boolean): void;
  /** Bytes from the peer. Call stream.consumed(n) once they have been handed on, to return credit. */
  onData(chunk: Buffer): void;
  /** The peer will send nothing more. */
  onEnd(): void;
  /** The stream was aborted, by the peer or locally (session gone). Called at most once; no other callback follows. */
  onReset(reason: Reason): void;
  /** Credit came back and the send queue fell below the high-water mark. */
  onDrain?(): void;
}

export interface MuxStreamOptions {
  /** Bytes each side may send before waiting for credit. */
  readonly windowBytes: number;
  /** Queued-but-unsent bytes above which write() returns false. */
  readonly highWaterBytes?: number;
  /** Called once when the stream is finished both ways or reset, so tables can drop it. */
  readonly onClose?: (stream: MuxStream) => void;
}

export class MuxStream {
  handler: StreamHandler | undefined;
  private sendCredit: number;
  private recvRemaining: number;
  private unacked = 0;
  private readonly creditThreshold: number;
  private readonly highWater: number;
  private queue: Buffer[] = [];
  private queuedBytes = 0;
  private pendingFin = false;
  private localEnded = false;
  private remoteEnded = false;
  private headReceived = false;
  private closed = false;
  private wantDrain = false;

  constructor(
    readonly id: number,
    private readonly sink: FrameSink,
    private readonly options: MuxStreamOptions,
  ) {
    this.sendCredit = options.windowBytes;
    this.recvRemaining = options.windowBytes;
    this.creditThreshold = Math.max(1, Math.floor(options.windowBytes / 4));
    this.highWater = options.highWaterBytes ?? MAX_FRAME_PAYLOAD_BYTES;
  }

  get isClosed(): boolean {
    return this.closed;
  }
  get isLocalEnded(): boolean {
    return this.localEnded;
  }
  get isRemoteEnded(): boolean {
    return this.remoteEnded;
  }
  /** Bytes written but waiting for credit. */
  get bufferedBytes(): number {
    return this.queuedBytes;
  }

  /** Sends this side's head (OPEN or RESPONSE). With fin, the stream's sending side is done. */
  sendHead(type: typeof FrameType.OPEN | typeof FrameType.RESPONSE, payload: Buffer, fin = false): void {
    if (this.closed || this.localEnded) return;
    this.sink.sendFrame(type, fin ? FLAG_FIN : 0, this.id, payload);
    if (fin) this.finishLocal();
  }

  /**
   * Sends bytes, within credit; the rest waits in a queue. Returns false when the queue is
   * above the high-water mark: stop writing until onDrain. Writes after end/reset are dropped.
   */
  write(chunk: Buffer): boolean {
    if (this.closed || this.localEnded || this.pendingFin) return false;
    if (chunk.length === 0) return true;
    if (this.queuedBytes === 0 && chunk.length <= this.sendCredit && chunk.length <= MAX_DATA_CHUNK_BYTES) {
      this.sendCredit -= chunk.length;
      this.sink.sendFrame(FrameType.DATA, 0, this.id, chunk);
      return true;
    }
    this.queue.push(chunk);
    this.queuedBytes += chunk.length;
    this.flushQueue();
    if (this.queuedBytes > this.highWater) {
      this.wantDrain = true;
      return false;
    }
    return true;
  }

  /** Finishes this side: END now, or FIN on the last queued chunk once credit allows. */
  end(): void {
    if (this.closed || this.localEnded || this.pendingFin) return;
    if (this.queuedBytes > 0) {
      this.pendingFin = true;
      return;
    }
    this.sink.sendFrame(FrameType.END, 0, this.id);
    this.finishLocal();
  }

  /** Aborts the stream both ways and tells the peer why. Idempotent. */
  reset(code: ErrorCode, message?: string): void {
    if (this.closed) return;
    this.sink.sendFrame(FrameType.RESET, 0, this.id, encodeReason(code, message));
    this.close();
  }

  /**
   * Marks the stream reset without telling the peer (the channel is gone) and notifies the
   * handler. Idempotent.
   */
  abort(reason: Reason): void {
    if (this.closed) return;
    const h = this.handler;
    this.close();
    h?.onReset(reason);
  }

  /** Returns credit for bytes the consumer has handed on. */
  consumed(bytes: number): void {
    if (this.closed || this.remoteEnded) return;
    this.unacked += bytes;
    if (this.unacked >= this.creditThreshold) {
      const n = this.unacked;
      this.unacked = 0;
      this.recvRemaining += n;
      this.sink.sendFrame(FrameType.CREDIT, 0, this.id, encodeCredit(n));
    }
  }

  /** Feeds one frame from the peer. Protocol violations reset the stream (FLOW_CONTROL / PROTOCOL). */
  receive(type: FrameType, flags: number, payload: Buffer): void {
    if (this.closed) return;
    try {
      switch (type) {
        case FrameType.OPEN:
        case FrameType.RESPONSE:
          if (this.headReceived) throw new BurrowError('BURROW_ERR_PROTOCOL', `second head on stream ${this.id}`);
          this.headReceived = true;
          this.handler?.onHead?.(payload, (flags & FLAG_FIN) !== 0);
          if ((flags & FLAG_FIN) !== 0) this.finishRemote();
          return;
        case FrameType.DATA:
          if (!this.headReceived || this.remoteEnded) {
            throw new BurrowError('BURROW_ERR_PROTOCOL', `data on stream ${this.id} ${this.remoteEnded ? 'after its end' : 'before its head'}`);
          }
          if (payload.length > this.recvRemaining) {
            throw new BurrowError(
              'BURROW_ERR_FLOW_CONTROL',
              `peer sent ${payload.length} bytes with ${this.recvRemaining} bytes of credit on stream ${this.id}`,
            );
          }
          this.recvRemaining -= payload.length;
          if (payload.length > 0) this.handler?.onData(payload);
          if ((flags & FLAG_FIN) !== 0 && !this.closed) this.finishRemote();
          return;
        case FrameType.END:
          if (!this.headReceived || this.remoteEnded) {
            throw new BurrowError('BURROW_ERR_PROTOCOL', `end on stream ${this.id} ${this.remoteEnded ? 'twice' : 'before its head'}`);
          }
          this.finishRemote();
          return;
        case FrameType.CREDIT: {
          const n = decodeCredit(payload);
          if (this.sendCredit + n > 0xffff_ffff) throw new BurrowError('BURROW_ERR_FLOW_CONTROL', `credit overflow on stream ${this.id}`);
          this.sendCredit += n;
          this.flushQueue();
          if (this.wantDrain && this.queuedBytes <= this.highWater && !this.closed) {
            this.wantDrain = false;
            this.handler?.onDrain?.();
          }
          return;
        }
        case FrameType.RESET:
          this.abort(decodeReason(payload));
          return;
        default:
          throw new BurrowError('BURROW_ERR_PROTOCOL', `frame type 0x${(type as number).toString(16)} on stream ${this.id}`);
      }
    } catch (err) {
      const e = err instanceof BurrowError ? err : new BurrowError('BURROW_ERR_PROTOCOL', String(err));
      const h = this.handler;
      this.reset(e.code, e.message);
      h?.onReset({ code: e.code, message: e.message });
    }
  }

  private flushQueue(): void {
    while (this.queue.length > 0 && this.sendCredit > 0) {
      let chunk = this.queue[0] as Buffer;
      const n = Math.min(chunk.length, this.sendCredit, MAX_DATA_CHUNK_BYTES);
      if (n < chunk.length) {
        this.queue[0] = chunk.subarray(n);
        chunk = chunk.subarray(0, n);
      } else {
        this.queue.shift();
      }
      this.queuedBytes -= n;
      this.sendCredit -= n;
      const last = this.queuedBytes === 0 && this.pendingFin;
      this.sink.sendFrame(FrameType.DATA, last ? FLAG_FIN : 0, this.id, chunk);
      if (last) {
        this.pendingFin = false;
        this.finishLocal();
        return;
      }
    }
  }

  private finishLocal(): void {
    this.localEnded = true;
    if (this.remoteEnded) this.close();
  }

  private finishRemote(): void {
    this.remoteEnded = true;
    const h = this.handler;
    if (this.localEnded) this.close();
    h?.onEnd();
  }

  private close(): void {
    if (this.closed) return;
    this.closed = true;
    this.queue = [];
    this.queuedBytes = 0;
    this.options.onClose?.(this);
  }
}
