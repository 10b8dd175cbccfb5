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
  return ctx.target.protocol === 'https:' ? https.request(options) : http.request(options);
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
  req.on('drain', () => {
    if (owed > 0) {
      const n = owed;
      owed = 0;
      stream.consumed(n);
    }
  });
  stream.handler = {
    onData(chunk) {
      if (req.write(chunk)) stream.consumed(chunk.length);
      else owed += chunk.length;
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
  req.on('response', (r) => {
    res = r;
    status = r.statusCode ?? 502;
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
