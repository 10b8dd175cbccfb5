/**
 * Carries one relay stream to the local app: an HTTP exchange (request body in, response head
 * and body out, with backpressure both ways) or an upgrade (the app's handshake answer, then raw
 * bytes). Always ends the stream with END or RESET.
 */
import http, { type ClientRequest, type IncomingMessage } from 'node:http';
import https from 'node:https';
import type { Socket } from 'node:net';
import { bridge, type MuxStream } from '@burrow/mux';
import { encodeResponseHead, FrameType, hostPort, type RequestHead, StreamKind } from '@burrow/protocol';
import type { LocalTarget } from './localTarget';
import { filterResponseHeaders } from './responseHeaders';

export interface RequestEvent {
  readonly method: string;
  readonly path: string;
  /** Status from the local app; 0 when it was never reached or the stream was cancelled first. */
  readonly status: number;
  readonly durationMs: number;
  readonly websocket: boolean;
  /** Error code when the exchange did not complete normally. */
  readonly error?: string;
  readonly detail?: string;
}

export interface LocalForwardContext {
  readonly target: LocalTarget;
  readonly httpAgent: http.Agent;
  /** 'preserve' keeps the public Host; 'rewrite' uses the target's host; anything else is used as is. */
  readonly hostHeader: string;
  readonly onRequest: (event: RequestEvent) => void;
}

function rewriteHost(headers: readonly string[], ctx: LocalForwardContext): readonly string[] {
  // The common case costs nothing per request: the decoded list is ours to hand on.
  if (ctx.hostHeader === 'preserve') return headers;
  const out = headers.slice();
  const value = ctx.hostHeader === 'rewrite' ? hostPort(ctx.target.hostname, ctx.target.port) : ctx.hostHeader;
  for (let i = 0; i < out.length; i += 2) {
    if ((out[i] as string).toLowerCase() === 'host') out[i + 1] = value;
  }
  return out;
}

function reportRequest(
  ctx: LocalForwardContext,
  head: RequestHead,
  started: number,
  status: number,
  websocket: boolean,
  error?: string,
  detail?: string,
): void {
  ctx.onRequest({
    method: head.method,
    path: head.target,
    status,
    durationMs: performance.now() - started,
    websocket,
    ...(error !== undefined ? { error, detail } : {}),
  });
}

/**
 * Kept-alive connections to the app resting in the pool, and the listener that closes one if the app
 * writes to it while no request is in flight: bytes after a complete response (a body longer than it
 * declared, a second response, written late). Node drops such bytes without a word, so a response
 * that arrives in pieces leaves the connection out of step: its tail becomes the start of the next
 * request's answer. Closing the connection is what nginx does. (Bytes in the same read as the
 * response make Node close it itself. Bytes the app writes only after the connection was taken for
 * the next request cannot be told from that request's answer, by any HTTP/1.1 proxy.)
 */
const idleGuards = new WeakMap<Socket, () => void>();

function guardWhileIdle(req: ClientRequest): void {
  let socket: Socket | undefined;
  req.once('socket', (s: Socket) => {
    socket = s;
    const guard = idleGuards.get(s);
    if (guard !== undefined) {
      s.off('data', guard);
      idleGuards.delete(s);
    }
  });
  req.once('response', (r: IncomingMessage) => {
    // 'end' is when Node hands the connection back to the pool (or closes it).
    r.once('end', () => {
      const s = socket;
      if (s === undefined || s.destroyed || idleGuards.has(s)) return;
      const guard = (): void => {
        idleGuards.delete(s);
        s.destroy();
      };
      idleGuards.set(s, guard);
      s.on('data', guard);
    });
  });
}

function request(ctx: LocalForwardContext, head: RequestHead): ClientRequest {
  const options: http.RequestOptions = {
    protocol: ctx.target.protocol,
    hostname: ctx.target.hostname,
    port: ctx.target.port,
    method: head.method,
    path: head.target,
    headers: rewriteHost(head.headers, ctx) as unknown as http.OutgoingHttpHeaders,
    setHost: false,
    agent: head.kind === StreamKind.WEBSOCKET ? false : ctx.httpAgent,
  };
  const req = ctx.target.protocol === 'https:' ? https.request(options) : http.request(options);
  // Node keeps only the first 1000 header lines of a response by default and drops the rest without
  // a word (a Content-Length among them included); the head's size is still bounded by Node's parser.
  req.maxHeadersCount = 0;
  if (head.kind !== StreamKind.WEBSOCKET) guardWhileIdle(req);
  return req;
}

/** Node's HTTP parser failed on what the app sent: it answered, but not in HTTP. */
function isParseError(err: NodeJS.ErrnoException): boolean {
  return typeof err.code === 'string' && err.code.startsWith('HPE_');
}

function unreachable(ctx: LocalForwardContext, err: NodeJS.ErrnoException): string {
  return `cannot reach ${ctx.target.origin}: ${err.code ?? ''} ${err.message}`.replace(/\s+/g, ' ').trim();
}

export function forwardHttp(stream: MuxStream, head: RequestHead, fin: boolean, ctx: LocalForwardContext): void {
  const started = performance.now();
  const req = request(ctx, head);
  let res: IncomingMessage | undefined;
  let status = 0;
  let done = false;
  let owed = 0;
  const report = (error?: string, detail?: string): void => {
    if (done) return;
    done = true;
    reportRequest(ctx, head, started, status, false, error, detail);
  };
  const payOwed = (): void => {
    if (owed > 0) {
      const n = owed;
      owed = 0;
      stream.consumed(n);
    }
  };
  req.on('drain', payOwed);
  // Once a response is parsed, Node stops passing the socket's 'drain' on to its request: a body
  // still going up after an early answer would wait for credit for ever. Wait on the socket then.
  let waitingSocketDrain = false;
  const payOwedOnSocketDrain = (): void => {
    const s = req.socket;
    if (owed === 0 || waitingSocketDrain || s === null) return;
    if (!s.writableNeedDrain) {
      payOwed();
      return;
    }
    waitingSocketDrain = true;
    s.once('drain', () => {
      waitingSocketDrain = false;
      payOwed();
    });
  };
  stream.handler = {
    onData(chunk) {
      // The app answered and closed before reading the whole body: the rest is dropped (credit
      // still returned) so the relay can finish the request rather than wait on a window that never opens.
      if (req.destroyed) stream.consumed(chunk.length);
      else if (req.write(chunk)) stream.consumed(chunk.length);
      else {
        owed += chunk.length;
        if (res?.complete === true) payOwedOnSocketDrain();
      }
    },
    onEnd() {
      req.end();
    },
    onReset(reason) {
      req.destroy();
      res?.destroy();
      report(reason.code, reason.message);
    },
    onDrain() {
      res?.resume();
    },
  };
  req.on('error', (err: NodeJS.ErrnoException) => {
    if (stream.isClosed) return;
    // Bytes after a complete response (a body longer than its Content-Length, a second response):
    // Node drops the connection, the response itself stands and ends on its own.
    if (res?.complete === true) return;
    if (res === undefined && isParseError(err)) {
      const detail = `local app at ${ctx.target.origin} sent an invalid HTTP response: ${err.message}`;
      stream.reset('BURROW_ERR_LOCAL_ERROR', detail);
      report('BURROW_ERR_LOCAL_ERROR', detail);
    } else if (res === undefined) {
      const detail = unreachable(ctx, err);
      stream.reset('BURROW_ERR_LOCAL_UNREACHABLE', detail);
      report('BURROW_ERR_LOCAL_UNREACHABLE', detail);
    } else {
      stream.reset('BURROW_ERR_LOCAL_ERROR', `local app failed mid-response: ${err.message}`);
      report('BURROW_ERR_LOCAL_ERROR', err.message);
    }
  });
  // 101 to a plain request: Node hands the socket to an 'upgrade' listener, or silently drops it without one.
  req.on('upgrade', (r: IncomingMessage, socket: Socket) => {
    socket.destroy();
    status = r.statusCode ?? 101;
    if (stream.isClosed) return;
    const detail = `local app at ${ctx.target.origin} answered ${status} Switching Protocols to a plain request`;
    stream.reset('BURROW_ERR_LOCAL_ERROR', detail);
    report('BURROW_ERR_LOCAL_ERROR', detail);
  });
  // Whatever else ends the request without an error or a response: the stream must still end.
  req.on('close', () => {
    if (res !== undefined || stream.isClosed) return;
    const detail = `local app at ${ctx.target.origin} closed the request without a response`;
    stream.reset('BURROW_ERR_LOCAL_ERROR', detail);
    report('BURROW_ERR_LOCAL_ERROR', detail);
  });
  req.on('response', (r) => {
    res = r;
    status = r.statusCode ?? 502;
    // RFC 9110 §15: codes outside 100..599 are invalid; Node passes 600..999 on as they are.
    if (status > 599) {
      const detail = `local app at ${ctx.target.origin} answered with status ${status}, which is not an HTTP status`;
      stream.reset('BURROW_ERR_LOCAL_ERROR', detail);
      r.destroy();
      report('BURROW_ERR_LOCAL_ERROR', detail);
      return;
    }
    const noBody = head.method === 'HEAD' || status === 204 || status === 304 || r.headers['content-length'] === '0';
    let headBytes: Buffer;
    try {
      headBytes = encodeResponseHead({ status, reason: r.statusMessage ?? '', headers: filterResponseHeaders(r.rawHeaders, false) });
    } catch (err) {
      stream.reset('BURROW_ERR_LOCAL_ERROR', `local response head cannot be relayed: ${(err as Error).message}`);
      r.destroy();
      report('BURROW_ERR_LOCAL_ERROR', (err as Error).message);
      return;
    }
    stream.sendHead(FrameType.RESPONSE, headBytes, noBody);
    if (noBody) {
      r.resume();
      report();
      return;
    }
    r.on('data', (chunk: Buffer) => {
      if (!stream.write(chunk)) r.pause();
    });
    r.on('end', () => {
      stream.end();
      report();
      payOwedOnSocketDrain();
    });
    r.on('close', () => {
      if (!r.complete && !stream.isClosed) {
        stream.reset('BURROW_ERR_LOCAL_ERROR', 'local app closed the connection before the response was complete');
        report('BURROW_ERR_LOCAL_ERROR', 'response cut short');
      }
    });
  });
  if (fin) req.end();
}

export function forwardUpgrade(stream: MuxStream, head: RequestHead, ctx: LocalForwardContext): void {
  const started = performance.now();
  const req = request(ctx, head);
  let settled = false;
  const report = (status: number, error?: string, detail?: string): void => reportRequest(ctx, head, started, status, true, error, detail);
  stream.handler = {
    onData() {
      // The relay sends nothing before the handshake is answered.
    },
    onEnd() {},
    onReset(reason) {
      settled = true;
      req.destroy();
      report(0, reason.code, reason.message);
    },
  };
  req.on('error', (err: NodeJS.ErrnoException) => {
    if (settled || stream.isClosed) return;
    settled = true;
    const detail = unreachable(ctx, err);
    stream.reset('BURROW_ERR_LOCAL_UNREACHABLE', detail);
    report(0, 'BURROW_ERR_LOCAL_UNREACHABLE', detail);
  });
  req.on('upgrade', (res: IncomingMessage, socket: Socket, rest: Buffer) => {
    if (settled || stream.isClosed) {
      socket.destroy();
      return;
    }
    settled = true;
    socket.setNoDelay(true);
    stream.sendHead(
      FrameType.RESPONSE,
      encodeResponseHead({ status: 101, reason: res.statusMessage ?? 'Switching Protocols', headers: filterResponseHeaders(res.rawHeaders, true) }),
    );
    if (rest.length > 0) stream.write(rest);
    report(101);
    bridge(socket, stream, { failureCode: 'BURROW_ERR_LOCAL_ERROR' });
  });
  req.on('response', (res: IncomingMessage) => {
    if (settled || stream.isClosed) {
      res.destroy();
      return;
    }
    settled = true;
    const status = res.statusCode ?? 502;
    stream.sendHead(FrameType.RESPONSE, encodeResponseHead({ status, reason: res.statusMessage ?? '', headers: filterResponseHeaders(res.rawHeaders, false) }));
    report(status);
    stream.handler = {
      onData() {},
      onEnd() {},
      onReset() {
        res.destroy();
      },
      onDrain() {
        res.resume();
      },
    };
    res.on('data', (chunk: Buffer) => {
      if (!stream.write(chunk)) res.pause();
    });
    res.on('end', () => stream.end());
    res.on('close', () => {
      if (!res.complete && !stream.isClosed) stream.reset('BURROW_ERR_LOCAL_ERROR', 'local app closed the connection before its refusal was complete');
    });
  });
  req.end();
}
