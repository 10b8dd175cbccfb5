/**
 * Wire encoding of bus messages on Redis channels. Pure functions, no I/O.
 *
 * One Redis message carries a batch: a format byte (0xB1) followed by records, each
 *
 *   toSession       u8 1 | u8 frameType | u8 flags | u32 streamId | u16 len, sessionId (utf8)
 *                   | u16 len, replyNode (utf8) | u32 len, payload
 *   toIngress       u8 2 | u8 frameType | u8 flags | u32 streamId | u32 len, payload
 *   sessionReplaced u8 3 | u16 len, sessionId (utf8)
 *   closeSession    u8 4 | u16 len, sessionId (utf8) | u16 error wire number
 *
 * Integers are big-endian. Payload bytes are copied verbatim (binary safe, no text conversion).
 * Decoded payloads are views into the received buffer (no copy).
 */
import { codeFromWire, ERRORS, FrameType } from '@burrow/protocol';
import type { BusFrame, BusMessage } from './bus';

/** First byte of every batch: identifies the format (and its version). */
export const BATCH_FORMAT = 0xb1;
const KIND_TO_SESSION = 1;
const KIND_TO_INGRESS = 2;
const KIND_SESSION_REPLACED = 3;
const KIND_CLOSE_SESSION = 4;
const MAX_STRING_BYTES = 0xffff;

const FRAME_TYPES: ReadonlySet<number> = new Set<number>(Object.values(FrameType));

/** A batch that cannot be decoded (truncated, unknown format or kind, bad frame type). */
export class BusCodecError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'BusCodecError';
  }
}

function stringBytes(value: string, what: string): number {
  const n = Buffer.byteLength(value, 'utf8');
  if (n > MAX_STRING_BYTES) throw new RangeError(`bus message ${what} is ${n} bytes; at most ${MAX_STRING_BYTES} can be encoded`);
  return n;
}

/** Bytes `message` takes inside a batch (the batch adds one format byte). */
export function encodedSize(message: BusMessage): number {
  switch (message.kind) {
    case 'toSession':
      return 1 + 6 + 2 + stringBytes(message.sessionId, 'sessionId') + 2 + stringBytes(message.replyNode, 'replyNode') + 4 + message.frame.payload.length;
    case 'toIngress':
      return 1 + 6 + 4 + message.frame.payload.length;
    case 'sessionReplaced':
      return 1 + 2 + stringBytes(message.sessionId, 'sessionId');
    case 'closeSession':
      return 1 + 2 + stringBytes(message.sessionId, 'sessionId') + 2;
  }
}

function writeString(out: Buffer, offset: number, value: string): number {
  const n = out.write(value, offset + 2, 'utf8');
  out.writeUInt16BE(n, offset);
  return offset + 2 + n;
}

function writeFrameHead(out: Buffer, offset: number, frame: BusFrame): number {
  out[offset] = frame.type;
  out[offset + 1] = frame.flags;
  out.writeUInt32BE(frame.streamId >>> 0, offset + 2);
  return offset + 6;
}

function writePayload(out: Buffer, offset: number, payload: Uint8Array): number {
  out.writeUInt32BE(payload.length, offset);
  out.set(payload, offset + 4);
  return offset + 4 + payload.length;
}

/** Encodes messages (in order) into one batch. */
export function encodeBatch(messages: readonly BusMessage[]): Buffer {
  let size = 1;
  for (const m of messages) size += encodedSize(m);
  const out = Buffer.allocUnsafe(size);
  out[0] = BATCH_FORMAT;
  let offset = 1;
  for (const m of messages) {
    switch (m.kind) {
      case 'toSession':
        out[offset] = KIND_TO_SESSION;
        offset = writeFrameHead(out, offset + 1, m.frame);
        offset = writeString(out, offset, m.sessionId);
        offset = writeString(out, offset, m.replyNode);
        offset = writePayload(out, offset, m.frame.payload);
        break;
      case 'toIngress':
        out[offset] = KIND_TO_INGRESS;
        offset = writeFrameHead(out, offset + 1, m.frame);
        offset = writePayload(out, offset, m.frame.payload);
        break;
      case 'sessionReplaced':
        out[offset] = KIND_SESSION_REPLACED;
        offset = writeString(out, offset + 1, m.sessionId);
        break;
      case 'closeSession':
        out[offset] = KIND_CLOSE_SESSION;
        offset = writeString(out, offset + 1, m.sessionId);
        out.writeUInt16BE(ERRORS[m.code].wire, offset);
        offset += 2;
        break;
    }
  }
  if (offset !== size) throw new Error(`bus codec wrote ${offset} of ${size} bytes`); // cannot happen: sizes and writes agree
  return out;
}

class Reader {
  offset = 0;
  constructor(private readonly buf: Buffer) {}
  private need(n: number, what: string): void {
    if (this.offset + n > this.buf.length) {
      throw new BusCodecError(`bus batch truncated: ${what} needs ${n} bytes at offset ${this.offset}, only ${this.buf.length - this.offset} left`);
    }
  }
  get done(): boolean {
    return this.offset >= this.buf.length;
  }
  u8(what: string): number {
    this.need(1, what);
    return this.buf[this.offset++] as number;
  }
  u16(what: string): number {
    this.need(2, what);
    const v = this.buf.readUInt16BE(this.offset);
    this.offset += 2;
    return v;
  }
  u32(what: string): number {
    this.need(4, what);
    const v = this.buf.readUInt32BE(this.offset);
    this.offset += 4;
    return v;
  }
  bytes(n: number, what: string): Buffer {
    this.need(n, what);
    const v = this.buf.subarray(this.offset, this.offset + n);
    this.offset += n;
    return v;
  }
  string(what: string): string {
    this.need(2, what);
    const n = this.buf.readUInt16BE(this.offset);
    this.offset += 2;
    return this.bytes(n, what).toString('utf8');
  }
  frame(): BusFrame {
    const type = this.u8('frame type');
    if (!FRAME_TYPES.has(type)) throw new BusCodecError(`bus batch has unknown frame type 0x${type.toString(16)} at offset ${this.offset - 1}`);
    const flags = this.u8('frame flags');
    const streamId = this.u32('stream id');
    return { type: type as FrameType, flags, streamId, payload: EMPTY };
  }
}

const EMPTY = Buffer.alloc(0);

/** Decodes one batch. Throws BusCodecError on anything malformed; never returns part of a bad batch. */
export function decodeBatch(buf: Buffer): BusMessage[] {
  if (buf.length === 0) throw new BusCodecError('bus batch is empty');
  if (buf[0] !== BATCH_FORMAT) throw new BusCodecError(`bus batch has unknown format byte 0x${(buf[0] as number).toString(16)} (expected 0xb1)`);
  const r = new Reader(buf);
  r.offset = 1;
  const out: BusMessage[] = [];
  while (!r.done) {
    const at = r.offset;
    const kind = r.u8('kind');
    switch (kind) {
      case KIND_TO_SESSION: {
        const head = r.frame();
        const sessionId = r.string('sessionId');
        const replyNode = r.string('replyNode');
        const payload = r.bytes(r.u32('payload length'), 'payload');
        out.push({ kind: 'toSession', sessionId, replyNode, frame: { ...head, payload } });
        break;
      }
      case KIND_TO_INGRESS: {
        const head = r.frame();
        const payload = r.bytes(r.u32('payload length'), 'payload');
        out.push({ kind: 'toIngress', frame: { ...head, payload } });
        break;
      }
      case KIND_SESSION_REPLACED:
        out.push({ kind: 'sessionReplaced', sessionId: r.string('sessionId') });
        break;
      case KIND_CLOSE_SESSION: {
        const sessionId = r.string('sessionId');
        out.push({ kind: 'closeSession', sessionId, code: codeFromWire(r.u16('error code')) });
        break;
      }
      default:
        throw new BusCodecError(`bus batch has unknown message kind ${kind} at offset ${at}`);
    }
  }
  return out;
}
