/**
 * The agent: dials the relay over a WebSocket, registers with a signed token, serves the
 * relay's streams against the local app, watches for silence, and reconnects with capped
 * exponential backoff and jitter to get the same URL back. Emits events; prints nothing.
 */
import { EventEmitter } from 'node:events';
import http from 'node:http';
import https from 'node:https';
import { FrameBatcher, Mux, type MuxStream } from '@burrow/mux';
import {
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
  type KeyPair,
  labelFor,
  StreamKind,
  signRegistration,
} from '@burrow/protocol';
import WebSocket from 'ws';
import { forwardHttp, forwardUpgrade, type LocalForwardContext, type RequestEvent } from './localForward';
import type { LocalTarget } from './localTarget';

/** Path of the agent endpoint on the relay's apex host. */
export const AGENT_CONNECT_PATH = '/_burrow/connect';
/** Largest WebSocket message accepted from the relay (it batches whole frames). */
const MAX_RELAY_MESSAGE_BYTES = 1024 * 1024 + 64 * 1024;

export interface AgentOptions {
  /** Relay base URL: http(s)://host[:port] (ws/wss accepted). */
  readonly relay: string;
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
}

export interface OnlineEvent {
  readonly url: string;
  readonly label: string;
  readonly subdomainUrl?: string;
  readonly sessionId: string;
  /** True after a reconnect. */
  readonly reconnected: boolean;
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
]);

export interface AgentEvents {
  online: [OnlineEvent];
  request: [RequestEvent];
  reconnecting: [ReconnectingEvent];
  offline: [{ reason: string }];
  fatal: [BurrowError];
  closed: [];
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

export class Agent extends EventEmitter<AgentEvents> {
  readonly label: string;
  private ws: WebSocket | undefined;
  private batcher: FrameBatcher | undefined;
  private mux: Mux | undefined;
  private lastReceivedMs = 0;
  private attempt = 0;
  private everOnline = false;
  private stopping = false;
  private stopped = false;
  private fatalError: BurrowError | undefined;
  private closeReason = '';
  private watchdog: NodeJS.Timeout | undefined;
  private reconnectTimer: NodeJS.Timeout | undefined;
  private readonly local: LocalForwardContext;
  private readonly deadAfterMs: number;
  private effectiveDeadAfterMs: number;
  private readonly url: string;
  private closedPromise: Promise<void> | undefined;

  constructor(private readonly options: AgentOptions) {
    super();
    this.label = labelFor(options.keyPair.publicKey, options.session);
    this.url = connectUrl(options.relay);
    this.deadAfterMs = options.deadAfterMs ?? 20_000;
    this.effectiveDeadAfterMs = this.deadAfterMs;
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
  }

  /** Starts connecting; returns at once. Listen for 'online', 'fatal', 'reconnecting'. */
  start(): void {
    if (this.ws !== undefined || this.stopping) return;
    this.dial();
  }

  private dial(): void {
    this.reconnectTimer = undefined;
    if (this.stopping) return;
    this.closeReason = '';
    const ws = new WebSocket(this.url, {
      perMessageDeflate: false,
      maxPayload: MAX_RELAY_MESSAGE_BYTES,
      generateMask: zeroMask,
      handshakeTimeout: Math.max(1000, this.deadAfterMs),
    });
    this.ws = ws;
    this.lastReceivedMs = Date.now();
    this.effectiveDeadAfterMs = this.deadAfterMs;
    const batcher = new FrameBatcher((batch) => {
      if (ws.readyState === WebSocket.OPEN) ws.send(batch, { binary: true });
    });
    this.batcher = batcher;
    this.mux = undefined;
    ws.on('message', (data, isBinary) => {
      if (this.ws !== ws) return;
      this.lastReceivedMs = Date.now();
      try {
        if (!isBinary) throw new BurrowError('BURROW_ERR_PROTOCOL', 'text message from the relay');
        decodeFrames(data as Buffer, 'relayToAgent', this.onFrame);
      } catch (err) {
        const e = err instanceof BurrowError ? err : new BurrowError('BURROW_ERR_PROTOCOL', String(err));
        this.closeReason = `${e.code}: ${e.message}`;
        if (FATAL.has(e.code)) this.fatalError = e;
        batcher.sendFrame(FrameType.ERROR, 0, 0, encodeReason(e.code, e.message));
        batcher.flush();
        ws.close(1002);
      }
    });
    ws.on('unexpected-response', (_req, res) => {
      this.closeReason = `relay answered HTTP ${res.statusCode} at ${this.url}; is --relay right?`;
      res.resume();
      ws.terminate();
    });
    ws.on('error', (err) => {
      if (this.closeReason === '') this.closeReason = err.message;
    });
    ws.on('close', (code) => this.onClosed(ws, code));
    clearInterval(this.watchdog);
    const tickMs = Math.max(25, Math.floor(this.deadAfterMs / 4));
    let lastTick = Date.now();
    this.watchdog = setInterval(() => {
      const now = Date.now();
      // After a stall of this process, let pending socket reads run before judging the relay.
      const stalled = now - lastTick > 3 * tickMs;
      lastTick = now;
      if (!stalled && now - this.lastReceivedMs > this.effectiveDeadAfterMs && this.ws === ws) {
        this.closeReason = `no frame from the relay for ${((now - this.lastReceivedMs) / 1000).toFixed(1)} s`;
        ws.terminate();
      }
    }, tickMs);
    this.watchdog.unref();
  }

  private readonly onFrame = (frame: Frame): void => {
    const batcher = this.batcher as FrameBatcher;
    switch (frame.type) {
      case FrameType.HELLO: {
        if (this.mux !== undefined) throw new BurrowError('BURROW_ERR_PROTOCOL', 'second hello on one connection');
        const hello = decodeHello(frame.payload);
        // The relay pings after pingIntervalMs of silence: never give up on it sooner than that allows.
        this.effectiveDeadAfterMs = Math.max(this.deadAfterMs, 2 * hello.pingIntervalMs);
        this.mux = new Mux(batcher, { role: 'agent', windowBytes: hello.windowBytes, onOpen: this.onOpen });
        const register = signRegistration({
          secretKey: this.options.keyPair.secretKey,
          nonce: hello.nonce,
          audience: this.options.relay,
          nowMs: Date.now(),
          ...(this.options.session !== undefined ? { session: this.options.session } : {}),
          ...(this.options.subdomain !== undefined ? { subdomain: this.options.subdomain } : {}),
        });
        batcher.sendFrame(FrameType.REGISTER, 0, 0, encodeJson(register));
        return;
      }
      case FrameType.REGISTERED: {
        const r = decodeRegistered(frame.payload);
        const reconnected = this.everOnline;
        this.everOnline = true;
        this.attempt = 0;
        this.emit('online', {
          url: r.url,
          label: r.label,
          sessionId: r.sessionId,
          reconnected,
          ...(r.subdomainUrl !== undefined ? { subdomainUrl: r.subdomainUrl } : {}),
        });
        return;
      }
      case FrameType.ERROR: {
        const r = decodeReason(frame.payload);
        this.closeReason = `${r.code}: ${r.message}`;
        if (FATAL.has(r.code)) this.fatalError = new BurrowError(r.code, r.message);
        return;
      }
      case FrameType.GOAWAY: {
        const r = decodeReason(frame.payload);
        this.closeReason = `relay going away: ${r.message}`;
        return;
      }
      case FrameType.PING:
        batcher.sendFrame(FrameType.PONG, 0, 0, Buffer.from(frame.payload));
        return;
      case FrameType.PONG:
        return;
      default:
        if (this.mux === undefined) throw new BurrowError('BURROW_ERR_PROTOCOL', 'stream frame before hello');
        this.mux.receive(frame);
    }
  };

  private readonly onOpen = (stream: MuxStream, payload: Buffer, fin: boolean): void => {
    let head: ReturnType<typeof decodeRequestHead>;
    try {
      head = decodeRequestHead(payload);
    } catch (err) {
      stream.reset('BURROW_ERR_PROTOCOL', (err as Error).message);
      return;
    }
    if (head.kind === StreamKind.HTTP) forwardHttp(stream, head, fin, this.local);
    else if (head.kind === StreamKind.WEBSOCKET) forwardUpgrade(stream, head, this.local);
    else stream.reset('BURROW_ERR_BAD_REQUEST', 'this agent forwards HTTP and WebSocket only');
  };

  private onClosed(ws: WebSocket, code: number): void {
    if (this.ws !== ws) return;
    this.ws = undefined;
    this.batcher?.close();
    this.mux?.abortAll({ code: 'BURROW_ERR_AGENT_DISCONNECTED', message: 'connection to the relay closed' });
    this.mux = undefined;
    clearInterval(this.watchdog);
    const reason = this.closeReason !== '' ? this.closeReason : `connection closed (${code})`;
    if (this.stopping) {
      this.finish();
      return;
    }
    if (this.fatalError !== undefined) {
      const err = this.fatalError;
      this.stopping = true;
      this.finish();
      this.emit('fatal', err);
      return;
    }
    this.emit('offline', { reason });
    this.attempt++;
    const initial = this.options.reconnectInitialMs ?? 250;
    const max = this.options.reconnectMaxMs ?? 15_000;
    // First retry almost at once; then exponential, capped, with jitter so a fleet does not stampede.
    const base = this.attempt === 1 ? initial / 2 : Math.min(max, initial * 2 ** (this.attempt - 1));
    const delayMs = Math.round(base / 2 + Math.random() * (base / 2));
    this.emit('reconnecting', { attempt: this.attempt, delayMs, reason });
    this.reconnectTimer = setTimeout(() => this.dial(), delayMs);
  }

  private finish(): void {
    if (this.stopped) return;
    this.stopped = true;
    clearInterval(this.watchdog);
    clearTimeout(this.reconnectTimer);
    this.local.httpAgent.destroy();
    this.emit('closed');
  }

  /** Tells the relay it is leaving, closes, resolves when the socket is gone. Idempotent. */
  close(): Promise<void> {
    this.closedPromise ??= new Promise<void>((resolve) => {
      this.stopping = true;
      const ws = this.ws;
      if (ws === undefined) {
        this.finish();
        resolve();
        return;
      }
      this.once('closed', resolve);
      if (ws.readyState === WebSocket.OPEN) {
        this.batcher?.sendFrame(FrameType.GOAWAY, 0, 0, encodeReason('BURROW_ERR_AGENT_SHUTDOWN', 'agent stopped'));
        this.batcher?.flush();
        ws.close(1000);
        setTimeout(() => ws.terminate(), 2000).unref();
      } else {
        ws.terminate();
      }
    });
    return this.closedPromise;
  }
}
