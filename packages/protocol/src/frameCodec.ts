/**
 * Binary frame codec: a 10-byte header (type u8, flags u8, streamId u32 BE, length u32 BE)
 * followed by raw payload bytes. Decoding is streaming (chunks may split or merge frames)
 * and returns zero-copy views into the input where a frame lies whole in one chunk.
 * Pure: no sockets, no timers.
 */
import { FRAME_HEADER_BYTES, MAX_FRAME_PAYLOAD_BYTES, SESSION_STREAM_ID } from './constants';
import { BurrowError } from './errors';
import { ALLOWED_FLAGS, type Direction, type FrameType, isAllowed, isStreamType } from './frameTypes';

export interface Frame {
  readonly type: FrameType;
  readonly flags: number;
  readonly streamId: number;
  /** View into the received bytes; copy it if you keep it past the callback and the input is reused. */
  readonly payload: Buffer;
}

const EMPTY = Buffer.alloc(0);

/** Writes a frame header at `offset` of `target`. */
export function writeFrameHeader(target: Buffer, offset: number, type: FrameType, flags: number, streamId: number, length: number): void {
  target[offset] = type;
  target[offset + 1] = flags;
  target.writeUInt32BE(streamId >>> 0, offset + 2);
  target.writeUInt32BE(length >>> 0, offset + 6);
}

/** One frame as one buffer (header + a copy of the payload). */
export function encodeFrame(type: FrameType, flags: number, streamId: number, payload: Uint8Array = EMPTY): Buffer {
  if (payload.length > MAX_FRAME_PAYLOAD_BYTES) {
    throw new BurrowError('BURROW_ERR_FRAME_TOO_LARGE', `frame payload of ${payload.length} bytes exceeds ${MAX_FRAME_PAYLOAD_BYTES}`);
  }
  const out = Buffer.allocUnsafe(FRAME_HEADER_BYTES + payload.length);
  writeFrameHeader(out, 0, type, flags, streamId, payload.length);
  if (payload.length > 0) out.set(payload, FRAME_HEADER_BYTES);
  return out;
}

/** Checks a decoded header against the rules; throws a coded error naming what is wrong. */
function validateHeader(direction: Direction, type: number, flags: number, streamId: number, length: number, maxPayload: number): void {
  if (!isAllowed(direction, type)) {
    throw new BurrowError(
      'BURROW_ERR_PROTOCOL',
      `frame type 0x${type.toString(16)} is not allowed ${direction === 'relayToAgent' ? 'from the relay' : 'from an agent'}`,
    );
  }
  if ((flags & ~ALLOWED_FLAGS[type]) !== 0) {
    throw new BurrowError('BURROW_ERR_PROTOCOL', `flags 0x${flags.toString(16)} not allowed on frame type 0x${type.toString(16)}`);
  }
  if (isStreamType(type) === (streamId === SESSION_STREAM_ID)) {
    throw new BurrowError('BURROW_ERR_PROTOCOL', `frame type 0x${type.toString(16)} with stream id ${streamId}`);
  }
  if (length > maxPayload) {
    throw new BurrowError('BURROW_ERR_FRAME_TOO_LARGE', `frame payload of ${length} bytes exceeds ${maxPayload}`);
  }
}

/**
 * Streaming decoder. Feed it chunks in order; it calls `onFrame` for each whole frame and
 * keeps at most one partial frame (bounded by the payload cap) between calls.
 * Throws BurrowError on the first violation; the session must then be closed.
 */
export class FrameDecoder {
  private pending: Buffer = EMPTY;
  constructor(
    private readonly direction: Direction,
    private readonly maxPayloadBytes: number = MAX_FRAME_PAYLOAD_BYTES,
  ) {}

  /** Bytes held back waiting for the rest of a frame. */
  get bufferedBytes(): number {
    return this.pending.length;
  }

  push(chunk: Buffer, onFrame: (frame: Frame) => void): void {
    let buf = chunk;
    if (this.pending.length > 0) {
      buf = Buffer.concat([this.pending, chunk]);
      this.pending = EMPTY;
    }
    let offset = 0;
    while (buf.length - offset >= FRAME_HEADER_BYTES) {
      const type = buf[offset] as number;
      const flags = buf[offset + 1] as number;
      const streamId = buf.readUInt32BE(offset + 2);
      const length = buf.readUInt32BE(offset + 6);
      validateHeader(this.direction, type, flags, streamId, length, this.maxPayloadBytes);
      const end = offset + FRAME_HEADER_BYTES + length;
      if (end > buf.length) break;
      onFrame({ type: type as FrameType, flags, streamId, payload: buf.subarray(offset + FRAME_HEADER_BYTES, end) });
      offset = end;
    }
    if (offset < buf.length) {
      // Copy, so that the held bytes never pin a large chunk.
      this.pending = Buffer.from(buf.subarray(offset));
    }
  }

  /** Call when the input ends: a partial frame left over is a violation. */
  finish(): void {
    if (this.pending.length > 0) {
      const held = this.pending.length;
      this.pending = EMPTY;
      throw new BurrowError('BURROW_ERR_PROTOCOL', `input ended inside a frame (${held} bytes held)`);
    }
  }
}

/**
 * Decodes a message that must hold whole frames only (one WebSocket message).
 * Stateless and zero-copy: payloads are views into `message`.
 */
export function decodeFrames(message: Buffer, direction: Direction, onFrame: (frame: Frame) => void, maxPayloadBytes = MAX_FRAME_PAYLOAD_BYTES): void {
  let offset = 0;
  while (offset < message.length) {
    if (message.length - offset < FRAME_HEADER_BYTES) {
      throw new BurrowError('BURROW_ERR_PROTOCOL', `message ends inside a frame header (${message.length - offset} bytes left)`);
    }
    const type = message[offset] as number;
    const flags = message[offset + 1] as number;
    const streamId = message.readUInt32BE(offset + 2);
    const length = message.readUInt32BE(offset + 6);
    validateHeader(direction, type, flags, streamId, length, maxPayloadBytes);
    const end = offset + FRAME_HEADER_BYTES + length;
    if (end > message.length) {
      throw new BurrowError('BURROW_ERR_PROTOCOL', `frame length ${length} runs past the end of the message`);
    }
    onFrame({ type: type as FrameType, flags, streamId, payload: message.subarray(offset + FRAME_HEADER_BYTES, end) });
    offset = end;
  }
}
