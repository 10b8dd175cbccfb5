/**
 * Hostile agents against one live relay. A property-based run sends thousands of generated frame
 * sequences (random bytes, mutated and lying frames, frames for streams the agent does not own,
 * credit abuse, stray heads, session frames, text messages) through raw WebSocket agents, before
 * and after registration, with public requests in flight. A model of the relay's session rules
 * (written from docs/PROTOCOL.md) says for each sequence whether the relay must keep the session
 * or close it, and with which code; the relay must do exactly that, answer every public request
 * with a coded error or what the agent validly sent, log the close with its code, and return to
 * the streams the control tunnel holds. A real tunnel on the same relay keeps serving throughout.
 * Named tests pin each kind of attack with its exact code.
 *
 * BURROW_FUZZ_SEED=<n> replays a run (the seed is in the suite title and in any failure);
 * BURROW_FUZZ_RUNS=<n> sets the sequences of each generated batch, for deep runs on demand.
 */
import { randomBytes } from 'node:crypto';
import http from 'node:http';
import net from 'node:net';
import {
  decodeHello,
  decodeReason,
  decodeRegistered,
  decodeResponseHead,
  ERRORS,
  type ErrorCode,
  encodeConnectRequest,
  encodeCredit,
  encodeFrame,
  encodeJson,
  encodeReason,
  encodeResponseHead,
  FLAG_FIN,
  type Frame,
  FrameType,
  isErrorCode,
  type KeyPair,
  labelFor,
  signRegistration,
} from '@burrow/protocol';
import type { Relay } from '@burrow/relay';
import fc from 'fast-check';
import Fastify from 'fastify';
import { cleanup, cleanups, hostOf, newKey, RawAgent, startApp, startRelay, startTunnel, waitFor } from '../kit';

afterEach(cleanup);

const SEED = process.env.BURROW_FUZZ_SEED !== undefined ? Number(process.env.BURROW_FUZZ_SEED) : Math.floor(Math.random() * 0x7fff_ffff);
const RUNS = process.env.BURROW_FUZZ_RUNS !== undefined ? Number(process.env.BURROW_FUZZ_RUNS) : undefined;

/** Small limits, so that windows and body caps are cheap to hit. */
const WINDOW_BYTES = 4096;
const MAX_BODY_BYTES = 16_384;
const FUZZ_CONFIG = {
  requestTimeoutMs: 3000,
  streamWindowBytes: WINDOW_BYTES,
  maxBodyBytes: MAX_BODY_BYTES,
  // No relay PINGs in the middle of a sequence: every PONG the agent gets answers one of its PINGs.
  pingIntervalMs: 60_000,
  maxStreamsPerTunnel: 8,
  registrationTimeoutMs: 3000,
  // A dropped agent's label is waited for this long: short, so that a case's leftovers answer fast.
  reconnectGraceMs: 200,
};

type LogLine = Record<string, unknown>;

/** A relay whose log lines are kept, plus a control tunnel (real agent and app) on it. */
async function relayWithControl(overrides: Record<string, unknown> = FUZZ_CONFIG) {
  const lines: LogLine[] = [];
  const logger = Fastify({ logger: { level: 'info', stream: { write: (l: string) => lines.push(JSON.parse(l) as LogLine) } } }).log;
  const started = await startRelay(overrides, undefined, { logger });
  const { port: appPort } = await startApp((req, res) => res.end(`control ok ${req.url}`));
  const control = await startTunnel(started.url, appPort);
  const base = started.relay.stats();
  /** The control tunnel answers, byte-exact. */
  const checkControl = async (): Promise<void> => {
    const r = await publicGet(started.port, hostOf(control.url), '/check');
    expect(r).toMatchObject({ status: 200, body: 'control ok /check' });
  };
  /** Everything a hostile case opened is gone again: only the control tunnel's session is left. */
  const settle = (what: string): Promise<void> =>
    soon(
      () => {
        const s = started.relay.stats();
        return s.sessions === base.sessions && s.activeSessions === base.activeSessions && s.ingressStreams === 0 && s.agentStreams === 0;
      },
      5000,
      () => `relay back to the control tunnel only (${what}): ${JSON.stringify(started.relay.stats())}`,
    );
  /** Every stream a case opened has ended (its agents may still be connected). */
  const streamsDone = (what: string): Promise<void> =>
    soon(
      () => started.relay.stats().ingressStreams === 0 && started.relay.stats().agentStreams === 0,
      5000,
      () => `streams released (${what}): ${JSON.stringify(started.relay.stats())}`,
    );
  return { ...started, lines, control, checkControl, settle, streamsDone };
}

interface PublicOutcome {
  readonly status?: number;
  readonly code?: string;
  readonly body?: string;
  /** The connection failed or the response was cut. */
  readonly error?: string;
}

/** A GET to the relay that never rejects: status, x-burrow-error and body, or how it failed. Over 8 s is a hang. */
function publicGet(port: number, host: string, path = '/'): Promise<PublicOutcome> {
  return new Promise((resolve) => {
    const timer = setTimeout(() => {
      req.destroy();
      resolve({ error: 'no answer within 8 s' });
    }, 8000);
    const done = (o: PublicOutcome): void => {
      clearTimeout(timer);
      resolve(o);
    };
    const req = http.request({ host: '127.0.0.1', port, path, headers: { host }, agent: false }, (res) => {
      const parts: Buffer[] = [];
      const code = res.headers['x-burrow-error'] as string | undefined;
      res.on('data', (c: Buffer) => parts.push(c));
      res.on('end', () => done({ status: res.statusCode, ...(code !== undefined ? { code } : {}), body: Buffer.concat(parts).toString('latin1') }));
      res.on('error', (err) => done({ status: res.statusCode, error: err.message }));
    });
    req.on('error', (err) => done({ error: err.message }));
    req.end();
  });
}

/** A registered raw agent and its label. */
async function registered(relayUrl: string, key: KeyPair = newKey(), tweak: Parameters<RawAgent['register']>[2] = {}) {
  const agent = await RawAgent.open(relayUrl);
  await agent.register(key, relayUrl, tweak);
  const reg = decodeRegistered((await agent.next(FrameType.REGISTERED)).payload);
  return { agent, label: reg.label, key };
}

/** The relay refused with `code`: an ERROR frame with it, then a close with its close code and the code as reason. */
async function expectCodedClose(agent: RawAgent, code: ErrorCode): Promise<string> {
  const err = decodeReason((await agent.next(FrameType.ERROR)).payload);
  expect(err.code).toBe(code);
  expect(await agent.closed()).toBe(ERRORS[code].close);
  expect(agent.closeReason).toBe(code);
  return err.message;
}

/** The session is alive and reading: a PING with a fresh payload comes back as its PONG (other frames stay). */
async function probe(agent: RawAgent, timeoutMs = 3000): Promise<void> {
  const stamp = randomBytes(8);
  const mine = (f: Frame): boolean => f.type === FrameType.PONG && f.payload.equals(stamp);
  agent.send(encodeFrame(FrameType.PING, 0, 0, stamp));
  await agent.until(() => agent.frames.some(mine) || agent.closeCode !== undefined, timeoutMs, 'the probe PONG');
  expect(agent.closeCode).toBeUndefined();
  agent.frames.splice(agent.frames.findIndex(mine), 1);
}

/** Polls `check` every millisecond until it holds (settling after a case is usually a few ms). */
async function soon(check: () => boolean, timeoutMs: number, what: () => string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what()}`);
    await new Promise((r) => setTimeout(r, 1));
  }
}

const hostFor = (label: string, port: number): string => `${label}.localhost:${port}`;
const header = (type: number, flags: number, id: number, length: number): Buffer => {
  const h = Buffer.alloc(10);
  h[0] = type;
  h[1] = flags;
  h.writeUInt32BE(id >>> 0, 2);
  h.writeUInt32BE(length >>> 0, 6);
  return h;
};
const statusOf = (code: ErrorCode): number => (ERRORS[code].status === 499 ? 502 : ERRORS[code].status);

// =============================================================================================
// The model: what the relay must do with a sequence of messages from one agent session, from the
// rules in docs/PROTOCOL.md (header checks, who may send what, which ids an agent may address).

const AGENT_TYPES = [0x02, 0x04, 0x05, 0x06, 0x07, 0x10, 0x11, 0x12, 0x13, 0x14, 0x15];
const STREAM_TYPES = [0x10, 0x11, 0x12, 0x13, 0x14, 0x15];
const FIN_TYPES = [0x10, 0x11, 0x12];
const FRAME_CAP = 65_536;
const WIRE_TO_CODE = new Map<number, ErrorCode>(Object.entries(ERRORS).map(([code, spec]) => [spec.wire, code as ErrorCode]));
/** Codes a refused registration may carry. */
const REGISTRATION_CODES: ErrorCode[] = [
  'BURROW_ERR_BAD_REGISTRATION',
  'BURROW_ERR_UNSUPPORTED_VERSION',
  'BURROW_ERR_BAD_SIGNATURE',
  'BURROW_ERR_NONCE_REPLAYED',
  'BURROW_ERR_TOKEN_EXPIRED',
  'BURROW_ERR_WRONG_AUDIENCE',
  'BURROW_ERR_INVALID_NAME',
];
/** RESET codes after which the relay sends a GET once more: left out of generated RESETs (a named test covers them). */
const RESEND_WIRES = new Set([ERRORS.BURROW_ERR_SESSION_GONE.wire, ERRORS.BURROW_ERR_NODE_UNREACHABLE.wire]);

/** A reason payload as the spec reads it: undefined when malformed. */
function specReason(payload: Buffer): ErrorCode | undefined {
  if (payload.length < 2 || payload.length > 2 + 1024) return undefined;
  return WIRE_TO_CODE.get(payload.readUInt16BE(0)) ?? 'BURROW_ERR_INTERNAL';
}

type Message = { readonly text: true } | { readonly text?: false; readonly bytes: Buffer; readonly tags: ReadonlyMap<number, number> };

interface ProcessedFrame {
  readonly type: number;
  readonly flags: number;
  readonly payload: Buffer;
  /** Index of the generating step (-1 when the bytes only parse as a frame by accident). */
  readonly step: number;
}

interface Expectation {
  /** keep: the session must stay; close: closed with one of `codes`, by the relay (ERROR frame first) or at the agent's word. */
  readonly outcome: 'keep' | 'close';
  readonly codes: readonly ErrorCode[];
  readonly by: 'relay' | 'agent';
  /** PONG payloads the relay owes, in order. */
  readonly pongs: Buffer[];
  /** Frames the relay processed on each stream id, before any session-ending one. */
  readonly processed: Map<number, ProcessedFrame[]>;
  /** Frames processed in all. */
  readonly frames: number;
}

function modelSession(messages: readonly Message[], registeredSession: boolean, nextStreamId: number): Expectation {
  const pongs: Buffer[] = [];
  const processed = new Map<number, ProcessedFrame[]>();
  let frames = 0;
  const close = (codes: readonly ErrorCode[], by: 'relay' | 'agent' = 'relay'): Expectation => ({ outcome: 'close', codes, by, pongs, processed, frames });
  const onFrame = (type: number, flags: number, id: number, payload: Buffer, step: number): Expectation | undefined => {
    frames++;
    if (!registeredSession) {
      if (type === FrameType.ERROR || type === FrameType.GOAWAY) {
        const code = specReason(payload);
        return code === undefined ? close(['BURROW_ERR_PROTOCOL']) : close([code], 'agent');
      }
      // Generated sequences never carry a valid registration before one is made.
      if (type === FrameType.REGISTER) return close(REGISTRATION_CODES);
      return close(['BURROW_ERR_PROTOCOL']);
    }
    switch (type) {
      case FrameType.PING:
        pongs.push(payload);
        return undefined;
      case FrameType.PONG:
        return undefined;
      case FrameType.GOAWAY: {
        const code = specReason(payload);
        return code === undefined ? close(['BURROW_ERR_PROTOCOL']) : close(['BURROW_ERR_AGENT_SHUTDOWN'], 'agent');
      }
      case FrameType.ERROR: {
        const code = specReason(payload);
        return code === undefined ? close(['BURROW_ERR_PROTOCOL']) : close([code], 'agent');
      }
      case FrameType.REGISTER:
        return close(['BURROW_ERR_PROTOCOL']);
      default:
        // Stream frames. An HTTP agent opens nothing and owns no even id; odd ids are the relay's:
        // at or past the next one it allocates is a lie, below it a stream it opened (live or ended).
        if (id % 2 === 0 || type === FrameType.OPEN || id >= nextStreamId) return close(['BURROW_ERR_PROTOCOL']);
        processed.set(id, [...(processed.get(id) ?? []), { type, flags, payload, step }]);
        return undefined;
    }
  };
  for (const m of messages) {
    if (m.text === true) return close(['BURROW_ERR_PROTOCOL']);
    const { bytes, tags } = m;
    let at = 0;
    while (at < bytes.length) {
      if (bytes.length - at < 10) return close(['BURROW_ERR_PROTOCOL']);
      const type = bytes[at] as number;
      const flags = bytes[at + 1] as number;
      const id = bytes.readUInt32BE(at + 2);
      const length = bytes.readUInt32BE(at + 6);
      if (!AGENT_TYPES.includes(type)) return close(['BURROW_ERR_PROTOCOL']);
      if ((flags & ~(FIN_TYPES.includes(type) ? 1 : 0)) !== 0) return close(['BURROW_ERR_PROTOCOL']);
      if (STREAM_TYPES.includes(type) === (id === 0)) return close(['BURROW_ERR_PROTOCOL']);
      if (length > FRAME_CAP) return close(['BURROW_ERR_FRAME_TOO_LARGE']);
      if (at + 10 + length > bytes.length) return close(['BURROW_ERR_PROTOCOL']);
      const r = onFrame(type, flags, id, bytes.subarray(at + 10, at + 10 + length), tags.get(at) ?? -1);
      if (r !== undefined) return r;
      at += 10 + length;
    }
  }
  return { outcome: 'keep', codes: [], by: 'relay', pongs, processed, frames };
}

// =============================================================================================
// Generators: abstract steps, resolved against the streams a case actually has open.

type IdRef = { k: 'open'; i: number } | { k: 'next'; d: number } | { k: 'old'; d: number } | { k: 'even'; n: number } | { k: 'zero' } | { k: 'any'; v: number };
type Payload =
  | { k: 'bytes'; b: Uint8Array }
  | { k: 'head'; status: number; headers: string[] }
  | { k: 'headCL'; status: number; declared: number }
  | { k: 'data'; n: number }
  | { k: 'credit'; v: number }
  | { k: 'reason'; code: ErrorCode; message: string };
type Step =
  | { k: 'frame'; type: number; flags: number; id: IdRef; payload: Payload; lie?: number; newMessage: boolean }
  /** A well-formed response on an open stream: head, body chunks, end. */
  | { k: 'clean'; i: number; status: number; chunks: number[]; withLength: boolean; fin: boolean; newMessage: boolean }
  | { k: 'raw'; b: Uint8Array; newMessage: boolean }
  | { k: 'text' };

const u32 = fc.integer({ min: 0, max: 0xffff_ffff });
const bytesUpTo = (n: number) => fc.uint8Array({ maxLength: n });
const reasonCode = fc.constantFrom(...(Object.keys(ERRORS) as ErrorCode[]).filter((c) => !RESEND_WIRES.has(ERRORS[c].wire)));
const headerName = fc.stringMatching(/^[A-Za-z][A-Za-z0-9-]{0,15}$/).filter((n) => !/^(content-length|transfer-encoding|connection|x-burrow-error)$/i.test(n));
const headerValue = fc.stringMatching(/^[ -~]{0,24}$/).map((v) => v.trim());
const httpStatus = fc.oneof(fc.constantFrom(200, 201, 302, 404, 500, 503), fc.integer({ min: 100, max: 999 }));

function payloadFor(type: number): fc.Arbitrary<Payload> {
  const raw = bytesUpTo(40).map((b): Payload => ({ k: 'bytes', b }));
  const reason = fc.oneof(
    { weight: 4, arbitrary: fc.record({ k: fc.constant('reason' as const), code: reasonCode, message: fc.string({ maxLength: 30 }) }) },
    { weight: 1, arbitrary: raw },
  );
  switch (type) {
    case FrameType.RESPONSE:
      return fc.oneof(
        {
          weight: 3,
          arbitrary: fc.record({
            k: fc.constant('head' as const),
            status: httpStatus,
            headers: fc.array(fc.tuple(headerName, headerValue), { maxLength: 4 }).map((p) => p.flat()),
          }),
        },
        {
          weight: 2,
          arbitrary: fc.record({ k: fc.constant('headCL' as const), status: fc.constantFrom(200, 404), declared: fc.integer({ min: 0, max: 5000 }) }),
        },
        { weight: 1, arbitrary: raw },
      );
    case FrameType.DATA:
      return fc.oneof(
        { weight: 4, arbitrary: fc.integer({ min: 0, max: 300 }).map((n): Payload => ({ k: 'data', n })) },
        { weight: 1, arbitrary: fc.integer({ min: 3000, max: 6000 }).map((n): Payload => ({ k: 'data', n })) },
      );
    case FrameType.CREDIT:
      return fc.oneof(
        { weight: 3, arbitrary: fc.oneof(u32, fc.constantFrom(0, 1, 0x7fff_ffff, 0x8000_0000, 0xffff_ffff)).map((v): Payload => ({ k: 'credit', v })) },
        { weight: 1, arbitrary: raw },
      );
    case FrameType.RESET:
    case FrameType.ERROR:
    case FrameType.GOAWAY:
      return reason;
    case FrameType.END:
      return fc.oneof({ weight: 5, arbitrary: fc.constant<Payload>({ k: 'bytes', b: new Uint8Array(0) }) }, { weight: 1, arbitrary: raw });
    default:
      return raw;
  }
}

/** One frame; `streamOnly` keeps to frames that are valid at the session level (for sessions meant to survive). */
function frameStep(streamOnly: boolean): fc.Arbitrary<Step> {
  const type = streamOnly
    ? fc.constantFrom(FrameType.RESPONSE, FrameType.DATA, FrameType.DATA, FrameType.CREDIT, FrameType.END, FrameType.RESET, FrameType.PING, FrameType.PONG)
    : fc.oneof(
        { weight: 10, arbitrary: fc.constantFrom(FrameType.RESPONSE, FrameType.DATA, FrameType.CREDIT, FrameType.END, FrameType.RESET, FrameType.OPEN) },
        { weight: 4, arbitrary: fc.constantFrom(FrameType.PING, FrameType.PONG, FrameType.ERROR, FrameType.GOAWAY, FrameType.REGISTER) },
        { weight: 1, arbitrary: fc.integer({ min: 0, max: 255 }) },
      );
  const streamId: fc.Arbitrary<IdRef> = streamOnly
    ? fc.oneof(
        { weight: 5, arbitrary: fc.record({ k: fc.constant('open' as const), i: fc.nat(3) }) },
        { weight: 2, arbitrary: fc.record({ k: fc.constant('old' as const), d: fc.nat(6) }) },
      )
    : fc.oneof(
        { weight: 12, arbitrary: fc.record({ k: fc.constant('open' as const), i: fc.nat(3) }) },
        { weight: 1, arbitrary: fc.record({ k: fc.constant('next' as const), d: fc.nat(2) }) },
        { weight: 1, arbitrary: fc.record({ k: fc.constant('even' as const), n: fc.nat(5) }) },
        { weight: 1, arbitrary: fc.constant<IdRef>({ k: 'zero' }) },
        { weight: 1, arbitrary: fc.record({ k: fc.constant('any' as const), v: u32 }) },
      );
  // Session frames go on stream 0, bar the odd lie.
  const sessionId: fc.Arbitrary<IdRef> = streamOnly
    ? fc.constant({ k: 'zero' })
    : fc.oneof(
        { weight: 12, arbitrary: fc.constant<IdRef>({ k: 'zero' }) },
        { weight: 1, arbitrary: fc.record({ k: fc.constant('open' as const), i: fc.nat(3) }) },
      );
  return type.chain((t) =>
    fc.record({
      k: fc.constant('frame' as const),
      type: fc.constant(t),
      flags: FIN_TYPES.includes(t) ? fc.constantFrom(0, FLAG_FIN) : fc.constant(0),
      id: STREAM_TYPES.includes(t) ? streamId : sessionId,
      payload: payloadFor(t),
      newMessage: fc.boolean(),
    }),
  );
}

/** Header-level damage: random flags, a lying length. */
const damagedFrameStep: fc.Arbitrary<Step> = fc
  .tuple(
    frameStep(false),
    fc.integer({ min: 0, max: 255 }),
    fc.oneof(u32, fc.integer({ min: -8, max: 8 }), fc.constantFrom(FRAME_CAP, FRAME_CAP + 1)),
    fc.boolean(),
  )
  .map(([s, flags, lie, flagsOnly]) => (s.k !== 'frame' ? s : flagsOnly ? { ...s, flags } : { ...s, lie }));

const cleanStep: fc.Arbitrary<Step> = fc.record({
  k: fc.constant('clean' as const),
  i: fc.nat(3),
  status: fc.constantFrom(200, 201, 404, 418, 500, 503),
  chunks: fc.array(fc.integer({ min: 1, max: 1200 }), { maxLength: 3 }),
  withLength: fc.boolean(),
  fin: fc.boolean(),
  newMessage: fc.boolean(),
});

const hostileStep: fc.Arbitrary<Step> = fc.oneof(
  { weight: 10, arbitrary: frameStep(false) },
  { weight: 3, arbitrary: cleanStep },
  { weight: 2, arbitrary: damagedFrameStep },
  { weight: 1, arbitrary: fc.record({ k: fc.constant('raw' as const), b: fc.uint8Array({ minLength: 1, maxLength: 40 }), newMessage: fc.boolean() }) },
  { weight: 1, arbitrary: fc.constant<Step>({ k: 'text' }) },
);

interface Scenario {
  readonly registered: boolean;
  readonly requests: number;
  readonly steps: readonly Step[];
}
const scenario: fc.Arbitrary<Scenario> = fc.oneof(
  {
    weight: 5,
    arbitrary: fc.record({
      registered: fc.constant(true),
      requests: fc.integer({ min: 0, max: 2 }),
      steps: fc.array(hostileStep, { minLength: 1, maxLength: 7 }),
    }),
  },
  {
    weight: 1,
    arbitrary: fc.record({ registered: fc.constant(false), requests: fc.constant(0), steps: fc.array(hostileStep, { minLength: 1, maxLength: 4 }) }),
  },
);

/** What a case knows when it turns steps into bytes. */
interface Resolve {
  readonly opened: readonly number[];
  readonly nextStreamId: number;
}

function resolveId(ref: IdRef, r: Resolve): number {
  switch (ref.k) {
    case 'open':
      return r.opened.length > 0 ? (r.opened[ref.i % r.opened.length] as number) : r.nextStreamId;
    case 'next':
      return r.nextStreamId + 2 * ref.d;
    case 'old': {
      const id = r.nextStreamId - 2 * (ref.d + 1);
      return id >= 1 && !r.opened.includes(id) ? id : r.opened.length > 0 ? (r.opened[0] as number) : r.nextStreamId;
    }
    case 'even':
      return 2 * ref.n + 2;
    case 'zero':
      return 0;
    case 'any':
      return ref.v;
  }
}

function payloadBytes(p: Payload, type: number): Buffer {
  let out: Buffer;
  switch (p.k) {
    case 'bytes':
      out = Buffer.from(p.b);
      break;
    case 'head':
      out = encodeResponseHead({ status: p.status, reason: 'R', headers: p.headers });
      break;
    case 'headCL':
      out = encodeResponseHead({ status: p.status, reason: 'OK', headers: ['Content-Length', String(p.declared)] });
      break;
    case 'data':
      out = Buffer.alloc(p.n, 0x61);
      break;
    case 'credit':
      out = Buffer.alloc(4);
      out.writeUInt32BE(p.v, 0);
      break;
    case 'reason':
      out = encodeReason(p.code, p.message);
      break;
  }
  // Keep generated RESETs away from the two codes that make the relay send a GET again.
  if (type === FrameType.RESET && out.length >= 2 && RESEND_WIRES.has(out.readUInt16BE(0))) out.writeUInt16BE(ERRORS.BURROW_ERR_LOCAL_ERROR.wire, 0);
  return out;
}

interface Built {
  readonly messages: Message[];
  /** For each clean step: its stream id, status and body; checked against the public response. */
  readonly clean: Map<number, { id: number; status: number; body: Buffer; frames: number }>;
  readonly frameCount: number;
}

function build(steps: readonly Step[], r: Resolve): Built {
  const messages: Message[] = [];
  const clean = new Map<number, { id: number; status: number; body: Buffer; frames: number }>();
  let parts: Buffer[] = [];
  let size = 0;
  let tags = new Map<number, number>();
  let frameCount = 0;
  const flush = (): void => {
    if (parts.length > 0) messages.push({ bytes: Buffer.concat(parts), tags });
    parts = [];
    size = 0;
    tags = new Map();
  };
  const put = (b: Buffer, step: number): void => {
    if (step >= 0) tags.set(size, step);
    parts.push(b);
    size += b.length;
  };
  steps.forEach((s, n) => {
    if (s.k === 'text') {
      flush();
      messages.push({ text: true });
      return;
    }
    if (s.newMessage) flush();
    if (s.k === 'raw') {
      put(Buffer.from(s.b), -1);
      return;
    }
    if (s.k === 'clean') {
      const id = resolveId({ k: 'open', i: s.i }, r);
      const body = Buffer.concat(s.chunks.map((c, j) => Buffer.alloc(c, 0x41 + j)));
      const headers = s.withLength ? ['Content-Length', String(body.length)] : ['X-Clean', 'yes'];
      const head = encodeResponseHead({ status: s.status, reason: 'OK', headers });
      const finOnHead = s.fin && s.chunks.length === 0;
      put(encodeFrame(FrameType.RESPONSE, finOnHead ? FLAG_FIN : 0, id, head), n);
      let frames = 1;
      s.chunks.forEach((c, j) => {
        const last = j === s.chunks.length - 1;
        put(encodeFrame(FrameType.DATA, s.fin && last ? FLAG_FIN : 0, id, Buffer.alloc(c, 0x41 + j)), n);
        frames++;
      });
      if (!s.fin) {
        put(encodeFrame(FrameType.END, 0, id), n);
        frames++;
      }
      frameCount += frames;
      clean.set(n, { id, status: s.status, body, frames });
      return;
    }
    const payload = payloadBytes(s.payload, s.type);
    const length = s.lie === undefined ? payload.length : s.lie >= -8 && s.lie <= 8 ? Math.max(0, payload.length + s.lie) : s.lie;
    put(Buffer.concat([header(s.type, s.flags, resolveId(s.id, r), length), payload]), n);
    frameCount++;
  });
  flush();
  return { messages, clean, frameCount };
}

/** Sends the messages in order; text messages as text. */
function sendAll(agent: RawAgent, messages: readonly Message[]): void {
  for (const m of messages) {
    if (m.text === true) agent.ws.send('{"type":"hello"}');
    else agent.ws.send(m.bytes);
  }
}

/** The session did what the model said: kept (and answering), or closed with a coded close. */
async function checkSession(agent: RawAgent, expected: Expectation, registeredSession: boolean): Promise<void> {
  if (expected.outcome === 'keep') {
    if (registeredSession) await probe(agent);
  } else {
    await agent.until(() => agent.closeCode !== undefined, 5000, 'the coded close');
    const reason = agent.closeReason as ErrorCode;
    expect(expected.codes).toContain(reason);
    expect(agent.closeCode).toBe(ERRORS[reason].close);
    const errors = agent.frames.filter((f) => f.type === FrameType.ERROR).map((f) => decodeReason(f.payload).code);
    // The relay says why before it closes; when the agent said it (ERROR, GOAWAY), the relay just closes.
    expect(errors).toStrictEqual(expected.by === 'relay' ? [reason] : []);
  }
  const pongs = agent.frames.filter((f) => f.type === FrameType.PONG).map((f) => f.payload.toString('hex'));
  expect(pongs).toStrictEqual(expected.pongs.map((p) => p.toString('hex')));
}

/** A public request whose stream the agent treated as `frames`: answered by a coded error, or by what the agent validly sent. */
function checkPublic(outcome: PublicOutcome, frames: readonly ProcessedFrame[], clean: { status: number; body: Buffer; frames: number } | undefined): void {
  expect(outcome.error).not.toBe('no answer within 8 s');
  const heads = frames.filter((f) => f.type === FrameType.RESPONSE);
  if (clean !== undefined) {
    expect(outcome).toStrictEqual({ status: clean.status, body: clean.body.toString('latin1') });
    return;
  }
  if (outcome.error !== undefined) {
    // Cut mid-response: only after a head went out.
    expect(heads.length).toBeGreaterThan(0);
    return;
  }
  if (outcome.code !== undefined) {
    expect(isErrorCode(outcome.code)).toBe(true);
    expect(outcome.status).toBe(statusOf(outcome.code as ErrorCode));
    return;
  }
  // No relay error: the status is one the agent sent in a head on this stream.
  const statuses = heads.flatMap((h) => {
    try {
      return [decodeResponseHead(h.payload).status];
    } catch {
      return [];
    }
  });
  expect(statuses).toContain(outcome.status);
}

// =============================================================================================

describe(`hostile agents, generated (seed ${SEED})`, () => {
  const uncaught: unknown[] = [];
  const onUncaught = (err: unknown): void => {
    uncaught.push(err);
  };
  const totals = { sequences: 0, frames: 0, processed: 0, closes: 0, keeps: 0 };
  beforeAll(() => {
    process.on('uncaughtException', onUncaught);
    process.on('unhandledRejection', onUncaught);
  });
  afterAll(() => {
    process.off('uncaughtException', onUncaught);
    process.off('unhandledRejection', onUncaught);
    process.stdout.write(
      `hostile agents: ${totals.sequences} sequences, ${totals.frames} frames generated (${totals.processed} reached the session logic), ` +
        `${totals.closes} coded closes, ${totals.keeps} kept; BURROW_FUZZ_SEED=${SEED}\n`,
    );
  });
  afterEach(() => expect(uncaught).toStrictEqual([]));

  test('hostile sequences before and after registration: kept, or that session alone closed with the right code; requests answered; nothing leaks', async () => {
    const r = await relayWithControl();
    let cases = 0;
    let lastNonce = '';
    await fc.assert(
      fc.asyncProperty(scenario, async (sc) => {
        cases++;
        const logFrom = r.lines.length;
        const agent = await RawAgent.open(r.url);
        let opened: number[] = [];
        const requests: Promise<PublicOutcome>[] = [];
        if (sc.registered) {
          const key = newKey();
          await agent.register(key, r.url);
          const label = decodeRegistered((await agent.next(FrameType.REGISTERED)).payload).label;
          for (let j = 0; j < sc.requests; j++) {
            requests.push(publicGet(r.port, hostFor(label, r.port), `/case${cases}/${j}`));
            opened.push((await agent.next(FrameType.OPEN)).streamId);
          }
          // The relay allocates odd ids from 1, one per OPEN.
          expect(opened).toStrictEqual(opened.map((_, j) => 1 + 2 * j));
        } else {
          lastNonce = decodeHello((await agent.next(FrameType.HELLO)).payload).nonce;
        }
        opened = [...opened];
        const nextStreamId = 1 + 2 * opened.length;
        const built = build(sc.steps, { opened, nextStreamId });
        const expected = modelSession(built.messages, sc.registered, nextStreamId);
        sendAll(agent, built.messages);
        await checkSession(agent, expected, sc.registered);
        if (!sc.registered && expected.outcome === 'keep') {
          // Nothing reached the relay (empty messages): the registration still works.
          agent.send(
            encodeFrame(
              FrameType.REGISTER,
              0,
              0,
              encodeJson(signRegistration({ secretKey: newKey().secretKey, nonce: lastNonce, audience: r.url, nowMs: Date.now() })),
            ),
          );
          await agent.next(FrameType.REGISTERED);
        }
        if (expected.outcome === 'close') {
          // That close left a log line with its code (the agent's own code when it said goodbye).
          const logged = (l: LogLine): boolean => (expected.by === 'relay' ? l.code === agent.closeReason : isErrorCode(l.code));
          await soon(
            () => r.lines.slice(logFrom).some(logged),
            2000,
            () => `a log line with ${agent.closeReason}`,
          );
        }
        agent.ws.terminate();
        const outcomes = await Promise.all(requests);
        outcomes.forEach((o, j) => {
          const id = opened[j] as number;
          const frames = expected.processed.get(id) ?? [];
          const cleanStep = [...built.clean.entries()].find(([, c]) => c.id === id);
          // Clean only if the relay processed exactly that step's frames on this stream, all of them.
          const isClean = cleanStep !== undefined && frames.length === cleanStep[1].frames && frames.every((f) => f.step === cleanStep[0]);
          checkPublic(o, frames, isClean ? cleanStep[1] : undefined);
        });
        await r.settle(`case ${cases}`);
        if (cases % 25 === 0) await r.checkControl();
        totals.sequences++;
        totals.frames += built.frameCount;
        totals.processed += expected.frames;
        if (expected.outcome === 'close') totals.closes++;
        else totals.keeps++;
      }),
      { seed: SEED, numRuns: RUNS ?? 400 },
    );
    await r.checkControl();
    expect(r.lines.filter((l) => (l.level as number) >= 50)).toStrictEqual([]);
  }, 120_000);

  test('stream-level attacks on few long-lived sessions (credit abuse, stray and second heads, lying lengths, late frames): every session stays', async () => {
    const r = await relayWithControl();
    const pool: { agent: RawAgent; label: string; next: number }[] = [];
    for (let i = 0; i < 8; i++) {
      const { agent, label } = await registered(r.url);
      pool.push({ agent, label, next: 1 });
    }
    let cases = 0;
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 1, max: 2 }),
        fc.array(fc.oneof({ weight: 4, arbitrary: frameStep(true) }, { weight: 1, arbitrary: cleanStep }), { minLength: 1, maxLength: 6 }),
        async (requests, steps) => {
          const s = pool[cases++ % pool.length] as (typeof pool)[number];
          const opened: number[] = [];
          const pending: Promise<PublicOutcome>[] = [];
          for (let j = 0; j < requests; j++) {
            pending.push(publicGet(r.port, hostFor(s.label, r.port), `/keep${cases}/${j}`));
            const id = (await s.agent.next(FrameType.OPEN)).streamId;
            expect(id).toBe(s.next);
            opened.push(id);
            s.next += 2;
          }
          const built = build(steps, { opened, nextStreamId: s.next });
          // End every stream of this sequence (a RESET is valid on any stream the relay opened), so that requests finish.
          built.messages.push({
            bytes: Buffer.concat(opened.map((id) => encodeFrame(FrameType.RESET, 0, id, encodeReason('BURROW_ERR_LOCAL_ERROR', 'done')))),
            tags: new Map(),
          });
          const expected = modelSession(built.messages, true, s.next);
          expect(expected.outcome).toBe('keep');
          s.agent.frames.length = 0;
          sendAll(s.agent, built.messages);
          await checkSession(s.agent, expected, true);
          const outcomes = await Promise.all(pending);
          outcomes.forEach((o, j) => {
            const id = opened[j] as number;
            const frames = (expected.processed.get(id) ?? []).filter((f) => f.step >= 0);
            const cleanStep = [...built.clean.entries()].find(([, c]) => c.id === id);
            const isClean = cleanStep !== undefined && frames.length === cleanStep[1].frames && frames.every((f) => f.step === cleanStep[0]);
            checkPublic(o, frames, isClean ? cleanStep[1] : undefined);
          });
          await waitFor(() => r.relay.stats().agentStreams === 0 && r.relay.stats().ingressStreams === 0, 5000, 'streams released');
          if (cases % 50 === 0) await r.checkControl();
          totals.sequences++;
          totals.frames += built.frameCount + 1;
          totals.processed += expected.frames;
          totals.keeps++;
        },
      ),
      { seed: SEED, numRuns: RUNS ?? 700 },
    );
    for (const s of pool) await probe(s.agent);
    expect(r.relay.stats().activeSessions).toBe(1 + pool.length);
    await r.checkControl();
    expect(r.lines.filter((l) => (l.level as number) >= 50)).toStrictEqual([]);
  }, 120_000);
});

// =============================================================================================
// Named attacks, each with its exact answer.

/** The relay's view of its agent sockets: bytes queued toward each. */
function backlogs(relay: Relay): number[] {
  const server = (relay.app as unknown as { websocketServer: { clients: Set<{ bufferedAmount: number }> } }).websocketServer;
  return [...server.clients].map((c) => c.bufferedAmount);
}

/** Frames of `type` received so far, with their reason codes when they carry one. */
const codesOf = (agent: RawAgent, type: FrameType, id?: number): ErrorCode[] =>
  agent.frames.filter((f) => f.type === type && (id === undefined || f.streamId === id)).map((f) => decodeReason(f.payload).code);

describe('hostile agents: streams they do not own', () => {
  test('DATA, END, RESET, CREDIT or RESPONSE for a stream the relay never opened ends that session with PROTOCOL; for one already ended it is dropped', async () => {
    const r = await relayWithControl();
    const stray: [string, Buffer][] = [
      ['DATA', encodeFrame(FrameType.DATA, 0, 1, Buffer.from('x'))],
      ['END', encodeFrame(FrameType.END, 0, 1)],
      ['RESET', encodeFrame(FrameType.RESET, 0, 1, encodeReason('BURROW_ERR_LOCAL_ERROR'))],
      ['CREDIT', encodeFrame(FrameType.CREDIT, 0, 1, encodeCredit(100))],
      ['RESPONSE', encodeFrame(FrameType.RESPONSE, 0, 1, encodeResponseHead({ status: 200, reason: 'OK', headers: [] }))],
      ['DATA on an even id', encodeFrame(FrameType.DATA, 0, 2, Buffer.from('x'))],
      ['OPEN on an odd id', encodeFrame(FrameType.OPEN, 0, 1, Buffer.from('x'))],
    ];
    for (const [, frame] of stray) {
      const { agent } = await registered(r.url);
      agent.send(frame);
      expect(await expectCodedClose(agent, 'BURROW_ERR_PROTOCOL')).toMatch(/stream|OPEN/);
    }
    // A stream that ended (answered, or reset by the relay) may still see late frames: dropped.
    const { agent, label } = await registered(r.url);
    const done = publicGet(r.port, hostFor(label, r.port));
    const open = await agent.next(FrameType.OPEN);
    agent.send(encodeFrame(FrameType.RESPONSE, FLAG_FIN, open.streamId, encodeResponseHead({ status: 204, reason: 'No Content', headers: [] })));
    expect(await done).toMatchObject({ status: 204 });
    for (const [name, frame] of stray.slice(0, 5)) {
      agent.send(frame);
      await probe(agent).catch((err: Error) => {
        throw new Error(`${name} on an ended stream: ${err.message}`);
      });
    }
    await r.streamsDone('late frames');
    await r.checkControl();
  });

  test("two hostile agents aim at the stream ids of a real tunnel's request in flight: they are cut off, the request completes intact", async () => {
    let release: () => void = () => {};
    const released = new Promise<void>((resolve) => {
      release = resolve;
    });
    const body = randomBytes(50_000);
    const { port: appPort } = await startApp(async (_req, res) => {
      await released;
      res.end(body);
    });
    const r = await relayWithControl({ ...FUZZ_CONFIG, maxBodyBytes: 1_000_000, streamWindowBytes: 65_536 });
    const real = await startTunnel(r.url, appPort);
    const inFlight = new Promise<{ status: number; body: Buffer }>((resolve, reject) => {
      http
        .get({ host: '127.0.0.1', port: r.port, path: '/', headers: { host: hostOf(real.url) }, agent: false }, (res) => {
          const parts: Buffer[] = [];
          res.on('data', (c: Buffer) => parts.push(c));
          res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(parts) }));
          res.on('error', reject);
        })
        .on('error', reject);
    });
    await waitFor(() => r.relay.stats().agentStreams === 1, 3000, 'the real request at its agent');
    // Stream ids are per session: the real tunnel's stream 1 is not theirs. Each hostile agent
    // also has a request of its own in flight (its stream 1), which only it can affect.
    const hostile = [await registered(r.url), await registered(r.url)];
    const own = hostile.map((h) => publicGet(r.port, hostFor(h.label, r.port)));
    for (const h of hostile) expect((await h.agent.next(FrameType.OPEN)).streamId).toBe(1);
    const [a, b] = hostile as [(typeof hostile)[number], (typeof hostile)[number]];
    a.agent.send(
      encodeFrame(FrameType.RESET, 0, 1, encodeReason('BURROW_ERR_LOCAL_ERROR', 'my own stream')),
      encodeFrame(FrameType.RESPONSE, 0, 3, encodeResponseHead({ status: 200, reason: 'OK', headers: [] })),
    );
    b.agent.send(
      encodeFrame(FrameType.DATA, 0, 3, Buffer.from('injected')),
      encodeFrame(FrameType.END, 0, 5),
      encodeFrame(FrameType.RESET, 0, 7, encodeReason('BURROW_ERR_LOCAL_ERROR')),
    );
    await expectCodedClose(a.agent, 'BURROW_ERR_PROTOCOL');
    await expectCodedClose(b.agent, 'BURROW_ERR_PROTOCOL');
    // a reset its own request before lying; b's was cut when its session went.
    expect(await own[0]).toMatchObject({ status: 502, code: 'BURROW_ERR_LOCAL_ERROR' });
    expect(await own[1]).toMatchObject({ status: 502, code: 'BURROW_ERR_AGENT_DISCONNECTED' });
    release();
    const got = await inFlight;
    expect(got.status).toBe(200);
    expect(got.body.equals(body)).toBe(true);
    await r.streamsDone('after the real request');
  });
});

describe('hostile agents: lying heads and credit abuse', () => {
  async function oneRequest(r: Awaited<ReturnType<typeof relayWithControl>>) {
    const { agent, label } = await registered(r.url);
    const answer = publicGet(r.port, hostFor(label, r.port));
    const open = await agent.next(FrameType.OPEN);
    return { agent, label, answer, id: open.streamId };
  }
  const head = (headers: string[], status = 200): Buffer => encodeResponseHead({ status, reason: 'OK', headers });

  test('a body longer than its Content-Length is cut, never passed on as the next response on a keep-alive connection', async () => {
    const r = await relayWithControl();
    const { agent, label } = await registered(r.url);
    const socket = net.connect(r.port, '127.0.0.1');
    let received = '';
    socket.on('data', (d: Buffer) => {
      received += d.toString('latin1');
    });
    socket.on('error', () => {});
    const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
    socket.write(`GET / HTTP/1.1\r\nHost: ${hostFor(label, r.port)}\r\n\r\n`);
    const open = await agent.next(FrameType.OPEN);
    const smuggled = 'HTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\nsmuggled';
    agent.send(
      encodeFrame(FrameType.RESPONSE, 0, open.streamId, head(['Content-Length', '5'])),
      encodeFrame(FrameType.DATA, FLAG_FIN, open.streamId, Buffer.from(`hello${smuggled}`)),
    );
    expect(codesOf(agent, FrameType.RESET, open.streamId)).toStrictEqual([]);
    await agent.until(() => codesOf(agent, FrameType.RESET, open.streamId).length > 0, 3000, 'the RESET');
    expect(codesOf(agent, FrameType.RESET, open.streamId)).toStrictEqual(['BURROW_ERR_LOCAL_ERROR']);
    // Had the connection lived, the next request on it (to another tunnel) would read the smuggled response.
    if (!socket.destroyed) socket.write(`GET / HTTP/1.1\r\nHost: ${hostOf(r.control.url)}\r\n\r\n`);
    await closed;
    // The head may or may not have gone out before the cut; no byte past the declared length did.
    expect(received === '' || /^HTTP\/1\.1 200 OK\r\n/.test(received)).toBe(true);
    expect(received).not.toContain('smuggled');
    expect(received).not.toContain('control ok');
    expect(r.lines.some((l) => l.code === 'BURROW_ERR_LOCAL_ERROR' && String(l.msg).includes('Content-Length'))).toBe(true);
    await probe(agent);
    await r.checkControl();
  });

  test('a body that ends short of its Content-Length cuts the connection; a repeated or non-numeric Content-Length is a 502', async () => {
    const r = await relayWithControl();
    const short = await oneRequest(r);
    short.agent.send(
      encodeFrame(FrameType.RESPONSE, 0, short.id, head(['Content-Length', '100'])),
      encodeFrame(FrameType.DATA, 0, short.id, Buffer.alloc(10, 0x61)),
      encodeFrame(FrameType.END, 0, short.id),
    );
    expect((await short.answer).error).toBeDefined();
    expect(r.lines.some((l) => l.code === 'BURROW_ERR_LOCAL_ERROR' && String(l.msg).includes('short'))).toBe(true);
    // FIN on the head itself, with a length declared: short too.
    const finHead = await oneRequest(r);
    finHead.agent.send(encodeFrame(FrameType.RESPONSE, FLAG_FIN, finHead.id, head(['Content-Length', '3'])));
    expect((await finHead.answer).error).toBeDefined();
    for (const headers of [
      ['Content-Length', '5', 'Content-Length', '5'],
      ['Content-Length', '5', 'content-length', '7'],
      ['Content-Length', '-1'],
      ['Content-Length', '0x10'],
      ['Content-Length', '1e3'],
      ['Content-Length', ''],
    ]) {
      const bad = await oneRequest(r);
      bad.agent.send(encodeFrame(FrameType.RESPONSE, 0, bad.id, head(headers)));
      expect(await bad.answer).toMatchObject({ status: 502, code: 'BURROW_ERR_LOCAL_ERROR' });
      await bad.agent.until(() => codesOf(bad.agent, FrameType.RESET, bad.id).length > 0, 3000, 'the RESET');
      expect(codesOf(bad.agent, FrameType.RESET, bad.id)).toStrictEqual(['BURROW_ERR_LOCAL_ERROR']);
    }
    // An honest length, a HEAD-less 204 and 304 with a length and no body: passed on as they are.
    const honest = await oneRequest(r);
    honest.agent.send(
      encodeFrame(FrameType.RESPONSE, 0, honest.id, head(['Content-Length', '5'])),
      encodeFrame(FrameType.DATA, FLAG_FIN, honest.id, Buffer.from('hello')),
    );
    expect(await honest.answer).toStrictEqual({ status: 200, body: 'hello' });
    const notModified = await oneRequest(r);
    notModified.agent.send(encodeFrame(FrameType.RESPONSE, FLAG_FIN, notModified.id, head(['Content-Length', '1234'], 304)));
    expect(await notModified.answer).toStrictEqual({ status: 304, body: '' });
    await r.streamsDone('lengths');
  });

  test('DATA past the credit window resets that stream with FLOW_CONTROL; the session stays', async () => {
    const r = await relayWithControl();
    const over = await oneRequest(r);
    over.agent.send(encodeFrame(FrameType.RESPONSE, 0, over.id, head([])), encodeFrame(FrameType.DATA, 0, over.id, Buffer.alloc(WINDOW_BYTES + 1, 0x62)));
    await over.agent.until(() => codesOf(over.agent, FrameType.RESET, over.id).length > 0, 3000, 'the RESET');
    expect(codesOf(over.agent, FrameType.RESET, over.id)).toStrictEqual(['BURROW_ERR_FLOW_CONTROL']);
    // The head had gone out: the client's response is cut, none of the excess reached it.
    expect((await over.answer).error).toBeDefined();
    // DATA before any head: a protocol error for that stream, answered with a coded 502.
    const early = await oneRequest(r);
    early.agent.send(encodeFrame(FrameType.DATA, 0, early.id, Buffer.from('early')));
    expect(await early.answer).toMatchObject({ status: 502, code: 'BURROW_ERR_PROTOCOL' });
    await probe(over.agent);
    await probe(early.agent);
    await r.streamsDone('credit');
  });

  test('toward a client that does not read, credit stops and an honest agent waits; one that sends past it is reset, and nothing past the window reaches the client', async () => {
    // A larger window than the other cases (fewer round trips to fill the client's socket), still under the frame cap.
    const windowBytes = 32 * 1024;
    const r = await relayWithControl({ ...FUZZ_CONFIG, streamWindowBytes: windowBytes, maxBodyBytes: 256 * 1024 * 1024 });
    const { agent, label } = await registered(r.url);
    // A raw client that sends its request and does not read the answer (until the end).
    const socket = net.connect(r.port, '127.0.0.1');
    socket.on('error', () => {});
    socket.pause();
    cleanups.push(() => socket.destroy());
    const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
    socket.write(`GET / HTTP/1.1\r\nHost: ${hostFor(label, r.port)}\r\n\r\n`);
    const id = (await agent.next(FrameType.OPEN)).streamId;
    agent.send(encodeFrame(FrameType.RESPONSE, 0, id, head([])));
    const chunk = Buffer.alloc(windowBytes / 2, 0x63);
    let sent = 0;
    const granted = (): number =>
      agent.frames.filter((f) => f.type === FrameType.CREDIT && f.streamId === id).reduce((n, f) => n + f.payload.readUInt32BE(0), 0);
    // Honest first: only within the credit granted, until none has come for a while (the client's socket is full).
    for (;;) {
      while (sent + chunk.length <= windowBytes + granted()) {
        agent.send(encodeFrame(FrameType.DATA, 0, id, chunk));
        sent += chunk.length;
      }
      const before = granted();
      const more = await agent
        .until(() => granted() > before, 300, 'credit')
        .then(
          () => true,
          () => false,
        );
      if (!more || sent > 32 * 1024 * 1024) break;
    }
    expect(codesOf(agent, FrameType.RESET, id)).toStrictEqual([]);
    // Then one DATA larger than the window: whatever credit is still on its way (at most what was
    // sent), this is past it.
    agent.send(encodeFrame(FrameType.DATA, 0, id, Buffer.alloc(windowBytes + 1, 0x64)));
    await agent.until(() => codesOf(agent, FrameType.RESET, id).length > 0, 3000, 'the RESET');
    expect(codesOf(agent, FrameType.RESET, id)).toStrictEqual(['BURROW_ERR_FLOW_CONTROL']);
    // The client, reading now, gets the honest bytes at most and none of the excess; then the cut.
    let received = Buffer.alloc(0);
    socket.on('data', (d: Buffer) => {
      received = Buffer.concat([received, d]);
    });
    socket.resume();
    await closed;
    const body = received.subarray(received.indexOf('\r\n\r\n') + 4);
    expect(body.includes(0x64)).toBe(false);
    expect(body.length).toBeGreaterThan(0);
    await probe(agent);
    await r.streamsDone('credit flood');
  });

  test('CREDIT that overflows the window, is zero or has a wrong length resets only that stream', async () => {
    const r = await relayWithControl();
    const cases: [string, Buffer, ErrorCode][] = [
      ['2^32 - 1 on top of the window', Buffer.from([0xff, 0xff, 0xff, 0xff]), 'BURROW_ERR_FLOW_CONTROL'],
      ['"negative" (2^31)', Buffer.from([0x80, 0, 0, 0]), 'BURROW_ERR_FLOW_CONTROL'],
      ['zero', Buffer.from([0, 0, 0, 0]), 'BURROW_ERR_PROTOCOL'],
      ['3 bytes', Buffer.from([0, 0, 1]), 'BURROW_ERR_PROTOCOL'],
      ['8 bytes (a u64)', Buffer.from([0, 0, 0, 1, 0, 0, 0, 0]), 'BURROW_ERR_PROTOCOL'],
    ];
    const { agent, label } = await registered(r.url);
    for (const [name, payload, code] of cases) {
      const answer = publicGet(r.port, hostFor(label, r.port));
      const id = (await agent.next(FrameType.OPEN)).streamId;
      // 2^31 overflows only once added up: send it twice.
      agent.send(encodeFrame(FrameType.CREDIT, 0, id, payload), ...(name.startsWith('"negative"') ? [encodeFrame(FrameType.CREDIT, 0, id, payload)] : []));
      expect({ name, answer: await answer }).toMatchObject({ name, answer: { status: statusOf(code), code } });
      await agent.until(() => codesOf(agent, FrameType.RESET, id).length > 0, 3000, `the RESET (${name})`);
      expect({ name, resets: codesOf(agent, FrameType.RESET, id) }).toStrictEqual({ name, resets: [code] });
    }
    await probe(agent);
    await r.streamsDone('credit values');
  });

  test('a flood of heads on one stream: the second resets that stream; the rest are dropped, the session stays', async () => {
    const r = await relayWithControl();
    const one = await oneRequest(r);
    const heads = Array.from({ length: 500 }, () => encodeFrame(FrameType.RESPONSE, 0, one.id, head([], 201)));
    one.agent.send(...heads);
    await one.agent.until(() => codesOf(one.agent, FrameType.RESET, one.id).length > 0, 3000, 'the RESET');
    expect(codesOf(one.agent, FrameType.RESET, one.id)).toStrictEqual(['BURROW_ERR_PROTOCOL']);
    const answer = await one.answer;
    expect(answer.status === 201 || answer.error !== undefined).toBe(true);
    await probe(one.agent);
    await r.streamsDone('heads');
  });
});

describe('hostile agents: floods', () => {
  test('an HTTP agent may open no stream; a connecting agent gets every one of a flood of OPENs answered, and keeps its session', async () => {
    const r = await relayWithControl();
    const http1 = await registered(r.url);
    http1.agent.send(encodeFrame(FrameType.OPEN, 0, 2, encodeConnectRequest({ share: 'db' })));
    expect(await expectCodedClose(http1.agent, 'BURROW_ERR_PROTOCOL')).toContain('connect');
    const { agent } = await registered(r.url, newKey(), { connect: true });
    const n = 3000;
    const opens = Array.from({ length: n }, (_, i) => encodeFrame(FrameType.OPEN, 0, 2 * (i + 1), encodeConnectRequest({ share: 'no-such-share' })));
    agent.send(...opens);
    await agent.until(() => agent.frames.filter((f) => f.type === FrameType.RESET).length === n, 10_000, `${n} RESETs`);
    const codes = new Set(codesOf(agent, FrameType.RESET));
    expect([...codes].sort()).toStrictEqual(['BURROW_ERR_TOO_MANY_STREAMS', 'BURROW_ERR_UNKNOWN_TUNNEL']);
    // One answer per stream, each stream once.
    expect(new Set(agent.frames.filter((f) => f.type === FrameType.RESET).map((f) => f.streamId)).size).toBe(n);
    // Nor does the flood flood the log: 20 refusal lines per 10 s window, the rest counted in one line later.
    const refusalLines = r.lines.filter((l) => String(l.msg).startsWith('share connection refused'));
    expect(refusalLines.length).toBe(20);
    // Reusing an id is a lie about the stream table: the session ends.
    await probe(agent);
    agent.send(encodeFrame(FrameType.OPEN, 0, 2, encodeConnectRequest({ share: 'no-such-share' })));
    await expectCodedClose(agent, 'BURROW_ERR_PROTOCOL');
    await r.settle('open flood');
  });

  test('an agent that floods PINGs and never reads: the relay queues about 1 MiB for it, stops reading it, and the heartbeat closes it', async () => {
    const r = await relayWithControl({ ...FUZZ_CONFIG, pingIntervalMs: 400 });
    const { agent } = await registered(r.url);
    agent.ws.pause();
    // 15 PINGs of 64 KiB per message: each asks for 64 KiB of PONG.
    const message = Buffer.concat(Array.from({ length: 15 }, () => encodeFrame(FrameType.PING, 0, 0, Buffer.alloc(65_536, 0x70))));
    let most = 0;
    // Past the mark (once the kernel's socket buffers are full too), a few more messages: the backlog stays put.
    for (let i = 0, after = 0; i < 60 && after < 6 && agent.ws.readyState === agent.ws.OPEN; i++) {
      agent.ws.send(message);
      await new Promise((resolve) => setTimeout(resolve, 2));
      most = Math.max(most, ...backlogs(r.relay));
      if (most > 1024 * 1024) after++;
    }
    expect(most).toBeGreaterThan(1024 * 1024);
    // The relay holds at most its 1 MiB mark, the rest of the message that crossed it, and a batch.
    expect(most).toBeLessThan(1024 * 1024 + message.length + 65_536 + 1024);
    await waitFor(() => backlogs(r.relay).length === 1, 5000, 'the relay to drop the silent agent');
    agent.ws.resume();
    await agent.until(() => agent.closeCode !== undefined, 5000, 'the close');
    // A coded close when the close frame makes it out; a silent peer may instead just be cut (1006).
    if (agent.closeCode !== 1006) {
      expect(agent.closeCode).toBe(ERRORS.BURROW_ERR_HEARTBEAT_TIMEOUT.close);
      expect(agent.closeReason).toBe('BURROW_ERR_HEARTBEAT_TIMEOUT');
    }
    await r.settle('ping flood');
    await r.checkControl();
  });

  test('a connecting agent that floods OPENs and never reads: the answers it has not read stay bounded too', async () => {
    const r = await relayWithControl({ ...FUZZ_CONFIG, pingIntervalMs: 400 });
    const { agent } = await registered(r.url, newKey(), { connect: true });
    agent.ws.pause();
    let id = 2;
    let most = 0;
    // An invalid share name of 1000 characters: each refusal's RESET carries a full 1 KiB reason.
    const payload = encodeConnectRequest({ share: 'x'.repeat(1000) });
    const perMessage = 600;
    for (let i = 0, after = 0; i < 60 && after < 4 && agent.ws.readyState === agent.ws.OPEN; i++) {
      const frames: Buffer[] = [];
      for (let j = 0; j < perMessage; j++) {
        frames.push(encodeFrame(FrameType.OPEN, 0, id, payload));
        id += 2;
      }
      agent.ws.send(Buffer.concat(frames));
      await new Promise((resolve) => setTimeout(resolve, 5));
      most = Math.max(most, ...backlogs(r.relay));
      if (most > 1024 * 1024) after++;
    }
    expect(most).toBeGreaterThan(1024 * 1024);
    // The mark plus the answers one message past it asks for (a RESET is no larger than its OPEN here), at most.
    expect(most).toBeLessThan(1024 * 1024 + 2 * perMessage * (10 + payload.length) + 65_536);
    await waitFor(() => backlogs(r.relay).length === 1, 5000, 'the relay to drop the silent agent');
    agent.ws.terminate();
    await r.settle('open flood without reading');
    await r.checkControl();
  });
});

describe('hostile registrations', () => {
  /** Reads HELLO; the nonce this connection was issued. */
  const nonceOf = async (agent: RawAgent): Promise<string> => decodeHello((await agent.next(FrameType.HELLO)).payload).nonce;
  const registerFrame = (payload: object): Buffer => encodeFrame(FrameType.REGISTER, 0, 0, encodeJson(payload));

  test('a signature replayed on another connection is refused (NONCE_REPLAYED) and the victim keeps its session; on its own connection it is a second registration', async () => {
    const r = await relayWithControl();
    const victimKey = newKey();
    const victim = await RawAgent.open(r.url);
    const token = signRegistration({ secretKey: victimKey.secretKey, nonce: await nonceOf(victim), audience: r.url, nowMs: Date.now() });
    victim.send(registerFrame(token));
    await victim.next(FrameType.REGISTERED);
    const thief = await RawAgent.open(r.url);
    await nonceOf(thief);
    thief.send(registerFrame(token));
    await expectCodedClose(thief, 'BURROW_ERR_NONCE_REPLAYED');
    await probe(victim);
    // The same token again on its own connection: the nonce was used up, and it registered already.
    victim.send(registerFrame(token));
    await expectCodedClose(victim, 'BURROW_ERR_PROTOCOL');
    await r.settle('replay');
  });

  test('forgeries: a key claimed but not held, tampered claims, a label-like or foreign subdomain, a bad session name', async () => {
    const r = await relayWithControl();
    const owner = newKey();
    const { port: appPort } = await startApp((_req, res) => res.end('owner'));
    const ownerTunnel = await startTunnel(r.url, appPort, { keyPair: owner, subdomain: 'owned' });
    const attacker = newKey();
    const forge = async (make: (nonce: string) => object, code: ErrorCode): Promise<string> => {
      const agent = await RawAgent.open(r.url);
      agent.send(registerFrame(make(await nonceOf(agent))));
      return expectCodedClose(agent, code);
    };
    const sign = (nonce: string, extra: Partial<Parameters<typeof signRegistration>[0]> = {}) =>
      signRegistration({ secretKey: attacker.secretKey, nonce, audience: r.url, nowMs: Date.now(), ...extra });
    // The owner's public key in the claims, signed with the attacker's key.
    await forge((nonce) => {
      const t = sign(nonce);
      const claims = JSON.parse(Buffer.from(t.claims, 'base64url').toString()) as Record<string, unknown>;
      claims.pub = Buffer.from(owner.publicKey).toString('base64url');
      return { claims: Buffer.from(JSON.stringify(claims)).toString('base64url'), sig: t.sig };
    }, 'BURROW_ERR_BAD_SIGNATURE');
    // A valid token whose claims were edited after signing (a subdomain slipped in).
    await forge((nonce) => {
      const t = sign(nonce);
      const claims = JSON.parse(Buffer.from(t.claims, 'base64url').toString()) as Record<string, unknown>;
      claims.subdomain = 'owned';
      return { claims: Buffer.from(JSON.stringify(claims)).toString('base64url'), sig: t.sig };
    }, 'BURROW_ERR_BAD_SIGNATURE');
    // A signature over other bytes than the claims sent.
    await forge((nonce) => ({ claims: sign(nonce).claims, sig: sign(`${nonce}x`).sig }), 'BURROW_ERR_BAD_SIGNATURE');
    // A label that is not derived from the key: the owner's label as a friendly name.
    expect(await forge((nonce) => sign(nonce, { subdomain: labelFor(owner.publicKey) }), 'BURROW_ERR_INVALID_NAME')).toContain('key-derived');
    expect(await forge((nonce) => sign(nonce, { session: '../etc' }), 'BURROW_ERR_INVALID_NAME')).toContain('session name');
    // A friendly name bound to another key.
    expect(await forge((nonce) => sign(nonce, { subdomain: 'OWNED' }), 'BURROW_ERR_NAME_TAKEN')).toContain('another key');
    await forge((nonce) => sign(nonce, { audience: 'https://relay.example.org' }), 'BURROW_ERR_WRONG_AUDIENCE');
    await forge((nonce) => sign(nonce, { nowMs: Date.now() + 3_600_000 }), 'BURROW_ERR_TOKEN_EXPIRED');
    // The owner's tunnel is untouched.
    expect((await publicGet(r.port, `owned.localhost:${r.port}`)).body).toBe('owner');
    expect((await publicGet(r.port, hostOf(ownerTunnel.url))).body).toBe('owner');
  });

  test('two sessions of one key registering at the same moment: one serves, the other is replaced with a coded close', async () => {
    const r = await relayWithControl();
    const key = newKey();
    const a = await RawAgent.open(r.url);
    const b = await RawAgent.open(r.url);
    const [na, nb] = [await nonceOf(a), await nonceOf(b)];
    const now = Date.now();
    // Both registrations in flight together.
    a.send(registerFrame(signRegistration({ secretKey: key.secretKey, nonce: na, audience: r.url, nowMs: now })));
    b.send(registerFrame(signRegistration({ secretKey: key.secretKey, nonce: nb, audience: r.url, nowMs: now })));
    await a.next(FrameType.REGISTERED);
    await b.next(FrameType.REGISTERED);
    await waitFor(() => (a.closeCode === undefined) !== (b.closeCode === undefined), 3000, 'exactly one session replaced');
    const [gone, kept] = a.closeCode !== undefined ? [a, b] : [b, a];
    expect(codesOf(gone, FrameType.ERROR)).toStrictEqual(['BURROW_ERR_SESSION_REPLACED']);
    expect([gone.closeCode, gone.closeReason]).toStrictEqual([ERRORS.BURROW_ERR_SESSION_REPLACED.close, 'BURROW_ERR_SESSION_REPLACED']);
    // The label routes to the survivor.
    const answer = publicGet(r.port, hostFor(labelFor(key.publicKey), r.port));
    const open = await kept.next(FrameType.OPEN);
    kept.send(encodeFrame(FrameType.RESPONSE, FLAG_FIN, open.streamId, encodeResponseHead({ status: 200, reason: 'OK', headers: [] })));
    expect(await answer).toMatchObject({ status: 200 });
    expect(r.relay.stats().activeSessions).toBe(2);
  });

  test('one registration sent twice on a socket, or a REGISTER after registering, ends the session with PROTOCOL; nothing stays claimed', async () => {
    const r = await relayWithControl();
    // Twice in one message: the second arrives while the first is being checked.
    const key = newKey();
    const twice = await RawAgent.open(r.url);
    const token = signRegistration({ secretKey: key.secretKey, nonce: await nonceOf(twice), audience: r.url, nowMs: Date.now() });
    twice.send(registerFrame(token), registerFrame(token));
    await expectCodedClose(twice, 'BURROW_ERR_PROTOCOL');
    await r.settle('twice in one message');
    const orphan = await publicGet(r.port, hostFor(labelFor(key.publicKey), r.port));
    expect(['BURROW_ERR_UNKNOWN_TUNNEL', 'BURROW_ERR_TUNNEL_OFFLINE']).toContain(orphan.code);
    // After registering: a second REGISTER, even a fresh and valid one.
    const { agent, label } = await registered(r.url);
    agent.send(registerFrame(signRegistration({ secretKey: newKey().secretKey, nonce: 'whatever', audience: r.url, nowMs: Date.now() })));
    expect(await expectCodedClose(agent, 'BURROW_ERR_PROTOCOL')).toContain('second registration');
    await r.settle('register after registering');
    expect((await publicGet(r.port, hostFor(label, r.port))).code).toBe('BURROW_ERR_TUNNEL_OFFLINE');
  });

  test('oversized, deeply nested and overstuffed registrations are refused with their codes', async () => {
    const r = await relayWithControl();
    const refuse = async (frame: Buffer, code: ErrorCode): Promise<string> => {
      const agent = await RawAgent.open(r.url);
      const nonce = await nonceOf(agent);
      agent.send(frame.length > 0 ? frame : registerFrame(signRegistration({ secretKey: newKey().secretKey, nonce, audience: r.url, nowMs: Date.now() })));
      return expectCodedClose(agent, code);
    };
    // A REGISTER frame over the 64 KiB frame cap.
    await refuse(Buffer.concat([header(FrameType.REGISTER, 0, 0, 70_000), Buffer.alloc(70_000, 0x20)]), 'BURROW_ERR_FRAME_TOO_LARGE');
    // Just under the cap: a huge JSON whose claims are no base64url.
    await refuse(registerFrame({ claims: '!'.repeat(60_000), sig: '' }), 'BURROW_ERR_BAD_REGISTRATION');
    // Deeply nested JSON, as the payload and inside the claims.
    await refuse(encodeFrame(FrameType.REGISTER, 0, 0, Buffer.from(`${'['.repeat(30_000)}${']'.repeat(30_000)}`)), 'BURROW_ERR_BAD_REGISTRATION');
    const deep = `${'{"a":'.repeat(5000)}1${'}'.repeat(5000)}`;
    // Parsed, but an object without the protocol version.
    await refuse(registerFrame({ claims: Buffer.from(deep).toString('base64url'), sig: '' }), 'BURROW_ERR_UNSUPPORTED_VERSION');
    const claims = `{"v":1,"pub":"x","nonce":"n","iat":1,"ttl":1,"aud":"http://x","access":${deep}}`;
    expect(await refuse(registerFrame({ claims: Buffer.from(claims).toString('base64url'), sig: '' }), 'BURROW_ERR_BAD_REGISTRATION')).toContain('access');
    await refuse(registerFrame({ claims: 5, sig: [] }), 'BURROW_ERR_BAD_REGISTRATION');
    await refuse(encodeFrame(FrameType.REGISTER, 0, 0, Buffer.from('not json')), 'BURROW_ERR_BAD_REGISTRATION');
    // Validly signed but overstuffed claims: a 50 KB token, 1000 access rules.
    const stuffed = async (extra: Partial<Parameters<typeof signRegistration>[0]>): Promise<string> => {
      const agent = await RawAgent.open(r.url);
      const nonce = await nonceOf(agent);
      agent.send(registerFrame(signRegistration({ secretKey: newKey().secretKey, nonce, audience: r.url, nowMs: Date.now(), ...extra })));
      return expectCodedClose(agent, 'BURROW_ERR_BAD_REGISTRATION');
    };
    expect(await stuffed({ token: 't'.repeat(30_000) })).toContain('token');
    expect(await stuffed({ access: { allowCidrs: Array.from({ length: 1000 }, (_, i) => `10.0.${i % 256}.0/24`) } })).toContain('access');
    await r.settle('oversized registrations');
    await r.checkControl();
  });
});

describe('hostile agents: a RESET that asks for a resend', () => {
  test('RESET with SESSION_GONE: the GET is sent to the tunnel once more, then answered with a coded 502, never looped', async () => {
    const r = await relayWithControl();
    const { agent, label } = await registered(r.url);
    const answer = publicGet(r.port, hostFor(label, r.port));
    const first = await agent.next(FrameType.OPEN);
    agent.send(encodeFrame(FrameType.RESET, 0, first.streamId, encodeReason('BURROW_ERR_SESSION_GONE')));
    const second = await agent.next(FrameType.OPEN);
    expect(second.streamId).toBe(first.streamId + 2);
    agent.send(encodeFrame(FrameType.RESET, 0, second.streamId, encodeReason('BURROW_ERR_SESSION_GONE')));
    expect(await answer).toMatchObject({ status: 502, code: 'BURROW_ERR_SESSION_GONE' });
    expect(agent.frames.filter((f) => f.type === FrameType.OPEN)).toStrictEqual([]);
    await probe(agent);
    await r.streamsDone('resend');
  });
});
