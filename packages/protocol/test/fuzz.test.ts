/**
 * Property-based fuzzing of every decoder a hostile peer can reach: random bytes and mutations
 * of valid encodings (bit flips, truncations, length lies, splices, unknown types and flags,
 * version changes) must either decode to well-formed values or throw a BurrowError with a code
 * from the decoder's documented set; never another exception, never a hang, never a buffer held
 * beyond the frame cap. The frame decoders are checked against a reference parser written from
 * the header rules in docs/PROTOCOL.md. Plus encode → decode identity for every frame and payload.
 *
 * BURROW_FUZZ_SEED=<n> replays a run (the seed is in the suite title and in any failure);
 * BURROW_FUZZ_RUNS=<n> sets the runs of every property, for deep runs on demand.
 */
import {
  BurrowError,
  base64url,
  type Direction,
  decodeConnectRequest,
  decodeCredit,
  decodeFrames,
  decodeHello,
  decodeReason,
  decodeRegister,
  decodeRegistered,
  decodeRequestHead,
  decodeResponseHead,
  ERRORS,
  type ErrorCode,
  encodeConnectRequest,
  encodeCredit,
  encodeFrame,
  encodeJson,
  encodeReason,
  encodeRequestHead,
  encodeResponseHead,
  FRAME_HEADER_BYTES,
  type Frame,
  FrameDecoder,
  type FrameType,
  isErrorCode,
  keyPairFromSeed,
  MAX_FRAME_PAYLOAD_BYTES,
  MAX_REASON_BYTES,
  PROTOCOL_VERSION,
  type RegisterPayload,
  type RequestHead,
  type ResponseHead,
  signDetached,
  signRegistration,
  verifyRegistration,
} from '@burrow/protocol';
import fc from 'fast-check';

const SEED = process.env.BURROW_FUZZ_SEED !== undefined ? Number(process.env.BURROW_FUZZ_SEED) : Math.floor(Math.random() * 0x7fff_ffff);
const RUNS = process.env.BURROW_FUZZ_RUNS !== undefined ? Number(process.env.BURROW_FUZZ_RUNS) : undefined;
/** Cases run, summed over the properties (reported at the end). */
let cases = 0;

/** fc.assert parameters: the shared seed and `runs` cases (or BURROW_FUZZ_RUNS). */
function params(runs: number): fc.Parameters<unknown> {
  const numRuns = RUNS ?? runs;
  cases += numRuns;
  return { seed: SEED, numRuns };
}

/** Runs `fn`: its value, or the code of the BurrowError it throws; any other throw fails the property. */
function outcome<T>(fn: () => T, allowed: readonly ErrorCode[]): { value: T } | { code: ErrorCode } {
  try {
    return { value: fn() };
  } catch (err) {
    if (!(err instanceof BurrowError)) throw new Error(`threw ${String(err)} (${(err as Error)?.constructor?.name}), not a BurrowError`);
    if (!allowed.includes(err.code)) throw new Error(`threw ${err.code} (${err.message}), expected one of ${allowed.join(', ')}`);
    return { code: err.code };
  }
}

// ---------------------------------------------------------------------------------------------
// The reference: frame header rules exactly as docs/PROTOCOL.md states them, written apart from
// frameCodec.ts so that a change of the codec's behaviour shows up as a disagreement.

const HELLO = 0x01;
const REGISTER = 0x02;
const REGISTERED = 0x03;
const SESSION_BOTH = [0x04, 0x05, 0x06, 0x07];
const STREAM_TYPES = [0x10, 0x11, 0x12, 0x13, 0x14, 0x15];
const FIN_TYPES = [0x10, 0x11, 0x12];
const ALLOWED: Record<Direction, readonly number[]> = {
  relayToAgent: [HELLO, REGISTERED, ...SESSION_BOTH, ...STREAM_TYPES],
  agentToRelay: [REGISTER, ...SESSION_BOTH, ...STREAM_TYPES],
};
const FRAME_CAP = 65_536;

interface Plain {
  readonly type: number;
  readonly flags: number;
  readonly streamId: number;
  readonly payload: string;
}
interface SpecResult {
  readonly frames: Plain[];
  /** Set when the input breaks a rule; frames before the bad one were still delivered. */
  readonly error?: ErrorCode;
}

function specHeaderError(direction: Direction, type: number, flags: number, streamId: number, length: number, cap: number): ErrorCode | undefined {
  if (!ALLOWED[direction].includes(type)) return 'BURROW_ERR_PROTOCOL';
  if ((flags & ~(FIN_TYPES.includes(type) ? 1 : 0)) !== 0) return 'BURROW_ERR_PROTOCOL';
  if (STREAM_TYPES.includes(type) === (streamId === 0)) return 'BURROW_ERR_PROTOCOL';
  if (length > cap) return 'BURROW_ERR_FRAME_TOO_LARGE';
  return undefined;
}

/** One WebSocket message holding whole frames, decoded by the spec. */
function specDecode(message: Buffer, direction: Direction, cap = FRAME_CAP): SpecResult {
  const frames: Plain[] = [];
  let at = 0;
  while (at < message.length) {
    if (message.length - at < 10) return { frames, error: 'BURROW_ERR_PROTOCOL' };
    const type = message[at] as number;
    const flags = message[at + 1] as number;
    const streamId = message.readUInt32BE(at + 2);
    const length = message.readUInt32BE(at + 6);
    const error = specHeaderError(direction, type, flags, streamId, length, cap);
    if (error !== undefined) return { frames, error };
    if (at + 10 + length > message.length) return { frames, error: 'BURROW_ERR_PROTOCOL' };
    frames.push({ type, flags, streamId, payload: message.toString('hex', at + 10, at + 10 + length) });
    at += 10 + length;
  }
  return { frames };
}

const plain = (f: Frame): Plain => ({ type: f.type, flags: f.flags, streamId: f.streamId, payload: f.payload.toString('hex') });

/** decodeFrames over one message, as a SpecResult; also checks each payload is a view inside the message. */
function codecDecode(message: Buffer, direction: Direction, cap = FRAME_CAP): SpecResult {
  const frames: Plain[] = [];
  const r = outcome(
    () =>
      decodeFrames(
        message,
        direction,
        (f) => {
          if (f.payload.buffer !== message.buffer || f.payload.length > cap) throw new Error('payload is not a bounded view into the message');
          frames.push(plain(f));
        },
        cap,
      ),
    ['BURROW_ERR_PROTOCOL', 'BURROW_ERR_FRAME_TOO_LARGE'],
  );
  return 'code' in r ? { frames, error: r.code } : { frames };
}

/** FrameDecoder fed `message` in pieces cut at `cuts`, then finished; checks the held bytes stay under one frame. */
function streamDecode(message: Buffer, direction: Direction, cuts: readonly number[], cap = FRAME_CAP): SpecResult {
  const frames: Plain[] = [];
  const decoder = new FrameDecoder(direction, cap);
  const points = [...new Set(cuts.map((c) => c % (message.length + 1)))].sort((a, b) => a - b);
  const r = outcome(() => {
    let from = 0;
    for (const to of [...points, message.length]) {
      decoder.push(message.subarray(from, to), (f) => frames.push(plain(f)));
      if (decoder.bufferedBytes > FRAME_HEADER_BYTES + cap) throw new Error(`decoder holds ${decoder.bufferedBytes} bytes, over one frame`);
      from = to;
    }
    decoder.finish();
  }, ['BURROW_ERR_PROTOCOL', 'BURROW_ERR_FRAME_TOO_LARGE']);
  return 'code' in r ? { frames, error: r.code } : { frames };
}

// ---------------------------------------------------------------------------------------------
// Generators.

const directions: fc.Arbitrary<Direction> = fc.constantFrom('relayToAgent', 'agentToRelay');
const u32 = fc.integer({ min: 0, max: 0xffff_ffff });

/** A frame that is valid in `direction` (payload contents arbitrary). */
function validFrame(direction: Direction): fc.Arbitrary<{ type: number; flags: number; streamId: number; payload: Uint8Array }> {
  return fc.constantFrom(...ALLOWED[direction]).chain((type) =>
    fc.record({
      type: fc.constant(type),
      flags: FIN_TYPES.includes(type) ? fc.constantFrom(0, 1) : fc.constant(0),
      streamId: STREAM_TYPES.includes(type) ? fc.oneof(fc.integer({ min: 1, max: 9 }), fc.integer({ min: 1, max: 0xffff_ffff })) : fc.constant(0),
      payload: fc.oneof({ weight: 6, arbitrary: fc.uint8Array({ maxLength: 48 }) }, { weight: 1, arbitrary: fc.uint8Array({ maxLength: 3000 }) }),
    }),
  );
}

/** Valid frames for a direction, and their encoding as one message. */
const validMessage = directions.chain((direction) =>
  fc.array(validFrame(direction), { maxLength: 6 }).map((frames) => ({
    direction,
    frames,
    bytes: Buffer.concat(frames.map((f) => encodeFrame(f.type as FrameType, f.flags, f.streamId, f.payload))),
  })),
);

type Mutation = (b: Buffer) => Buffer;
/** One way to damage a message: each keeps offsets in range of the buffer it gets. */
const mutation: fc.Arbitrary<Mutation> = fc.oneof(
  // Bit flip.
  fc.tuple(fc.nat(), fc.integer({ min: 0, max: 7 })).map(
    ([at, bit]): Mutation =>
      (b) => {
        if (b.length === 0) return b;
        const out = Buffer.from(b);
        out[at % b.length] = (out[at % b.length] as number) ^ (1 << bit);
        return out;
      },
  ),
  // Truncation.
  fc.nat().map(
    (n): Mutation =>
      (b) =>
        b.subarray(0, n % (b.length + 1)),
  ),
  // A lying length field in the header found at a frame boundary (or anywhere).
  fc
    .tuple(fc.nat(), fc.oneof(u32, fc.constantFrom(0, 1, FRAME_CAP - 1, FRAME_CAP, FRAME_CAP + 1, 0x7fff_ffff, 0xffff_ffff), fc.integer({ min: -12, max: 12 })))
    .map(
      ([at, lie]): Mutation =>
        (b) => {
          if (b.length < 10) return b;
          const out = Buffer.from(b);
          const pos = at % (b.length - 9);
          const declared = out.readUInt32BE(pos + 6);
          const value = lie >= -12 && lie <= 12 ? Math.max(0, declared + lie) : lie;
          out.writeUInt32BE(value >>> 0, pos + 6);
          return out;
        },
    ),
  // Unknown or wrong-direction type, or random flags, or a stream id moved to/from 0, in the first header.
  fc.tuple(fc.constantFrom(0, 1, 2), fc.integer({ min: 0, max: 255 }), u32).map(
    ([field, byte, id]): Mutation =>
      (b) => {
        if (b.length < 10) return b;
        const out = Buffer.from(b);
        if (field === 0) out[0] = byte;
        else if (field === 1) out[1] = byte;
        else out.writeUInt32BE(id % 3 === 0 ? 0 : id, 2);
        return out;
      },
  ),
  // Random bytes inserted.
  fc.tuple(fc.nat(), fc.uint8Array({ minLength: 1, maxLength: 12 })).map(
    ([at, bytes]): Mutation =>
      (b) => {
        const pos = at % (b.length + 1);
        return Buffer.concat([b.subarray(0, pos), bytes, b.subarray(pos)]);
      },
  ),
  // A range repeated (a frame sent twice, a header torn in two).
  fc.tuple(fc.nat(), fc.nat()).map(
    ([x, y]): Mutation =>
      (b) => {
        const from = x % (b.length + 1);
        const to = from + (y % (b.length - from + 1));
        return Buffer.concat([b.subarray(0, to), b.subarray(from, to), b.subarray(to)]);
      },
  ),
);

/** Two valid messages spliced at random cut points, then 0-3 mutations. */
const mutatedMessage = fc
  .tuple(validMessage, validMessage, fc.nat(), fc.nat(), fc.boolean(), fc.array(mutation, { maxLength: 3 }))
  .map(([a, b, cutA, cutB, splice, mutations]) => {
    let bytes = splice ? Buffer.concat([a.bytes.subarray(0, cutA % (a.bytes.length + 1)), b.bytes.subarray(cutB % (b.bytes.length + 1))]) : a.bytes;
    for (const m of mutations) bytes = m(bytes);
    return { direction: a.direction, bytes };
  });

/** Random bytes, some shaped like a header with a plausible length. */
const randomMessage = fc.oneof(
  fc.uint8Array({ maxLength: 200 }).map((a) => Buffer.from(a)),
  fc
    .tuple(fc.integer({ min: 0, max: 255 }), fc.integer({ min: 0, max: 3 }), fc.oneof(fc.constant(0), u32), fc.uint8Array({ maxLength: 64 }), fc.boolean())
    .map(([type, flags, id, payload, honest]) => {
      const h = Buffer.alloc(10);
      h[0] = type;
      h[1] = flags;
      h.writeUInt32BE(id, 2);
      h.writeUInt32BE(honest ? payload.length : payload.length + 1 + (id % 70_000), 6);
      return Buffer.concat([h, payload]);
    }),
);

/** RFC 9110 token characters (header names). */
const TOKEN_CHARS = "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
const headerName = fc.string({ unit: fc.constantFrom(...TOKEN_CHARS), minLength: 1, maxLength: 24 });
/** Field values: visible ASCII, space, tab and obs-text (0x80-0xff), as HTTP allows. */
const headerValue = fc.string({
  unit: fc.oneof(fc.integer({ min: 0x20, max: 0x7e }), fc.constant(0x09), fc.integer({ min: 0x80, max: 0xff })).map((c) => String.fromCharCode(c)),
  maxLength: 64,
});
/** Any latin1 string (what a peer may put on the wire). */
const latin1 = (maxLength: number) => fc.string({ unit: fc.integer({ min: 0, max: 255 }).map((c) => String.fromCharCode(c)), maxLength });
const headerList = fc.array(fc.tuple(headerName, headerValue), { maxLength: 12 }).map((pairs) => pairs.flat());
const requestHead: fc.Arbitrary<RequestHead> = fc.record(
  {
    kind: fc.constantFrom(1, 2, 3) as fc.Arbitrary<RequestHead['kind']>,
    method: fc.oneof(fc.constantFrom('GET', 'POST', 'PUT', 'DELETE', 'HEAD', 'OPTIONS', 'PATCH', ''), headerName),
    target: fc.oneof(latin1(80), fc.webPath()),
    headers: headerList,
  },
  { noNullPrototype: true },
);
const responseHead: fc.Arbitrary<ResponseHead> = fc.record(
  {
    status: fc.integer({ min: 100, max: 999 }),
    reason: latin1(255),
    headers: headerList,
  },
  { noNullPrototype: true },
);
const errorCode = fc.constantFrom(...(Object.keys(ERRORS) as ErrorCode[]));

// ---------------------------------------------------------------------------------------------

describe(`protocol fuzz (seed ${SEED})`, () => {
  afterAll(() => {
    // One line for CI logs: how much was tried, and how to replay it.
    process.stdout.write(`protocol fuzz: ${cases} cases, BURROW_FUZZ_SEED=${SEED}\n`);
  });

  describe('frames', () => {
    test('random bytes: decodeFrames agrees with the spec in both directions and under a small cap', () => {
      fc.assert(
        fc.property(randomMessage, directions, fc.constantFrom(FRAME_CAP, 16), (bytes, direction, cap) => {
          expect(codecDecode(bytes, direction, cap)).toStrictEqual(specDecode(bytes, direction, cap));
        }),
        params(3000),
      );
    });

    test('mutated and spliced valid messages: decodeFrames agrees with the spec', () => {
      fc.assert(
        fc.property(mutatedMessage, ({ direction, bytes }) => {
          expect(codecDecode(bytes, direction)).toStrictEqual(specDecode(bytes, direction));
        }),
        params(3000),
      );
    });

    test('the streaming decoder over any chunking gives what decodeFrames gives for the whole', () => {
      fc.assert(
        fc.property(fc.oneof(mutatedMessage, validMessage), fc.array(fc.nat(), { maxLength: 6 }), ({ direction, bytes }, cuts) => {
          expect(streamDecode(bytes, direction, cuts)).toStrictEqual(specDecode(bytes, direction));
        }),
        params(1500),
      );
    });

    test('a declared length over the cap is refused at the header, before any payload is waited for', () => {
      fc.assert(
        fc.property(directions, fc.integer({ min: FRAME_CAP + 1, max: 0xffff_ffff }), fc.uint8Array({ maxLength: 32 }), (direction, length, tail) => {
          const header = Buffer.alloc(10);
          header[0] = 0x12;
          header.writeUInt32BE(1, 2);
          header.writeUInt32BE(length, 6);
          const decoder = new FrameDecoder(direction);
          const r = outcome(() => decoder.push(Buffer.concat([header, tail]), () => {}), ['BURROW_ERR_FRAME_TOO_LARGE']);
          expect(r).toStrictEqual({ code: 'BURROW_ERR_FRAME_TOO_LARGE' });
          expect(decoder.bufferedBytes).toBe(0);
        }),
        params(300),
      );
    });

    test('encode → decode is the identity for every frame kind, whole and chunked', () => {
      fc.assert(
        fc.property(validMessage, fc.array(fc.nat(), { maxLength: 4 }), ({ direction, frames, bytes }, cuts) => {
          const want = frames.map((f) => ({ type: f.type, flags: f.flags, streamId: f.streamId, payload: Buffer.from(f.payload).toString('hex') }));
          expect(codecDecode(bytes, direction)).toStrictEqual({ frames: want });
          expect(streamDecode(bytes, direction, cuts)).toStrictEqual({ frames: want });
        }),
        params(1000),
      );
    });

    test('encodeFrame refuses a payload over the cap, and nothing else of a valid frame', () => {
      expect(outcome(() => encodeFrame(0x12, 0, 1, Buffer.alloc(MAX_FRAME_PAYLOAD_BYTES + 1)), ['BURROW_ERR_FRAME_TOO_LARGE'])).toStrictEqual({
        code: 'BURROW_ERR_FRAME_TOO_LARGE',
      });
      expect(encodeFrame(0x12, 0, 1, Buffer.alloc(MAX_FRAME_PAYLOAD_BYTES)).length).toBe(FRAME_HEADER_BYTES + MAX_FRAME_PAYLOAD_BYTES);
    });
  });

  describe('payloads', () => {
    /** Every payload decoder, with the codes it may throw and a check of what it returns. */
    const decoders: { name: string; codes: ErrorCode[]; run: (b: Buffer) => void }[] = [
      {
        name: 'reason',
        codes: ['BURROW_ERR_PROTOCOL'],
        run: (b) => {
          const r = decodeReason(b);
          expect(isErrorCode(r.code)).toBe(true);
          expect(b.length).toBeGreaterThanOrEqual(2);
          expect(b.length).toBeLessThanOrEqual(2 + MAX_REASON_BYTES);
        },
      },
      {
        name: 'credit',
        codes: ['BURROW_ERR_PROTOCOL'],
        run: (b) => {
          const n = decodeCredit(b);
          expect(Number.isInteger(n) && n >= 1 && n <= 0xffff_ffff).toBe(true);
        },
      },
      {
        name: 'request head',
        codes: ['BURROW_ERR_PROTOCOL'],
        run: (b) => {
          const h = decodeRequestHead(b);
          expect([1, 2, 3]).toContain(h.kind);
          expect(h.headers.length % 2).toBe(0);
          // The format is canonical: what decodes re-encodes to the very same bytes.
          expect(encodeRequestHead(h)).toStrictEqual(b);
        },
      },
      {
        name: 'response head',
        codes: ['BURROW_ERR_PROTOCOL'],
        run: (b) => {
          const h = decodeResponseHead(b);
          expect(h.status >= 100 && h.status <= 999).toBe(true);
          expect(h.headers.length % 2).toBe(0);
          expect(encodeResponseHead(h)).toStrictEqual(b);
        },
      },
      {
        name: 'hello',
        codes: ['BURROW_ERR_PROTOCOL', 'BURROW_ERR_UNSUPPORTED_VERSION'],
        run: (b) => {
          const h = decodeHello(b);
          expect(h.v).toBe(PROTOCOL_VERSION);
          for (const k of ['windowBytes', 'maxBodyBytes', 'pingIntervalMs'] as const) expect(Number.isSafeInteger(h[k]) && h[k] > 0).toBe(true);
          expect(typeof h.nonce === 'string' && typeof h.relay === 'string').toBe(true);
        },
      },
      {
        name: 'register',
        codes: ['BURROW_ERR_BAD_REGISTRATION'],
        run: (b) => {
          const r = decodeRegister(b);
          expect(typeof r.claims === 'string' && typeof r.sig === 'string').toBe(true);
        },
      },
      {
        name: 'registered',
        codes: ['BURROW_ERR_PROTOCOL'],
        run: (b) => {
          const r = decodeRegistered(b);
          expect(typeof r.label === 'string' && typeof r.url === 'string' && typeof r.sessionId === 'string').toBe(true);
        },
      },
      {
        name: 'connect request',
        codes: ['BURROW_ERR_BAD_REQUEST', 'BURROW_ERR_INVALID_NAME'],
        run: (b) => {
          const r = decodeConnectRequest(b);
          expect(r.share).toMatch(/^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$/);
        },
      },
    ];

    const validPayload = fc.oneof(
      fc.tuple(errorCode, fc.string({ maxLength: 40 })).map(([code, m]) => encodeReason(code, m)),
      fc.integer({ min: 1, max: 0xffff_ffff }).map(encodeCredit),
      requestHead.map(encodeRequestHead),
      responseHead.map(encodeResponseHead),
      fc
        .record({
          v: fc.constantFrom(1, 1, 2, 0),
          nonce: fc.string(),
          relay: fc.webUrl(),
          windowBytes: fc.nat(),
          maxBodyBytes: fc.nat(),
          pingIntervalMs: fc.nat(),
        })
        .map(encodeJson),
      fc.record({ claims: fc.base64String(), sig: fc.base64String() }).map(encodeJson),
      fc.record({ label: fc.string(), url: fc.webUrl(), sessionId: fc.string(), subdomainUrl: fc.webUrl() }, { requiredKeys: ['label'] }).map(encodeJson),
      fc
        .record(
          { share: fc.oneof(fc.constantFrom('db', 'Web-1', '-x'), fc.string()), secret: fc.string({ maxLength: 210 }), target: fc.string() },
          { requiredKeys: [] },
        )
        .map((r) => encodeJson(r)),
      fc.jsonValue().map((v) => Buffer.from(JSON.stringify(v) ?? 'null')),
    );
    const payload = fc.oneof(
      fc.uint8Array({ maxLength: 120 }).map((a) => Buffer.from(a)),
      fc.tuple(validPayload, fc.array(mutation, { maxLength: 2 })).map(([b, ms]) => ms.reduce((acc, m) => m(acc), b)),
      validPayload,
    );

    test('every payload decoder on random, valid and mutated payloads: well-formed values or its own coded errors', () => {
      fc.assert(
        fc.property(payload, (b) => {
          for (const d of decoders) {
            try {
              outcome(() => d.run(b), d.codes);
            } catch (err) {
              throw new Error(`${d.name} decoder on ${b.toString('hex')}: ${(err as Error).message}`);
            }
          }
        }),
        params(2500),
      );
    });

    test('a head that declares more header fields than its bytes can hold is refused before the list is allocated', () => {
      // 65535 pairs declared in a 7-byte head: the decoder must not build a 131070-slot list first.
      fc.assert(
        fc.property(fc.integer({ min: 5, max: 0xffff }), fc.uint8Array({ maxLength: 16 }), (pairs, tail) => {
          // Status 200, empty reason, then the count: at least 20 bytes of fields declared, at most 16 present.
          const head = Buffer.concat([Buffer.from([0, 200, 0]), Buffer.from([pairs >> 8, pairs & 0xff]), tail]);
          let message = '';
          try {
            decodeResponseHead(head);
          } catch (err) {
            expect(err).toBeInstanceOf(BurrowError);
            expect((err as BurrowError).code).toBe('BURROW_ERR_PROTOCOL');
            message = (err as Error).message;
          }
          // Refused at the count, not later when a field runs out of bytes.
          expect(message).toMatch(/declares \d+ header fields/);
        }),
        params(500),
      );
    });

    test('heads with legal names and values round-trip exactly; so do reasons, credits and connect requests', () => {
      fc.assert(
        fc.property(requestHead, responseHead, (req, res) => {
          expect(decodeRequestHead(encodeRequestHead(req))).toStrictEqual(req);
          expect(decodeResponseHead(encodeResponseHead(res))).toStrictEqual(res);
        }),
        params(1000),
      );
      fc.assert(
        fc.property(errorCode, fc.string({ maxLength: 1200, unit: 'grapheme' }), fc.integer({ min: 1, max: 0xffff_ffff }), (code, message, credit) => {
          const r = decodeReason(encodeReason(code, message));
          expect(r.code).toBe(code);
          // Cut at a character boundary, never past the cap.
          expect(message.startsWith(r.message)).toBe(true);
          expect(Buffer.byteLength(r.message)).toBeLessThanOrEqual(MAX_REASON_BYTES);
          if (Buffer.byteLength(message) <= MAX_REASON_BYTES) expect(r.message).toBe(message);
          expect(decodeCredit(encodeCredit(credit))).toBe(credit);
        }),
        params(1000),
      );
      fc.assert(
        fc.property(
          fc.stringMatching(/^[a-z0-9](?:[a-z0-9-]{0,20}[a-z0-9])?$/),
          fc.option(fc.string({ minLength: 1, maxLength: 200 }), { nil: undefined }),
          fc.option(fc.constantFrom('127.0.0.1:5432', '[::1]:22', 'db.internal:65535'), { nil: undefined }),
          (share, secret, target) => {
            const req = { share, ...(secret !== undefined ? { secret } : {}), ...(target !== undefined ? { target } : {}) };
            expect(decodeConnectRequest(encodeConnectRequest(req))).toStrictEqual(req);
          },
        ),
        params(500),
      );
    });

    test('deeply nested and oversized JSON in HELLO, REGISTER and connect requests is refused with a code', () => {
      const deep = Buffer.from(`${'['.repeat(30_000)}${']'.repeat(30_000)}`);
      const deepObject = Buffer.from(`${'{"a":'.repeat(12_000)}1${'}'.repeat(12_000)}`);
      const big = encodeJson({ claims: 'A'.repeat(MAX_FRAME_PAYLOAD_BYTES - 30), sig: '' });
      expect(outcome(() => decodeRegister(deep), ['BURROW_ERR_BAD_REGISTRATION'])).toStrictEqual({ code: 'BURROW_ERR_BAD_REGISTRATION' });
      expect(outcome(() => decodeRegister(deepObject), ['BURROW_ERR_BAD_REGISTRATION'])).toStrictEqual({ code: 'BURROW_ERR_BAD_REGISTRATION' });
      expect(outcome(() => decodeHello(deepObject), ['BURROW_ERR_PROTOCOL'])).toStrictEqual({ code: 'BURROW_ERR_PROTOCOL' });
      expect(outcome(() => decodeConnectRequest(deep), ['BURROW_ERR_BAD_REQUEST'])).toStrictEqual({ code: 'BURROW_ERR_BAD_REQUEST' });
      // A well-formed but huge REGISTER decodes; verification then refuses its claims.
      const reg = decodeRegister(big);
      expect(
        outcome(() => verifyRegistration(reg, { expectedNonce: 'n', audiences: ['relay.test'], nowMs: Date.now() }), ['BURROW_ERR_BAD_REGISTRATION']),
      ).toStrictEqual({
        code: 'BURROW_ERR_BAD_REGISTRATION',
      });
    });
  });

  describe('registration', () => {
    const NOW = 1_700_000_000_000;
    const NONCE = 'nonce-issued-on-this-connection';
    const AUDIENCE = 'https://relay.test';
    const key = keyPairFromSeed(Buffer.alloc(32, 7));
    const other = keyPairFromSeed(Buffer.alloc(32, 9));
    const VERIFY_CODES: ErrorCode[] = [
      'BURROW_ERR_BAD_REGISTRATION',
      'BURROW_ERR_UNSUPPORTED_VERSION',
      'BURROW_ERR_BAD_SIGNATURE',
      'BURROW_ERR_NONCE_REPLAYED',
      'BURROW_ERR_TOKEN_EXPIRED',
      'BURROW_ERR_WRONG_AUDIENCE',
      'BURROW_ERR_INVALID_NAME',
    ];
    const verify = (p: RegisterPayload, nonce: string | null = NONCE) =>
      outcome(() => verifyRegistration(p, { expectedNonce: nonce ?? undefined, audiences: ['relay.test'], nowMs: NOW }), VERIFY_CODES);
    const good = signRegistration({ secretKey: key.secretKey, nonce: NONCE, audience: AUDIENCE, nowMs: NOW });

    test('the untampered token verifies, and only on its own nonce', () => {
      expect(verify(good)).toMatchObject({ value: { keyId: expect.any(String), label: expect.stringMatching(/^[a-z2-7]{52}$/) } });
      expect(verify(good, 'another-nonce')).toStrictEqual({ code: 'BURROW_ERR_NONCE_REPLAYED' });
      expect(verify(good, null)).toStrictEqual({ code: 'BURROW_ERR_NONCE_REPLAYED' });
    });

    test('mutated tokens (claims or signature bytes, strings swapped) never verify and never throw uncoded', () => {
      const claims = Buffer.from(good.claims, 'base64url');
      const sig = Buffer.from(good.sig, 'base64url');
      fc.assert(
        fc.property(fc.constantFrom('claims', 'sig', 'both', 'text'), fc.array(mutation, { minLength: 1, maxLength: 3 }), fc.string(), (what, ms, text) => {
          const c = what === 'claims' || what === 'both' ? ms.reduce((acc, m) => m(acc), claims) : claims;
          const s = what === 'sig' || what === 'both' ? ms.reduce((acc, m) => m(acc), sig) : sig;
          const p = what === 'text' ? { claims: `${good.claims}${text}`, sig: text } : { claims: c.toString('base64url'), sig: s.toString('base64url') };
          const r = verify(p);
          // A mutation that changed nothing (a truncation to full length) may verify; any real change must not.
          if ('value' in r) expect(p).toStrictEqual(good);
        }),
        params(1500),
      );
    });

    /** Values to put in one claims field: valid ones, near misses, any JSON, or nothing (undefined drops the key). */
    const fieldValues: Record<string, fc.Arbitrary<unknown>> = {
      v: fc.oneof(fc.constant(PROTOCOL_VERSION), fc.constantFrom(0, 2, '1'), fc.jsonValue()),
      pub: fc.oneof(fc.constant(base64url(other.publicKey)), fc.constant(base64url(key.publicKey).slice(1)), fc.jsonValue()),
      nonce: fc.oneof(fc.constant(`${NONCE}x`), fc.jsonValue()),
      iat: fc.oneof(fc.integer({ min: NOW - 120_000, max: NOW + 120_000 }), fc.double(), fc.jsonValue()),
      ttl: fc.oneof(fc.integer({ min: -10, max: 10_000_000 }), fc.jsonValue()),
      aud: fc.oneof(fc.constantFrom('https://evil.test', 'not a url', 'wss://RELAY.test:443', 'http://relay.test:80/x'), fc.jsonValue()),
      session: fc.oneof(fc.stringMatching(/^[A-Za-z0-9._-]{1,63}$/), fc.string(), fc.jsonValue()),
      subdomain: fc.oneof(fc.constantFrom('shop', 'Shop', '-bad', 'a'.repeat(52), 'x'.repeat(64)), fc.string(), fc.jsonValue()),
      token: fc.oneof(fc.string({ minLength: 1, maxLength: 220 }), fc.jsonValue()),
      tcp: fc.oneof(fc.constant(true), fc.jsonValue()),
      connect: fc.oneof(fc.constant(true), fc.jsonValue()),
      share: fc.oneof(
        fc.record({ name: fc.oneof(fc.constant('db'), fc.string()), secretSha256: fc.string({ minLength: 43, maxLength: 43 }) }, { requiredKeys: [] }),
        fc.jsonValue(),
      ),
      access: fc.oneof(
        fc.record(
          { allowCidrs: fc.array(fc.constantFrom('10.0.0.0/8', '::1', 'nope', '1.2.3.4/33')), basicAuth: fc.jsonValue(), headers: fc.jsonValue() },
          { requiredKeys: [] },
        ),
        fc.jsonValue(),
      ),
      extra: fc.jsonValue(),
    };
    const baseClaims = { v: PROTOCOL_VERSION, pub: base64url(key.publicKey), nonce: NONCE, iat: NOW, ttl: 60_000, aud: AUDIENCE };
    /** Valid claims with up to three fields replaced, added or dropped. */
    const claimsObject = fc.shuffledSubarray(Object.keys(fieldValues), { maxLength: 3 }).chain((keys) =>
      fc.tuple(...keys.map((k) => fc.option(fieldValues[k] as fc.Arbitrary<unknown>, { nil: undefined, freq: 6 }))).map((values) => {
        const claims: Record<string, unknown> = { ...baseClaims };
        keys.forEach((k, i) => {
          claims[k] = values[i];
        });
        return claims;
      }),
    );

    test('fuzzed claims, validly signed: a coded refusal, or a verified registration with well-formed fields', () => {
      let verified = 0;
      fc.assert(
        fc.property(claimsObject, fc.boolean(), (claims, signer) => {
          const bytes = Buffer.from(JSON.stringify(claims), 'utf8');
          const secret = signer ? key.secretKey : other.secretKey;
          const payload = { claims: bytes.toString('base64url'), sig: signDetached(bytes, secret).toString('base64url') };
          const r = verify(payload);
          if ('value' in r) {
            const v = r.value;
            expect(v.label).toMatch(/^[a-z2-7]{52}$/);
            expect(v.keyId).toBe(claims.pub);
            // Signed by the other key than the one claimed: never verifies.
            expect(Buffer.from(v.publicKey).equals(Buffer.from(signer ? key.publicKey : other.publicKey))).toBe(true);
            if (v.subdomain !== undefined) expect(v.subdomain).toMatch(/^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$/);
            expect(claims.nonce).toBe(NONCE);
            expect(claims.v).toBe(PROTOCOL_VERSION);
            verified++;
          }
        }),
        params(600),
      );
      // The generator reaches the accepting path too, not only refusals.
      if (RUNS === undefined || RUNS >= 200) expect(verified).toBeGreaterThan(0);
    });
  });
});
