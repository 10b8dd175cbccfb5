/**
 * Binary encoding of request and response heads (OPEN and RESPONSE payloads).
 * Strings are latin1, exactly as Node's HTTP parser hands them over, so header bytes
 * travel unchanged. Headers are a flat [name, value, name, value, ...] list: order,
 * case and repeats (two Set-Cookie stay two) are kept.
 */
import { MAX_FRAME_PAYLOAD_BYTES } from './constants';
import { BurrowError } from './errors';
import { StreamKind } from './frameTypes';

export interface RequestHead {
  readonly kind: StreamKind;
  /** HTTP method; empty for TCP. */
  readonly method: string;
  /** Request target (path and raw query) for HTTP/WebSocket; host:port for TCP. */
  readonly target: string;
  /** Flat raw header list. */
  readonly headers: readonly string[];
}

export interface ResponseHead {
  readonly status: number;
  readonly reason: string;
  readonly headers: readonly string[];
}

const MAX_U8 = 0xff;
const MAX_U16 = 0xffff;

function headersBytes(headers: readonly string[]): number {
  if (headers.length % 2 !== 0) throw new BurrowError('BURROW_ERR_BAD_REQUEST', 'header list must hold name/value pairs');
  let n = 2;
  for (let i = 0; i < headers.length; i++) {
    const len = (headers[i] as string).length;
    if (len > MAX_U16) throw new BurrowError('BURROW_ERR_HEADERS_TOO_LARGE', `header field of ${len} bytes`);
    n += 2 + len;
  }
  return n;
}

function writeHeaders(buf: Buffer, offset: number, headers: readonly string[]): number {
  buf.writeUInt16BE(headers.length / 2, offset);
  let o = offset + 2;
  for (let i = 0; i < headers.length; i++) {
    const s = headers[i] as string;
    buf.writeUInt16BE(s.length, o);
    o += 2;
    o += buf.write(s, o, 'latin1');
  }
  return o;
}

class Reader {
  offset = 0;
  constructor(
    private readonly buf: Buffer,
    private readonly what: string,
  ) {}
  private need(n: number): void {
    if (this.offset + n > this.buf.length) {
      throw new BurrowError('BURROW_ERR_PROTOCOL', `${this.what} truncated at byte ${this.offset}`);
    }
  }
  u8(): number {
    this.need(1);
    return this.buf[this.offset++] as number;
  }
  u16(): number {
    this.need(2);
    const v = this.buf.readUInt16BE(this.offset);
    this.offset += 2;
    return v;
  }
  str(len: number): string {
    this.need(len);
    const s = this.buf.toString('latin1', this.offset, this.offset + len);
    this.offset += len;
    return s;
  }
  headers(): string[] {
    const pairs = this.u16();
    // Every field takes at least its 2-byte length: a count the remaining bytes cannot hold is
    // refused before a list is allocated for it (else 6 hostile bytes cost a 131070-slot array).
    const left = this.buf.length - this.offset;
    if (pairs * 4 > left) {
      throw new BurrowError('BURROW_ERR_PROTOCOL', `${this.what} declares ${pairs * 2} header fields in ${left} bytes`);
    }
    const out = new Array<string>(pairs * 2);
    for (let i = 0; i < pairs * 2; i++) out[i] = this.str(this.u16());
    return out;
  }
  done(): void {
    if (this.offset !== this.buf.length) {
      throw new BurrowError('BURROW_ERR_PROTOCOL', `${this.what} has ${this.buf.length - this.offset} trailing bytes`);
    }
  }
}

function checkSize(size: number): void {
  if (size > MAX_FRAME_PAYLOAD_BYTES) {
    throw new BurrowError('BURROW_ERR_HEADERS_TOO_LARGE', `head of ${size} bytes exceeds ${MAX_FRAME_PAYLOAD_BYTES}`);
  }
}

export function encodeRequestHead(head: RequestHead): Buffer {
  const { method, target } = head;
  if (method.length > MAX_U8) throw new BurrowError('BURROW_ERR_BAD_REQUEST', 'method longer than 255 bytes');
  if (target.length > MAX_U16) throw new BurrowError('BURROW_ERR_HEADERS_TOO_LARGE', 'request target longer than 65535 bytes');
  const size = 1 + 1 + method.length + 2 + target.length + headersBytes(head.headers);
  checkSize(size);
  const buf = Buffer.allocUnsafe(size);
  buf[0] = head.kind;
  buf[1] = method.length;
  let o = 2 + buf.write(method, 2, 'latin1');
  buf.writeUInt16BE(target.length, o);
  o += 2;
  o += buf.write(target, o, 'latin1');
  writeHeaders(buf, o, head.headers);
  return buf;
}

export function decodeRequestHead(payload: Buffer): RequestHead {
  const r = new Reader(payload, 'request head');
  const kind = r.u8();
  if (kind !== StreamKind.HTTP && kind !== StreamKind.WEBSOCKET && kind !== StreamKind.TCP) {
    throw new BurrowError('BURROW_ERR_PROTOCOL', `unknown stream kind ${kind}`);
  }
  const method = r.str(r.u8());
  const target = r.str(r.u16());
  const headers = r.headers();
  r.done();
  return { kind, method, target, headers };
}

export function encodeResponseHead(head: ResponseHead): Buffer {
  if (!Number.isInteger(head.status) || head.status < 100 || head.status > 999) {
    throw new BurrowError('BURROW_ERR_LOCAL_ERROR', `invalid status ${head.status}`);
  }
  const reason = head.reason.length > MAX_U8 ? head.reason.slice(0, MAX_U8) : head.reason;
  const size = 2 + 1 + reason.length + headersBytes(head.headers);
  checkSize(size);
  const buf = Buffer.allocUnsafe(size);
  buf.writeUInt16BE(head.status, 0);
  buf[2] = reason.length;
  const o = 3 + buf.write(reason, 3, 'latin1');
  writeHeaders(buf, o, head.headers);
  return buf;
}

export function decodeResponseHead(payload: Buffer): ResponseHead {
  const r = new Reader(payload, 'response head');
  const status = r.u16();
  if (status < 100 || status > 999) throw new BurrowError('BURROW_ERR_PROTOCOL', `invalid status ${status}`);
  const reason = r.str(r.u8());
  const headers = r.headers();
  r.done();
  return { status, reason, headers };
}
