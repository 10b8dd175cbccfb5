/**
 * Collects outgoing frames and hands them to the transport as one buffer per turn of the
 * event loop (one WebSocket message, one syscall), or sooner once a batch is large.
 * One copy per frame: header and payload are copied into the batch at flush.
 */
import { FRAME_HEADER_BYTES, type FrameType, writeFrameHeader } from '@burrow/protocol';
import type { FrameSink } from './muxStream';

/**
 * Most bytes in one batch (one WebSocket message): a frame that would take a batch past this
 * goes into the next one. 64 KiB less room for the WebSocket header, so a message fits one
 * socket read at the receiver (no reassembly copy); also bounds memory per connection.
 */
export const MAX_BATCH_BYTES = 64 * 1024 - 16;

export type Scheduler = (flush: () => void) => void;

export class FrameBatcher implements FrameSink {
  private parts: Buffer[] = [];
  private bytes = 0;
  private scheduled = false;
  private closed = false;

  constructor(
    private readonly write: (batch: Buffer) => void,
    private readonly schedule: Scheduler = setImmediate,
    private readonly maxBatchBytes: number = MAX_BATCH_BYTES,
  ) {}

  sendFrame(type: FrameType, flags: number, streamId: number, payload?: Buffer): void {
    if (this.closed) return;
    const len = payload === undefined ? 0 : payload.length;
    if (this.bytes > 0 && this.bytes + FRAME_HEADER_BYTES + len > this.maxBatchBytes) this.flush();
    const header = Buffer.allocUnsafe(FRAME_HEADER_BYTES);
    writeFrameHeader(header, 0, type, flags, streamId, len);
    this.parts.push(header);
    if (len > 0) this.parts.push(payload as Buffer);
    this.bytes += FRAME_HEADER_BYTES + len;
    if (this.bytes >= this.maxBatchBytes) {
      this.flush();
    } else if (!this.scheduled) {
      this.scheduled = true;
      this.schedule(this.flushScheduled);
    }
  }

  private readonly flushScheduled = (): void => {
    this.scheduled = false;
    this.flush();
  };

  /** Writes what is pending now. */
  flush(): void {
    if (this.bytes === 0) return;
    const batch = this.parts.length === 1 ? (this.parts[0] as Buffer) : Buffer.concat(this.parts, this.bytes);
    this.parts = [];
    this.bytes = 0;
    if (!this.closed) this.write(batch);
  }

  /** Flushes and stops accepting frames. */
  close(): void {
    if (this.closed) return;
    this.flush();
    this.closed = true;
  }
}
