/**
 * Collects outgoing frames and hands them to the transport as one message per turn of the
 * event loop (one WebSocket message, one syscall), or sooner once a batch is large.
 * Small batches are joined into one buffer at flush (one copy); batches carrying body bytes
 * go to the VectorWrite as their parts, when the transport has one (no copy).
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

/**
 * Takes a batch as its parts (frame headers and payloads, in order; `bytes` in all) without
 * their being joined, or returns false to have them joined and given to `write` instead.
 */
export type VectorWrite = (parts: readonly Buffer[], bytes: number) => boolean;

/**
 * Batches with at least this many payload bytes go to the VectorWrite, if any: joining them
 * would copy every body byte once more. Smaller ones (request heads, credits) are joined: one
 * small copy is cheaper than many small buffers in one writev.
 */
export const VECTOR_MIN_PAYLOAD_BYTES = 8 * 1024;
/** ... and with at most this many parts (a writev of many tiny buffers costs more than a copy). */
export const VECTOR_MAX_PARTS = 64;

export class FrameBatcher implements FrameSink {
  private parts: Buffer[] = [];
  private bytes = 0;
  private payloadBytes = 0;
  private scheduled = false;
  private closed = false;

  constructor(
    private readonly write: (batch: Buffer) => void,
    private readonly schedule: Scheduler = setImmediate,
    private readonly maxBatchBytes: number = MAX_BATCH_BYTES,
    private readonly writeVector?: VectorWrite,
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
    this.payloadBytes += len;
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
    const { parts, bytes } = this;
    const vector = this.writeVector !== undefined && parts.length > 1 && parts.length <= VECTOR_MAX_PARTS && this.payloadBytes >= VECTOR_MIN_PAYLOAD_BYTES;
    this.parts = [];
    this.bytes = 0;
    this.payloadBytes = 0;
    if (this.closed) return;
    if (vector && (this.writeVector as VectorWrite)(parts, bytes)) return;
    this.write(parts.length === 1 ? (parts[0] as Buffer) : Buffer.concat(parts, bytes));
  }

  /** Flushes and stops accepting frames. */
  close(): void {
    if (this.closed) return;
    this.flush();
    this.closed = true;
  }
}
