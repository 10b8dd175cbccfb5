/**
 * Payloads of the rare control frames. HELLO, REGISTER and REGISTERED carry small JSON
 * (once per session); ERROR, RESET and GOAWAY carry a u16 error number and a UTF-8 reason;
 * CREDIT carries a u32 byte count. Every decoder validates and throws a coded error.
 */
import { MAX_REASON_BYTES, PROTOCOL_VERSION } from './constants';
import { BurrowError, codeFromWire, ERRORS, type ErrorCode } from './errors';

export interface Reason {
  readonly code: ErrorCode;
  readonly message: string;
}

export function encodeReason(code: ErrorCode, message: string = ERRORS[code].title): Buffer {
  const text = Buffer.from(message, 'utf8');
  let end = Math.min(text.length, MAX_REASON_BYTES);
  // Never cut inside a UTF-8 sequence: back up over the continuation bytes of a split character.
  while (end < text.length && end > 0 && ((text[end] as number) & 0xc0) === 0x80) end--;
  const cut = text.subarray(0, end);
  const buf = Buffer.allocUnsafe(2 + cut.length);
  buf.writeUInt16BE(ERRORS[code].wire, 0);
  buf.set(cut, 2);
  return buf;
}

export function decodeReason(payload: Buffer): Reason {
  if (payload.length < 2) throw new BurrowError('BURROW_ERR_PROTOCOL', 'reason payload shorter than 2 bytes');
  if (payload.length > 2 + MAX_REASON_BYTES) throw new BurrowError('BURROW_ERR_PROTOCOL', 'reason longer than allowed');
  return { code: codeFromWire(payload.readUInt16BE(0)), message: payload.toString('utf8', 2) };
}

export function encodeCredit(bytes: number): Buffer {
  if (!Number.isInteger(bytes) || bytes <= 0 || bytes > 0xffff_ffff) {
    throw new BurrowError('BURROW_ERR_FLOW_CONTROL', `credit of ${bytes} bytes`);
  }
  const buf = Buffer.allocUnsafe(4);
  buf.writeUInt32BE(bytes, 0);
  return buf;
}

export function decodeCredit(payload: Buffer): number {
  if (payload.length !== 4) throw new BurrowError('BURROW_ERR_PROTOCOL', `credit payload of ${payload.length} bytes`);
  const bytes = payload.readUInt32BE(0);
  if (bytes === 0) throw new BurrowError('BURROW_ERR_PROTOCOL', 'credit of 0 bytes');
  return bytes;
}

/** Relay → agent, first frame of every session. */
export interface HelloPayload {
  readonly v: number;
  /** Fresh per connection; the agent must sign it back. */
  readonly nonce: string;
  /** The relay's public base URL, for display. */
  readonly relay: string;
  /** Per-stream window each side starts with. */
  readonly windowBytes: number;
  /** Largest request/response body the relay lets through. */
  readonly maxBodyBytes: number;
  /** The relay pings after this much silence. */
  readonly pingIntervalMs: number;
}

/** Relay → agent, once registration is accepted. */
export interface RegisteredPayload {
  readonly label: string;
  /** Public URL of the key (or session) label. */
  readonly url: string;
  /** Public URL of the friendly name, when one was asked for. */
  readonly subdomainUrl?: string;
  readonly sessionId: string;
  /** tcp://<host>:<port>, when the agent asked for a TCP port. */
  readonly tcpUrl?: string;
  /** The share's name, for a sharing agent (`label` is then `share:<name>` and `url` is empty). */
  readonly share?: string;
}

/** Agent → relay: base64url claims JSON and a detached ed25519 signature over those bytes. */
export interface RegisterPayload {
  readonly claims: string;
  readonly sig: string;
}

export function encodeJson(value: object): Buffer {
  return Buffer.from(JSON.stringify(value), 'utf8');
}

function parseObject(payload: Buffer, what: string, code: ErrorCode): Record<string, unknown> {
  let value: unknown;
  try {
    value = JSON.parse(payload.toString('utf8'));
  } catch {
    throw new BurrowError(code, `${what} is not valid JSON`);
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new BurrowError(code, `${what} is not a JSON object`);
  }
  return value as Record<string, unknown>;
}

function str(obj: Record<string, unknown>, key: string, what: string, code: ErrorCode): string {
  const v = obj[key];
  if (typeof v !== 'string') throw new BurrowError(code, `${what}.${key} must be a string`);
  return v;
}

function posInt(obj: Record<string, unknown>, key: string, what: string, code: ErrorCode): number {
  const v = obj[key];
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v <= 0) throw new BurrowError(code, `${what}.${key} must be a positive integer`);
  return v;
}

export function decodeHello(payload: Buffer): HelloPayload {
  const o = parseObject(payload, 'hello', 'BURROW_ERR_PROTOCOL');
  const v = posInt(o, 'v', 'hello', 'BURROW_ERR_PROTOCOL');
  if (v !== PROTOCOL_VERSION) {
    throw new BurrowError('BURROW_ERR_UNSUPPORTED_VERSION', `relay speaks protocol ${v}, this agent speaks ${PROTOCOL_VERSION}; upgrade the older side`);
  }
  return {
    v,
    nonce: str(o, 'nonce', 'hello', 'BURROW_ERR_PROTOCOL'),
    relay: str(o, 'relay', 'hello', 'BURROW_ERR_PROTOCOL'),
    windowBytes: posInt(o, 'windowBytes', 'hello', 'BURROW_ERR_PROTOCOL'),
    maxBodyBytes: posInt(o, 'maxBodyBytes', 'hello', 'BURROW_ERR_PROTOCOL'),
    pingIntervalMs: posInt(o, 'pingIntervalMs', 'hello', 'BURROW_ERR_PROTOCOL'),
  };
}

export function decodeRegister(payload: Buffer): RegisterPayload {
  const o = parseObject(payload, 'register', 'BURROW_ERR_BAD_REGISTRATION');
  return {
    claims: str(o, 'claims', 'register', 'BURROW_ERR_BAD_REGISTRATION'),
    sig: str(o, 'sig', 'register', 'BURROW_ERR_BAD_REGISTRATION'),
  };
}

export function decodeRegistered(payload: Buffer): RegisteredPayload {
  const o = parseObject(payload, 'registered', 'BURROW_ERR_PROTOCOL');
  const out: RegisteredPayload = {
    label: str(o, 'label', 'registered', 'BURROW_ERR_PROTOCOL'),
    url: str(o, 'url', 'registered', 'BURROW_ERR_PROTOCOL'),
    sessionId: str(o, 'sessionId', 'registered', 'BURROW_ERR_PROTOCOL'),
  };
  return {
    ...out,
    ...(typeof o.subdomainUrl === 'string' ? { subdomainUrl: o.subdomainUrl } : {}),
    ...(typeof o.tcpUrl === 'string' ? { tcpUrl: o.tcpUrl } : {}),
    ...(typeof o.share === 'string' ? { share: o.share } : {}),
  };
}
