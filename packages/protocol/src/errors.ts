/**
 * Every error burrow can report, in one table: stable string code, wire number (in ERROR,
 * RESET and GOAWAY frames), the HTTP status a public client sees, and the WebSocket close
 * code an agent session is closed with. docs/ERRORS.md has an entry for each; a test checks.
 */

export interface ErrorSpec {
  /** Number carried on the wire (u16). Never renumber. */
  readonly wire: number;
  /** HTTP status when the error answers a public request. */
  readonly status: number;
  /** WebSocket close code when the error ends an agent session. */
  readonly close: number;
  /** What happened, for people. */
  readonly title: string;
}

export const ERRORS = {
  // Session level: sent in ERROR frames, then the agent socket is closed.
  BURROW_ERR_PROTOCOL: { wire: 1, status: 502, close: 1002, title: 'Malformed or unexpected frame' },
  BURROW_ERR_FRAME_TOO_LARGE: { wire: 2, status: 502, close: 1009, title: 'Frame larger than the protocol allows' },
  BURROW_ERR_UNSUPPORTED_VERSION: { wire: 3, status: 502, close: 4003, title: 'Protocol version not supported' },
  BURROW_ERR_REGISTRATION_TIMEOUT: { wire: 10, status: 502, close: 4008, title: 'No registration in time' },
  BURROW_ERR_BAD_REGISTRATION: { wire: 11, status: 400, close: 4001, title: 'Registration is malformed' },
  BURROW_ERR_BAD_SIGNATURE: { wire: 12, status: 401, close: 4001, title: 'Registration signature does not verify' },
  BURROW_ERR_NONCE_REPLAYED: { wire: 13, status: 401, close: 4001, title: 'Registration nonce is not the one issued, or was used' },
  BURROW_ERR_TOKEN_EXPIRED: { wire: 14, status: 401, close: 4001, title: 'Registration token expired or not yet valid' },
  BURROW_ERR_WRONG_AUDIENCE: { wire: 15, status: 401, close: 4001, title: 'Registration is for another relay' },
  BURROW_ERR_NAME_TAKEN: { wire: 16, status: 409, close: 4009, title: 'Subdomain is bound to another key' },
  BURROW_ERR_INVALID_NAME: { wire: 17, status: 400, close: 4009, title: 'Subdomain or session name is not valid' },
  BURROW_ERR_SESSION_REPLACED: { wire: 18, status: 502, close: 4010, title: 'A newer session of the same tunnel took over' },
  BURROW_ERR_RELAY_SHUTTING_DOWN: { wire: 19, status: 503, close: 1001, title: 'Relay is shutting down' },
  BURROW_ERR_AGENT_SHUTDOWN: { wire: 20, status: 502, close: 1000, title: 'Agent is shutting down' },
  BURROW_ERR_HEARTBEAT_TIMEOUT: { wire: 21, status: 502, close: 4011, title: 'Peer stopped answering pings' },
  BURROW_ERR_NAME_LIMIT: { wire: 22, status: 503, close: 4009, title: 'Relay has no room for new names' },
  BURROW_ERR_TOKEN_REQUIRED: { wire: 23, status: 401, close: 4012, title: 'This relay needs a tenant token' },
  BURROW_ERR_TOKEN_INVALID: { wire: 24, status: 401, close: 4012, title: 'Tenant token is not valid' },
  BURROW_ERR_TOKEN_REVOKED: { wire: 25, status: 401, close: 4012, title: 'Tenant token was revoked' },
  BURROW_ERR_QUOTA_TUNNELS: { wire: 26, status: 429, close: 4013, title: 'Tenant has its maximum number of tunnels' },
  BURROW_ERR_NAME_RESERVED: { wire: 27, status: 409, close: 4009, title: 'Name is reserved for another tenant' },
  BURROW_ERR_ADMIN_DISCONNECT: { wire: 28, status: 502, close: 4014, title: 'An operator disconnected this tunnel' },
  BURROW_ERR_TCP_DISABLED: { wire: 29, status: 400, close: 4015, title: 'This relay offers no public TCP ports' },
  BURROW_ERR_TCP_PORTS_EXHAUSTED: { wire: 30, status: 503, close: 4015, title: "Every port of the relay's TCP range is taken" },

  // Stream level: sent in RESET frames; the public client gets `status`.
  BURROW_ERR_UNKNOWN_TUNNEL: { wire: 100, status: 404, close: 1011, title: 'No tunnel with this name' },
  BURROW_ERR_TUNNEL_OFFLINE: { wire: 101, status: 502, close: 1011, title: 'Tunnel is known but its agent is offline' },
  BURROW_ERR_LOCAL_UNREACHABLE: { wire: 102, status: 502, close: 1011, title: 'Agent could not reach the local app' },
  BURROW_ERR_LOCAL_ERROR: { wire: 103, status: 502, close: 1011, title: 'Local app failed during the response' },
  BURROW_ERR_TIMEOUT: { wire: 104, status: 504, close: 1011, title: 'Local app did not answer in time' },
  BURROW_ERR_REQUEST_TOO_LARGE: { wire: 105, status: 413, close: 1009, title: 'Request body over the limit' },
  BURROW_ERR_RESPONSE_TOO_LARGE: { wire: 106, status: 502, close: 1009, title: 'Response body over the limit' },
  BURROW_ERR_TOO_MANY_STREAMS: { wire: 107, status: 503, close: 1013, title: 'Too many concurrent requests on this tunnel' },
  BURROW_ERR_AGENT_DISCONNECTED: { wire: 108, status: 502, close: 1011, title: 'Agent disconnected during the request' },
  BURROW_ERR_CANCELLED: { wire: 109, status: 499, close: 1001, title: 'Client went away' },
  BURROW_ERR_FLOW_CONTROL: { wire: 110, status: 502, close: 1002, title: 'Peer sent more than its credit allowed' },
  BURROW_ERR_BAD_REQUEST: { wire: 111, status: 400, close: 1002, title: 'Request cannot be forwarded' },
  BURROW_ERR_HEADERS_TOO_LARGE: { wire: 112, status: 431, close: 1009, title: 'Request head too large' },
  BURROW_ERR_NOT_FOUND: { wire: 113, status: 404, close: 1011, title: 'No such relay route' },
  BURROW_ERR_CLIENT_TIMEOUT: { wire: 114, status: 408, close: 1001, title: 'Request not received in time' },
  BURROW_ERR_BUS_UNAVAILABLE: { wire: 115, status: 503, close: 1013, title: 'Relay cannot reach the shared bus (Redis)' },
  BURROW_ERR_NODE_UNREACHABLE: { wire: 116, status: 502, close: 1011, title: 'Relay node holding the tunnel is unreachable' },
  BURROW_ERR_RATE_LIMITED: { wire: 117, status: 429, close: 1013, title: "Tenant's request rate is over its quota" },
  BURROW_ERR_VISITOR_UNAUTHORIZED: { wire: 118, status: 401, close: 1008, title: 'This tunnel needs credentials' },
  BURROW_ERR_VISITOR_FORBIDDEN: { wire: 119, status: 403, close: 1008, title: 'Visitor address not allowed on this tunnel' },
  BURROW_ERR_QUOTA_STREAMS: { wire: 120, status: 503, close: 1013, title: "Tenant's concurrent requests are at their quota" },
  BURROW_ERR_TCP_CONNECTION_LIMIT: { wire: 121, status: 503, close: 1013, title: 'Tunnel has its maximum number of TCP connections' },
  BURROW_ERR_TCP_IDLE: { wire: 122, status: 408, close: 1001, title: 'TCP connection idle for too long' },
  BURROW_ERR_SHARE_DENIED: { wire: 123, status: 403, close: 1008, title: 'No proof of access to this private share' },
  BURROW_ERR_TARGET_NOT_ALLOWED: { wire: 124, status: 403, close: 1008, title: "Target is not on the share's allow-list" },
  BURROW_ERR_URL_TOO_LARGE: { wire: 125, status: 414, close: 1009, title: 'Request target too long' },
  BURROW_ERR_EXPECTATION_FAILED: { wire: 126, status: 417, close: 1002, title: 'Expect header names an expectation the relay cannot meet' },
  BURROW_ERR_SESSION_GONE: { wire: 130, status: 502, close: 1011, title: 'The tunnel session ended or moved before the request reached it' },
  BURROW_ERR_INTERNAL: { wire: 199, status: 500, close: 1011, title: 'Internal relay error' },
} as const satisfies Record<string, ErrorSpec>;

export type ErrorCode = keyof typeof ERRORS;

const byWire = new Map<number, ErrorCode>();
for (const [code, spec] of Object.entries(ERRORS) as [ErrorCode, ErrorSpec][]) {
  byWire.set(spec.wire, code);
}

/** The code for a wire number; unknown numbers map to BURROW_ERR_PROTOCOL's sibling INTERNAL. */
export function codeFromWire(wire: number): ErrorCode {
  return byWire.get(wire) ?? 'BURROW_ERR_INTERNAL';
}

export function isErrorCode(value: unknown): value is ErrorCode {
  return typeof value === 'string' && Object.hasOwn(ERRORS, value);
}

/** An error with a stable code; catch sites branch on `code`, never on the message. */
export class BurrowError extends Error {
  readonly code: ErrorCode;
  constructor(code: ErrorCode, message?: string) {
    super(message ?? ERRORS[code].title);
    this.name = 'BurrowError';
    this.code = code;
  }
  get status(): number {
    return ERRORS[this.code].status;
  }
  get closeCode(): number {
    return ERRORS[this.code].close;
  }
}
