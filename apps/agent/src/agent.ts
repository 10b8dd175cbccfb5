/**
 * The agent: dials the relay over a WebSocket, registers with a signed token, serves the
 * relay's streams against the local app, watches for silence, and reconnects with capped
 * exponential backoff and jitter to get the same URL back. Emits events; prints nothing.
 */
import { EventEmitter } from 'node:events';
import http from 'node:http';
import https from 'node:https';
import { FrameBatcher, MAX_BATCH_BYTES, Mux, type MuxStream, sendVectored } from '@burrow/mux';
import {
  type AccessRules,
  BurrowError,
  decodeFrames,
  decodeHello,
  decodeReason,
  decodeRegistered,
  decodeRequestHead,
  type ErrorCode,
  encodeJson,
  encodeReason,
  type Frame,
  FrameType,
  hostPort,
  type KeyPair,
  labelFor,
  type RequestHead,
  StreamKind,
  signRegistration,
} from '@burrow/protocol';
import WebSocket from 'ws';
import { forwardHttp, forwardUpgrade, type LocalForwardContext, type RequestEvent } from './localForward';
import { type LocalTarget, parseTcpTarget } from './localTarget';
import { type ConnectionEvent, forwardTcp, type LocalTcpContext } from './localTcp';

/** Path of the agent endpoint on the relay's apex host. */
export const AGENT_CONNECT_PATH = '/_burrow/connect';
/** Largest WebSocket message accepted from the relay (it batches whole frames). */
const MAX_RELAY_MESSAGE_BYTES = 1024 * 1024 + 64 * 1024;

export interface AgentOptions {
  /**
   * Relay base URL: http(s)://host[:port] (ws/wss accepted). Several (an array, or
   * comma-separated) are tried in turn: a reconnect moves on to the next one.
   */
  readonly relay: string | readonly string[];
  readonly target: LocalTarget;
  readonly keyPair: KeyPair;
  readonly subdomain?: string;
  readonly session?: string;
  /** Reconnect when no frame came from the relay for this long. */
  readonly deadAfterMs?: number;
  readonly reconnectInitialMs?: number;
  readonly reconnectMaxMs?: number;
  /** 'preserve' (default) keeps the public Host header; 'rewrite' uses the target's; anything else is sent as is. */
  readonly hostHeader?: string;
  /** Accept self-signed certificates from an https local target. */
  readonly insecureLocalTls?: boolean;
  /** Visitor access rules the relay enforces for this tunnel (see accessRulesFrom). */
  readonly access?: AccessRules;
  /** Tenant token, for relays that require one. */
  readonly token?: string;
  /** `burrow tcp`: ask for a public TCP port and carry raw TCP connections to `target` (host and port). */
  readonly tcp?: boolean;
  /**
   * `burrow share tcp`: a private share under `name` (no public URL or port). Connections reach
   * `target`, or another target of `allow` when the connecting agent asks for one; anything else
   * is refused with BURROW_ERR_TARGET_NOT_ALLOWED.
   */
  readonly share?: { readonly name: string; readonly secretSha256?: string; readonly allow?: readonly LocalTarget[] };
  /** `burrow connect`: register as a connecting agent; streams are opened with openStream(). */
  readonly connect?: boolean;
}

export interface OnlineEvent {
  readonly url: string;
  readonly label: string;
  readonly subdomainUrl?: string;
  readonly sessionId: string;
  /** True after a reconnect. */
  readonly reconnected: boolean;
  /** The relay URL this session is connected through. */
  readonly relay: string;
  /** tcp://<host>:<port>, for a TCP tunnel. */
  readonly tcpUrl?: string;
  /** The share's name, for a sharing agent. */
  readonly share?: string;
}

export interface ReconnectingEvent {
  readonly attempt: number;
  readonly delayMs: number;
  readonly reason: string;
}

/** Registration errors that retrying cannot fix: the agent stops and reports them. */
const FATAL: ReadonlySet<ErrorCode> = new Set<ErrorCode>([
  'BURROW_ERR_BAD_SIGNATURE',
  'BURROW_ERR_BAD_REGISTRATION',
  'BURROW_ERR_WRONG_AUDIENCE',
  'BURROW_ERR_NAME_TAKEN',
  'BURROW_ERR_NAME_LIMIT',
  'BURROW_ERR_INVALID_NAME',
  'BURROW_ERR_UNSUPPORTED_VERSION',
  'BURROW_ERR_TOKEN_EXPIRED',
  'BURROW_ERR_SESSION_REPLACED',
  'BURROW_ERR_TOKEN_REQUIRED',
  'BURROW_ERR_TOKEN_INVALID',
  'BURROW_ERR_TOKEN_REVOKED',
  'BURROW_ERR_QUOTA_TUNNELS',
  'BURROW_ERR_NAME_RESERVED',
  'BURROW_ERR_TCP_DISABLED',
]);

/** The OPEN header naming the share target a connecting agent asked for (the relay sets it). */
const SHARE_TARGET_HEADER = 'burrow-target';

export interface AgentEvents {
  online: [OnlineEvent];
  request: [RequestEvent];
  /** A TCP connection ended (TCP tunnels). */
  connection: [ConnectionEvent];
  reconnecting: [ReconnectingEvent];
  offline: [{ reason: string }];
  fatal: [BurrowError];
  closed: [];
}

/** host:port of a TCP target (IPv6 in brackets). */
export function targetHostPort(t: LocalTarget): string {
  return hostPort(t.hostname, t.port);
}

function sameTarget(a: LocalTarget, b: LocalTarget): boolean {
  return a.port === b.port && a.hostname.toLowerCase() === b.hostname.toLowerCase();
}

/** The relay URLs of an option value: a list, or one string with commas. */
export function relayList(relay: string | readonly string[]): string[] {
  const list = (typeof relay === 'string' ? relay.split(',') : [...relay]).map((r) => r.trim()).filter((r) => r !== '');
  if (list.length === 0) throw new BurrowError('BURROW_ERR_BAD_REQUEST', 'no relay URL given');
  return list;
}

export function connectUrl(relay: string): string {
  const u = new URL(relay);
  if (u.protocol === 'http:') u.protocol = 'ws:';
  else if (u.protocol === 'https:') u.protocol = 'wss:';
  else if (u.protocol !== 'ws:' && u.protocol !== 'wss:')
    throw new BurrowError('BURROW_ERR_BAD_REQUEST', `relay URL must be http(s) or ws(s), not ${u.protocol}`);
  u.pathname = `${u.pathname.replace(/\/+$/, '')}${AGENT_CONNECT_PATH}`;
  u.search = '';
  u.hash = '';
  return u.toString();
}

const zeroMask = (mask: Buffer): void => {
  // The agent is not a browser: masking protects nothing here and costs a pass over every byte.
  mask.fill(0);
};

/**
 * One WebSocket to a relay and the streams it carries. An agent has one current connection; a
 * connection whose relay drains (GOAWAY) keeps serving its streams in flight while the agent
 * registers anew elsewhere, then closes.
 */
class Connection {
  readonly ws: WebSocket;
  readonly batcher: FrameBatcher;
  mux: Mux | undefined;
  lastReceivedMs = Date.now();
  closeReason = '';
  fatalError: BurrowError | undefined;
  registered = false;
  /** Its relay sent GOAWAY: no longer current; closes once its relay does. */
  draining = false;
  effectiveDeadAfterMs: number;
  watchdog: NodeJS.Timeout | undefined;

  constructor(
    readonly relay: string,
    deadAfterMs: number,
  ) {
    this.effectiveDeadAfterMs = deadAfterMs;
    this.ws = new WebSocket(connectUrl(relay), {
      perMessageDeflate: false,
      maxPayload: MAX_RELAY_MESSAGE_BYTES,
      generateMask: zeroMask,
      handshakeTimeout: Math.max(1000, deadAfterMs),
    });
    const ws = this.ws;
    this.batcher = new FrameBatcher(
      (batch) => {
        if (ws.readyState === WebSocket.OPEN) ws.send(batch, { binary: true });
      },
      setImmediate,
      MAX_BATCH_BYTES,
      (parts, bytes) => sendVectored(ws, parts, bytes),
    );
  }
}

export class Agent extends EventEmitter<AgentEvents> {
  readonly label: string;
  /** The connection new streams arrive on (or the one being established). */
  private conn: Connection | undefined;
  /** Connections whose relay drains, finishing their streams. */
  private readonly drainingConns = new Set<Connection>();
  private attempt = 0;
  private everOnline = false;
  private stopping = false;
  private stopped = false;
  private reconnectTimer: NodeJS.Timeout | undefined;
  private readonly local: LocalForwardContext;
  private readonly localTcp: LocalTcpContext;
  private readonly deadAfterMs: number;
  private readonly relays: string[];
  private relayIndex = 0;
  private closedPromise: Promise<void> | undefined;

  constructor(private readonly options: AgentOptions) {
    super();
    this.label = labelFor(options.keyPair.publicKey, options.session);
    this.relays = relayList(options.relay);
    for (const r of this.relays) connectUrl(r); // validate them all now
    this.deadAfterMs = options.deadAfterMs ?? 20_000;
    const agentOptions = { keepAlive: true, maxFreeSockets: 256, scheduling: 'lifo' as const };
    this.local = {
      target: options.target,
      httpAgent:
        options.target.protocol === 'https:'
          ? new https.Agent({ ...agentOptions, rejectUnauthorized: options.insecureLocalTls !== true })
          : new http.Agent(agentOptions),
      hostHeader: options.hostHeader ?? 'preserve',
      onRequest: (e) => this.emit('request', e),
    };
    this.localTcp = { target: options.target, onConnection: (e) => this.emit('connection', e) };
  }

  /** Starts connecting; returns at once. Listen for 'online', 'fatal', 'reconnecting'. */
  start(): void {
    if (this.conn !== undefined || this.stopping) return;
    this.dial();
  }

  private dial(): void {
    this.reconnectTimer = undefined;
    if (this.stopping) return;
    const relay = this.relays[this.relayIndex % this.relays.length] as string;
    const c = new Connection(relay, this.deadAfterMs);
    this.conn = c;
    const { ws, batcher } = c;
    ws.on('message', (data, isBinary) => {
      c.lastReceivedMs = Date.now();
      try {
        if (!isBinary) throw new BurrowError('BURROW_ERR_PROTOCOL', 'text message from the relay');
        decodeFrames(data as Buffer, 'relayToAgent', (frame) => this.onFrame(c, frame));
      } catch (err) {
        const e = err instanceof BurrowError ? err : new BurrowError('BURROW_ERR_PROTOCOL', String(err));
        c.closeReason = `${e.code}: ${e.message}`;
        if (FATAL.has(e.code)) c.fatalError = e;
        batcher.sendFrame(FrameType.ERROR, 0, 0, encodeReason(e.code, e.message));
        batcher.flush();
        ws.close(1002);
      }
    });
    ws.on('unexpected-response', (_req, res) => {
      c.closeReason =
        res.statusCode === 503
          ? `relay ${relay} is not taking agents now (HTTP 503)`
          : `relay answered HTTP ${res.statusCode} at ${connectUrl(relay)}; is --relay right?`;
      res.resume();
      ws.terminate();
    });
    ws.on('error', (err) => {
      if (c.closeReason === '') c.closeReason = err.message;
    });
    ws.on('close', (code) => this.onClosed(c, code));
    const tickMs = Math.max(25, Math.floor(this.deadAfterMs / 4));
    let lastTick = Date.now();
    c.watchdog = setInterval(() => {
      const now = Date.now();
      // After a stall of this process, let pending socket reads run before judging the relay.
      const stalled = now - lastTick > 3 * tickMs;
      lastTick = now;
      if (!stalled && now - c.lastReceivedMs > c.effectiveDeadAfterMs) {
        c.closeReason = `no frame from the relay for ${((now - c.lastReceivedMs) / 1000).toFixed(1)} s`;
        ws.terminate();
      }
    }, tickMs);
    c.watchdog.unref();
  }

  private onFrame(c: Connection, frame: Frame): void {
    const { batcher } = c;
    switch (frame.type) {
      case FrameType.HELLO: {
        if (c.mux !== undefined) throw new BurrowError('BURROW_ERR_PROTOCOL', 'second hello on one connection');
        const hello = decodeHello(frame.payload);
        // The relay pings after pingIntervalMs of silence: never give up on it sooner than that allows.
        c.effectiveDeadAfterMs = Math.max(this.deadAfterMs, 2 * hello.pingIntervalMs);
        c.mux = new Mux(batcher, { role: 'agent', windowBytes: hello.windowBytes, onOpen: this.onOpen });
        const register = signRegistration({
          secretKey: this.options.keyPair.secretKey,
          nonce: hello.nonce,
          audience: c.relay,
          nowMs: Date.now(),
          ...(this.options.session !== undefined ? { session: this.options.session } : {}),
          ...(this.options.subdomain !== undefined ? { subdomain: this.options.subdomain } : {}),
          ...(this.options.access !== undefined ? { access: this.options.access } : {}),
          ...(this.options.token !== undefined ? { token: this.options.token } : {}),
          ...(this.options.tcp === true ? { tcp: true } : {}),
          ...(this.options.share !== undefined
            ? {
                share: {
                  name: this.options.share.name,
                  ...(this.options.share.secretSha256 !== undefined ? { secretSha256: this.options.share.secretSha256 } : {}),
                },
              }
            : {}),
          ...(this.options.connect === true ? { connect: true } : {}),
        });
        batcher.sendFrame(FrameType.REGISTER, 0, 0, encodeJson(register));
        return;
      }
      case FrameType.REGISTERED: {
        const r = decodeRegistered(frame.payload);
        c.registered = true;
        const reconnected = this.everOnline;
        this.everOnline = true;
        this.attempt = 0;
        this.emit('online', {
          url: r.url,
          label: r.label,
          sessionId: r.sessionId,
          reconnected,
          relay: c.relay,
          ...(r.subdomainUrl !== undefined ? { subdomainUrl: r.subdomainUrl } : {}),
          ...(r.tcpUrl !== undefined ? { tcpUrl: r.tcpUrl } : {}),
          ...(r.share !== undefined ? { share: r.share } : {}),
        });
        return;
      }
      case FrameType.ERROR: {
        const r = decodeReason(frame.payload);
        c.closeReason = `${r.code}: ${r.message}`;
        // A draining connection is replaced by this agent's own new session: expected, not fatal.
        if (FATAL.has(r.code) && !(c.draining && r.code === 'BURROW_ERR_SESSION_REPLACED')) c.fatalError = new BurrowError(r.code, r.message);
        return;
      }
      case FrameType.GOAWAY: {
        const r = decodeReason(frame.payload);
        c.closeReason = `relay going away: ${r.message}`;
        this.moveAway(c);
        return;
      }
      case FrameType.PING:
        batcher.sendFrame(FrameType.PONG, 0, 0, Buffer.from(frame.payload));
        return;
      case FrameType.PONG:
        return;
      default:
        if (c.mux === undefined) throw new BurrowError('BURROW_ERR_PROTOCOL', 'stream frame before hello');
        c.mux.receive(frame);
    }
  }

  /**
   * The relay behind `c` drains: register again (the next relay URL, or the same one behind a
   * load balancer, which sends us to another node) while `c` finishes its streams.
   */
  private moveAway(c: Connection): void {
    if (c.draining || this.conn !== c || this.stopping) return;
    c.draining = true;
    this.drainingConns.add(c);
    this.conn = undefined;
    this.relayIndex++;
    this.emit('offline', { reason: c.closeReason });
    this.dial();
  }

  private readonly onOpen = (stream: MuxStream, payload: Buffer, fin: boolean): void => {
    let head: ReturnType<typeof decodeRequestHead>;
    try {
      head = decodeRequestHead(payload);
    } catch (err) {
      stream.reset('BURROW_ERR_PROTOCOL', (err as Error).message);
      return;
    }
    if (this.options.share !== undefined) {
      if (head.kind === StreamKind.TCP) this.forwardShare(stream, head);
      else stream.reset('BURROW_ERR_BAD_REQUEST', 'this agent forwards a private TCP share only (burrow share tcp)');
    } else if (this.options.connect === true) {
      stream.reset('BURROW_ERR_BAD_REQUEST', 'a connecting agent serves no streams (burrow connect)');
    } else if (this.options.tcp === true) {
      if (head.kind === StreamKind.TCP) forwardTcp(stream, head, this.localTcp);
      else stream.reset('BURROW_ERR_BAD_REQUEST', 'this agent forwards raw TCP only (burrow tcp)');
    } else if (head.kind === StreamKind.HTTP) forwardHttp(stream, head, fin, this.local);
    else if (head.kind === StreamKind.WEBSOCKET) forwardUpgrade(stream, head, this.local);
    else stream.reset('BURROW_ERR_BAD_REQUEST', 'this agent forwards HTTP and WebSocket only');
  };

  /** A share connection: to the main target, or to the allowed target the connecting agent named. */
  private forwardShare(stream: MuxStream, head: RequestHead): void {
    const share = this.options.share as NonNullable<AgentOptions['share']>;
    const allowed = [this.options.target, ...(share.allow ?? [])];
    let target = this.options.target;
    const i = head.headers.findIndex((h, n) => n % 2 === 0 && h.toLowerCase() === SHARE_TARGET_HEADER);
    if (i >= 0) {
      const asked = head.headers[i + 1] as string;
      let wanted: LocalTarget | undefined;
      try {
        wanted = parseTcpTarget(asked);
      } catch {
        wanted = undefined;
      }
      const match = wanted === undefined ? undefined : allowed.find((t) => sameTarget(t, wanted as LocalTarget));
      if (match === undefined) {
        const detail = `target ${asked} is not shared by "${share.name}"; allowed: ${allowed.map(targetHostPort).join(', ')}`;
        stream.reset('BURROW_ERR_TARGET_NOT_ALLOWED', detail);
        this.emit('connection', { client: head.target, durationMs: 0, bytesIn: 0, bytesOut: 0, error: 'BURROW_ERR_TARGET_NOT_ALLOWED', detail });
        return;
      }
      target = match;
    }
    forwardTcp(stream, head, this.localTcp, target);
  }

  /**
   * Opens a stream to the relay on the registered connection (a connecting agent's; see
   * Connector). undefined while not registered.
   */
  openStream(): MuxStream | undefined {
    const c = this.conn;
    if (c === undefined || !c.registered || c.mux === undefined || this.stopping) return undefined;
    return c.mux.open();
  }

  private onClosed(c: Connection, code: number): void {
    c.batcher.close();
    c.mux?.abortAll({ code: 'BURROW_ERR_AGENT_DISCONNECTED', message: 'connection to the relay closed' });
    c.mux = undefined;
    clearInterval(c.watchdog);
    this.drainingConns.delete(c);
    if (this.conn !== c) {
      // A drained connection finished; the current one carries on.
      if (this.stopping && this.conn === undefined && this.drainingConns.size === 0) this.finish();
      return;
    }
    this.conn = undefined;
    const reason = c.closeReason !== '' ? c.closeReason : `connection closed (${code})`;
    if (this.stopping) {
      if (this.drainingConns.size === 0) this.finish();
      return;
    }
    if (c.fatalError !== undefined) {
      const err = c.fatalError;
      this.stopping = true;
      for (const d of this.drainingConns) d.ws.terminate();
      this.finish();
      this.emit('fatal', err);
      return;
    }
    this.emit('offline', { reason });
    this.attempt++;
    // Several relays: try the next one; the backoff grows once every relay was tried.
    this.relayIndex++;
    const initial = this.options.reconnectInitialMs ?? 250;
    const max = this.options.reconnectMaxMs ?? 15_000;
    const round = Math.ceil(this.attempt / this.relays.length);
    // First retry almost at once; then exponential, capped, with jitter so a fleet does not stampede.
    const base = round === 1 ? initial / 2 : Math.min(max, initial * 2 ** (round - 1));
    const delayMs = Math.round(base / 2 + Math.random() * (base / 2));
    this.emit('reconnecting', { attempt: this.attempt, delayMs, reason });
    this.reconnectTimer = setTimeout(() => this.dial(), delayMs);
  }

  private finish(): void {
    if (this.stopped) return;
    this.stopped = true;
    clearTimeout(this.reconnectTimer);
    this.local.httpAgent.destroy();
    this.emit('closed');
  }

  /** Cuts the current relay connection without a goodbye, as a network failure would (fault drills, tests). */
  dropConnection(): void {
    this.conn?.ws.terminate();
  }

  /** Tells the relay it is leaving, closes, resolves when the sockets are gone. Idempotent. */
  close(): Promise<void> {
    this.closedPromise ??= new Promise<void>((resolve) => {
      this.stopping = true;
      clearTimeout(this.reconnectTimer);
      const conns = [...(this.conn !== undefined ? [this.conn] : []), ...this.drainingConns];
      if (conns.length === 0) {
        this.finish();
        resolve();
        return;
      }
      this.once('closed', resolve);
      for (const c of conns) {
        const { ws } = c;
        if (ws.readyState === WebSocket.OPEN) {
          c.batcher.sendFrame(FrameType.GOAWAY, 0, 0, encodeReason('BURROW_ERR_AGENT_SHUTDOWN', 'agent stopped'));
          c.batcher.flush();
          ws.close(1000);
          setTimeout(() => ws.terminate(), 2000).unref();
        } else {
          ws.terminate();
        }
      }
    });
    return this.closedPromise;
  }
}
