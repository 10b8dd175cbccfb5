/**
 * Pins every number that travels on the wire. These literals are the protocol: if one of
 * these assertions fails, an old agent and a new relay no longer understand each other.
 * Never "fix" this file by changing a literal; renumber nothing.
 */
import { ERRORS, FLAG_FIN, FRAME_HEADER_BYTES, FrameType, MAX_FRAME_PAYLOAD_BYTES, PROTOCOL_VERSION, SESSION_STREAM_ID, StreamKind } from '@burrow/protocol';

describe('frame numbers', () => {
  test('every FrameType number is pinned', () => {
    expect(FrameType).toStrictEqual({
      HELLO: 0x01,
      REGISTER: 0x02,
      REGISTERED: 0x03,
      ERROR: 0x04,
      PING: 0x05,
      PONG: 0x06,
      GOAWAY: 0x07,
      OPEN: 0x10,
      RESPONSE: 0x11,
      DATA: 0x12,
      CREDIT: 0x13,
      END: 0x14,
      RESET: 0x15,
    });
  });

  test('FrameType numbers are unique and fit in a u8', () => {
    const values = Object.values(FrameType);
    expect(new Set(values).size).toBe(values.length);
    for (const v of values) {
      expect(Number.isInteger(v)).toBe(true);
      expect(v).toBeGreaterThan(0);
      expect(v).toBeLessThanOrEqual(0xff);
    }
  });

  test('FLAG_FIN is bit 0', () => {
    expect(FLAG_FIN).toBe(0x01);
  });

  test('StreamKind numbers are pinned', () => {
    expect(StreamKind).toStrictEqual({ HTTP: 1, WEBSOCKET: 2, TCP: 3 });
  });
});

describe('wire constants', () => {
  test('header is 10 bytes: type u8, flags u8, stream id u32, length u32', () => {
    expect(FRAME_HEADER_BYTES).toBe(10);
    expect(FRAME_HEADER_BYTES).toBe(1 + 1 + 4 + 4);
  });
  test('payload cap is 64 KiB', () => {
    expect(MAX_FRAME_PAYLOAD_BYTES).toBe(65536);
  });
  test('protocol version is 1', () => {
    expect(PROTOCOL_VERSION).toBe(1);
  });
  test('session stream id is 0', () => {
    expect(SESSION_STREAM_ID).toBe(0);
  });
});

/** code → [wire, HTTP status]. Written out by hand; must never be generated from ERRORS. */
const PINNED_ERRORS: Record<string, readonly [wire: number, status: number]> = {
  BURROW_ERR_PROTOCOL: [1, 502],
  BURROW_ERR_FRAME_TOO_LARGE: [2, 502],
  BURROW_ERR_UNSUPPORTED_VERSION: [3, 502],
  BURROW_ERR_REGISTRATION_TIMEOUT: [10, 502],
  BURROW_ERR_BAD_REGISTRATION: [11, 400],
  BURROW_ERR_BAD_SIGNATURE: [12, 401],
  BURROW_ERR_NONCE_REPLAYED: [13, 401],
  BURROW_ERR_TOKEN_EXPIRED: [14, 401],
  BURROW_ERR_WRONG_AUDIENCE: [15, 401],
  BURROW_ERR_NAME_TAKEN: [16, 409],
  BURROW_ERR_INVALID_NAME: [17, 400],
  BURROW_ERR_SESSION_REPLACED: [18, 502],
  BURROW_ERR_RELAY_SHUTTING_DOWN: [19, 503],
  BURROW_ERR_AGENT_SHUTDOWN: [20, 502],
  BURROW_ERR_HEARTBEAT_TIMEOUT: [21, 502],
  BURROW_ERR_NAME_LIMIT: [22, 503],
  BURROW_ERR_UNKNOWN_TUNNEL: [100, 404],
  BURROW_ERR_TUNNEL_OFFLINE: [101, 502],
  BURROW_ERR_LOCAL_UNREACHABLE: [102, 502],
  BURROW_ERR_LOCAL_ERROR: [103, 502],
  BURROW_ERR_TIMEOUT: [104, 504],
  BURROW_ERR_REQUEST_TOO_LARGE: [105, 413],
  BURROW_ERR_RESPONSE_TOO_LARGE: [106, 502],
  BURROW_ERR_TOO_MANY_STREAMS: [107, 503],
  BURROW_ERR_AGENT_DISCONNECTED: [108, 502],
  BURROW_ERR_CANCELLED: [109, 499],
  BURROW_ERR_FLOW_CONTROL: [110, 502],
  BURROW_ERR_BAD_REQUEST: [111, 400],
  BURROW_ERR_HEADERS_TOO_LARGE: [112, 431],
  BURROW_ERR_NOT_FOUND: [113, 404],
  BURROW_ERR_CLIENT_TIMEOUT: [114, 408],
  BURROW_ERR_BUS_UNAVAILABLE: [115, 503],
  BURROW_ERR_NODE_UNREACHABLE: [116, 502],
  BURROW_ERR_RATE_LIMITED: [117, 429],
  BURROW_ERR_VISITOR_UNAUTHORIZED: [118, 401],
  BURROW_ERR_VISITOR_FORBIDDEN: [119, 403],
  BURROW_ERR_QUOTA_STREAMS: [120, 503],
  BURROW_ERR_SESSION_GONE: [130, 502],
  BURROW_ERR_TOKEN_REQUIRED: [23, 401],
  BURROW_ERR_TOKEN_INVALID: [24, 401],
  BURROW_ERR_TOKEN_REVOKED: [25, 401],
  BURROW_ERR_QUOTA_TUNNELS: [26, 429],
  BURROW_ERR_NAME_RESERVED: [27, 409],
  BURROW_ERR_ADMIN_DISCONNECT: [28, 502],
  BURROW_ERR_TCP_DISABLED: [29, 400],
  BURROW_ERR_TCP_PORTS_EXHAUSTED: [30, 503],
  BURROW_ERR_TCP_CONNECTION_LIMIT: [121, 503],
  BURROW_ERR_TCP_IDLE: [122, 408],
  BURROW_ERR_SHARE_DENIED: [123, 403],
  BURROW_ERR_TARGET_NOT_ALLOWED: [124, 403],
  BURROW_ERR_URL_TOO_LARGE: [125, 414],
  BURROW_ERR_EXPECTATION_FAILED: [126, 417],
  BURROW_ERR_INTERNAL: [199, 500],
};

describe('error table', () => {
  test('the set of error codes is exactly the pinned set (no code added or removed silently)', () => {
    expect(Object.keys(ERRORS).sort()).toStrictEqual(Object.keys(PINNED_ERRORS).sort());
  });

  test.each(Object.entries(PINNED_ERRORS))('%s has its pinned wire number and status', (code, [wire, status]) => {
    const spec = (ERRORS as Record<string, { wire: number; status: number; close: number; title: string }>)[code];
    expect(spec).toBeDefined();
    expect(spec?.wire).toBe(wire);
    expect(spec?.status).toBe(status);
  });

  test('wire numbers are unique u16 values', () => {
    const wires = Object.values(ERRORS).map((e) => e.wire);
    expect(new Set(wires).size).toBe(wires.length);
    for (const w of wires) {
      expect(Number.isInteger(w)).toBe(true);
      expect(w).toBeGreaterThan(0);
      expect(w).toBeLessThanOrEqual(0xffff);
    }
  });

  test('every entry has a WebSocket close code and a title', () => {
    for (const spec of Object.values(ERRORS)) {
      expect(spec.close).toBeGreaterThanOrEqual(1000);
      expect(spec.close).toBeLessThanOrEqual(4999);
      expect(spec.title.length).toBeGreaterThan(0);
    }
  });
});
