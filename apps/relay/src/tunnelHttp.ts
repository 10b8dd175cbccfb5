/**
 * A public HTTP request on a tunnel host, carried as one stream: request head (OPEN), body as
 * DATA within credit, END; back come the response head, body and END. Enforces the body limits
 * and the response-head timeout; a client that leaves cancels the stream at the agent.
 * Every request ends in the response's 'close' event, where its RequestRecord is reported once.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Holder } from '@burrow/bus';
import { corkForTurn, type MuxStream, type StreamHandler } from '@burrow/mux';
import { type BurrowError, decodeResponseHead, type ErrorCode, FrameType, type Reason } from '@burrow/protocol';
import { sendError } from './errorResponse';
import { encodeOpenHead, hasHopByHop } from './forwardHeaders';
import { admitVisitor } from './ingressPolicy';
import type { RelayContext } from './relayContext';
import { RequestRecord } from './requestRecord';
import { resolveLocal, resolveRemote } from './resolveTunnel';

export function handleTunnelRequest(ctx: RelayContext, req: IncomingMessage, res: ServerResponse, label: string): void {
  const record = new RequestRecord(ctx, req, 'http', label);
  // Fires once for every response: finished, answered by the relay, destroyed, or its client gone.
  res.once('close', () => record.finish(res.headersSent ? res.statusCode : undefined, res.writableFinished));
  routeRequest(ctx, req, res, label, record, true);
}

/** Methods a proxy may send again when the first attempt died with the node carrying it (RFC 9110 §9.2.2). */
const RETRYABLE = new Set(['GET', 'HEAD', 'OPTIONS']);

/**
 * A bodiless request may be sent once more (after a fresh lookup) when the first attempt is known
 * not to have reached an agent (BURROW_ERR_SESSION_GONE), or, for idempotent methods, when the node
 * holding the agent died (the agent is reconnecting elsewhere; the lookup waits for it).
 */
function resender(ctx: RelayContext, req: IncomingMessage, res: ServerResponse, label: string, record: RequestRecord): Resend {
  const idempotent = RETRYABLE.has(req.method ?? '');
  return (code) => {
    if (code !== 'BURROW_ERR_SESSION_GONE' && !(code === 'BURROW_ERR_NODE_UNREACHABLE' && idempotent)) return false;
    ctx.holderCache.delete(label);
    routeRequest(ctx, req, res, label, record, false);
    return true;
  };
}

function routeRequest(ctx: RelayContext, req: IncomingMessage, res: ServerResponse, label: string, record: RequestRecord, mayRetry: boolean): void {
  const bodiless = req.headers['content-length'] === undefined && req.headers['transfer-encoding'] === undefined;
  const resend = mayRetry && bodiless ? resender(ctx, req, res, label, record) : undefined;
  const holder = resolveLocal(ctx, label);
  if (holder !== undefined) {
    proxyRequest(ctx, req, res, holder, record, resend);
    return;
  }
  // Cross-node fast path: a holder looked up moments ago; a stale one costs a resend, not an error.
  const cached = resend !== undefined ? ctx.holderCache.get(label) : undefined;
  if (cached !== undefined && ctx.deadNodes.deadSince(cached.nodeId) === undefined) {
    proxyRequest(ctx, req, res, cached, record, resend);
    return;
  }
  resolveRemote(ctx, label).then(
    (r) => {
      if (res.destroyed) return;
      if ('holder' in r) {
        if (bodiless) ctx.holderCache.set(label, r.holder);
        proxyRequest(ctx, req, res, r.holder, record, resend);
      } else {
        ctx.log.info({ label, code: r.error, method: req.method, url: req.url }, r.message);
        record.fail(r.error);
        sendError(req, res, r.error, r.message);
      }
    },
    (err: unknown) => {
      ctx.log.error({ err, label }, 'tunnel lookup failed');
      record.fail('BURROW_ERR_INTERNAL');
      sendError(req, res, 'BURROW_ERR_INTERNAL', 'the relay could not look this tunnel up; try again');
    },
  );
}

/** Sends the request again if `code` says that is safe; true when it did. */
type Resend = (code: ErrorCode) => boolean;

function proxyRequest(ctx: RelayContext, req: IncomingMessage, res: ServerResponse, holder: Holder, record: RequestRecord, resend?: Resend): void {
  const refusal = admitVisitor(ctx, holder, req);
  if (refusal !== undefined) {
    ctx.log.info({ url: req.url, code: refusal.code }, refusal.message);
    record.fail(refusal.code);
    sendError(
      req,
      res,
      refusal.code,
      refusal.message,
      req.headers['content-length'] !== undefined || req.headers['transfer-encoding'] !== undefined,
      refusal.headers,
    );
    req.resume();
    return;
  }
  // A tenant's quota may set its own body limit.
  const maxBodyBytes = holder.policy?.maxBodyBytes ?? ctx.config.maxBodyBytes;
  const contentLength = req.headers['content-length'];
  if (contentLength !== undefined && Number(contentLength) > maxBodyBytes) {
    ctx.log.info({ url: req.url, contentLength }, 'request body over the limit');
    record.fail('BURROW_ERR_REQUEST_TOO_LARGE');
    sendError(req, res, 'BURROW_ERR_REQUEST_TOO_LARGE', `request body of ${contentLength} bytes is over this relay's limit of ${maxBodyBytes} bytes`, true);
    req.resume();
    return;
  }
  const hasBody = contentLength !== undefined ? contentLength !== '0' : req.headers['transfer-encoding'] !== undefined;
  let head: Buffer;
  try {
    head = encodeOpenHead(req, ctx.publicProto(), false);
  } catch (err) {
    const e = err as BurrowError;
    record.fail(e.code);
    sendError(req, res, e.code, e.message, true);
    return;
  }
  const stream = ctx.ingress.open(holder);
  const exchange = new HttpExchange(ctx, req, res, stream, record, maxBodyBytes, resend);
  stream.handler = exchange;
  stream.sendHead(FrameType.OPEN, head, !hasBody);
  if (!hasBody) exchange.startTimer();
  else if (!stream.isClosed) exchange.pumpRequestBody();
}

class HttpExchange implements StreamHandler {
  private timer: NodeJS.Timeout | undefined;
  private headSeen = false;
  /** The response's Content-Length, when it has one and a body: the body must be exactly this long. */
  private declaredBytes: number | undefined;
  private owedCredit = 0;
  private waitingDrain = false;
  /** Runs while the request body is read (slowloris); paused while the relay itself holds the body back. */
  private bodyTimer: NodeJS.Timeout | undefined;
  private bodyPaused = false;

  constructor(
    private readonly ctx: RelayContext,
    private readonly req: IncomingMessage,
    private readonly res: ServerResponse,
    private readonly stream: MuxStream,
    /** Also counts the body bytes the limits are checked against. */
    private readonly record: RequestRecord,
    private readonly maxBodyBytes: number,
    private readonly resend: Resend | undefined,
  ) {
    res.on('close', this.onClientClose);
  }

  pumpRequestBody(): void {
    const { req, stream } = this;
    if (this.ctx.config.bodyIdleTimeoutMs > 0) this.bodyTimer = setTimeout(this.onBodyIdle, this.ctx.config.bodyIdleTimeoutMs);
    req.on('data', (chunk: Buffer) => {
      this.bodyTimer?.refresh();
      if (this.record.bytesIn + chunk.length > this.maxBodyBytes) {
        this.requestTooLarge();
        return;
      }
      this.record.bytesIn += chunk.length;
      if (!stream.write(chunk)) {
        req.pause();
        this.bodyPaused = true;
      }
    });
    req.on('end', () => {
      clearTimeout(this.bodyTimer);
      stream.end();
      this.startTimer();
    });
  }

  /** The response-head timeout runs from the moment the whole request has been passed on. */
  startTimer(): void {
    if (!this.headSeen && !this.stream.isClosed) this.timer = setTimeout(this.onTimeout, this.ctx.config.requestTimeoutMs);
  }

  private requestTooLarge(): void {
    const { req, res, stream, ctx } = this;
    req.removeAllListeners('data');
    req.resume();
    clearTimeout(this.timer);
    clearTimeout(this.bodyTimer);
    const message = `request body is over this relay's limit of ${this.maxBodyBytes} bytes`;
    ctx.log.info({ url: req.url, bytes: this.record.bytesIn }, 'request body over the limit');
    this.record.fail('BURROW_ERR_REQUEST_TOO_LARGE');
    stream.reset('BURROW_ERR_REQUEST_TOO_LARGE', message);
    sendError(req, res, 'BURROW_ERR_REQUEST_TOO_LARGE', message, true);
  }

  onDrain(): void {
    this.req.resume();
    if (this.bodyPaused) {
      this.bodyPaused = false;
      // Re-arms it even if it fired while paused: the client's idle time starts now.
      if (!this.req.complete) this.bodyTimer?.refresh();
    }
  }

  /**
   * Without this, a client dribbling its body (a byte now and then) would hold the connection and
   * the stream until Node's 300 s request timeout, whatever --request-timeout-ms says.
   */
  private readonly onBodyIdle = (): void => {
    const { req, res, stream, ctx } = this;
    // (A response already finished leaves res destroyed: the stream says whether anything is left to cut.)
    if (this.bodyPaused || req.complete || stream.isClosed) return;
    const message = `the request body sent nothing for ${ctx.config.bodyIdleTimeoutMs} ms`;
    ctx.log.info({ method: req.method, url: req.url, bytes: this.record.bytesIn }, message);
    clearTimeout(this.timer);
    req.removeAllListeners('data');
    this.record.fail('BURROW_ERR_CLIENT_TIMEOUT');
    if (!stream.isClosed) stream.reset('BURROW_ERR_CLIENT_TIMEOUT', message);
    if (!res.headersSent) sendError(req, res, 'BURROW_ERR_CLIENT_TIMEOUT', message, true);
    // A response already began (or ended): the connection itself is what the client holds.
    else req.socket.destroy();
  };

  onHead(payload: Buffer, fin: boolean): void {
    clearTimeout(this.timer);
    this.headSeen = true;
    const { res } = this;
    if (res.destroyed) return;
    let status: number;
    let reason: string;
    let headers: string[];
    try {
      ({ status, reason, headers } = decodeResponseHead(payload) as { status: number; reason: string; headers: string[] });
    } catch (err) {
      this.failBeforeHead('BURROW_ERR_LOCAL_ERROR', `agent sent an unreadable response head: ${(err as Error).message}`);
      return;
    }
    let declared: number | undefined;
    for (let i = 0; i < headers.length; i += 2) {
      const name = headers[i] as string;
      if (name.length === 14 && name.toLowerCase() === 'content-length') {
        const value = headers[i + 1] as string;
        // One plain decimal, once: a client and a proxy in front of the relay must agree where this response ends.
        if (declared !== undefined || !/^\d{1,15}$/.test(value)) {
          this.failBeforeHead('BURROW_ERR_LOCAL_ERROR', `the local app sent an invalid or repeated Content-Length (${JSON.stringify(value)})`);
          return;
        }
        declared = Number(value);
        // HEAD, 204 and 304 carry no body whatever length they declare (a HEAD states the GET's size).
        if (declared > this.maxBodyBytes && this.req.method !== 'HEAD' && status !== 204 && status !== 304) {
          this.failBeforeHead(
            'BURROW_ERR_RESPONSE_TOO_LARGE',
            `the local app's response of ${value} bytes is over this relay's limit of ${this.maxBodyBytes} bytes`,
          );
          return;
        }
      }
      if (hasHopByHop(name)) {
        headers = stripHopByHop(headers);
        break;
      }
    }
    if (status < 200 || status === 101) {
      this.failBeforeHead('BURROW_ERR_LOCAL_ERROR', `the local app answered ${status} to a plain request`);
      return;
    }
    // RFC 9110 §15: codes outside 100..599 are invalid (Node would pass 600..999 on as they are).
    if (status > 599) {
      this.failBeforeHead('BURROW_ERR_LOCAL_ERROR', `the local app answered with status ${status}, which is not an HTTP status`);
      return;
    }
    try {
      res.writeHead(status, reason, headers);
    } catch (err) {
      this.failBeforeHead('BURROW_ERR_LOCAL_ERROR', `the local app sent an invalid response head: ${(err as Error).message}`);
      return;
    }
    this.record.responded(status);
    // Node sends no body for these whatever is written; elsewhere the body must match the declared length.
    if (this.req.method !== 'HEAD' && status !== 204 && status !== 304) this.declaredBytes = declared;
    if (fin) {
      this.onEnd();
    } else {
      // Flush the head now unless body bytes follow in this same batch (SSE needs it at once).
      queueMicrotask(() => {
        if (!res.writableEnded && !res.destroyed && this.record.bytesOut === 0) res.flushHeaders();
      });
    }
  }

  onData(chunk: Buffer): void {
    const { res, stream, ctx, record } = this;
    if (record.bytesOut + chunk.length > this.maxBodyBytes) {
      ctx.log.warn({ url: this.req.url, bytes: record.bytesOut + chunk.length }, 'response body over the limit; cutting the connection');
      record.fail('BURROW_ERR_RESPONSE_TOO_LARGE');
      stream.reset('BURROW_ERR_RESPONSE_TOO_LARGE', `response body is over this relay's limit of ${this.maxBodyBytes} bytes`);
      res.destroy();
      return;
    }
    if (this.declaredBytes !== undefined && record.bytesOut + chunk.length > this.declaredBytes) {
      // Written on, the extra bytes would reach a keep-alive client (or a proxy's pooled connection) as the next response.
      const message = `the local app sent more than the ${this.declaredBytes} bytes its Content-Length declared`;
      ctx.log.warn({ url: this.req.url, code: 'BURROW_ERR_LOCAL_ERROR' }, `${message}; cutting the connection`);
      record.fail('BURROW_ERR_LOCAL_ERROR');
      stream.reset('BURROW_ERR_LOCAL_ERROR', message);
      res.destroy();
      return;
    }
    record.bytesOut += chunk.length;
    corkForTurn(res);
    if (res.write(chunk)) {
      stream.consumed(chunk.length);
      return;
    }
    this.owedCredit += chunk.length;
    if (!this.waitingDrain) {
      this.waitingDrain = true;
      res.once('drain', this.onResDrain);
    }
  }

  private readonly onResDrain = (): void => {
    this.waitingDrain = false;
    const n = this.owedCredit;
    this.owedCredit = 0;
    if (n > 0) this.stream.consumed(n);
  };

  onEnd(): void {
    if (this.declaredBytes !== undefined && this.record.bytesOut < this.declaredBytes) {
      // Ended normally, the client would wait for the rest, or read its next response as this body.
      this.ctx.log.warn(
        { url: this.req.url, code: 'BURROW_ERR_LOCAL_ERROR', bytes: this.record.bytesOut },
        `the local app ended its response short of the ${this.declaredBytes} bytes its Content-Length declared; cutting the connection`,
      );
      this.record.fail('BURROW_ERR_LOCAL_ERROR');
      this.res.destroy();
      return;
    }
    this.res.end();
    this.logDone(this.res.statusCode);
  }

  onReset(reason: Reason): void {
    clearTimeout(this.timer);
    clearTimeout(this.bodyTimer);
    const { req, res, ctx } = this;
    if (this.resend !== undefined && !res.headersSent && !res.destroyed) {
      res.off('close', this.onClientClose);
      if (this.resend(reason.code)) {
        ctx.log.debug({ method: req.method, url: req.url, code: reason.code }, "request sent again to the tunnel's current session");
        return;
      }
      res.on('close', this.onClientClose);
    }
    this.record.fail(reason.code);
    if (reason.code === 'BURROW_ERR_CANCELLED' && res.destroyed) return;
    ctx.log.info({ method: req.method, url: req.url, code: reason.code }, reason.message);
    if (!res.headersSent) sendError(req, res, reason.code, reason.message);
    else res.destroy();
  }

  private failBeforeHead(code: 'BURROW_ERR_LOCAL_ERROR' | 'BURROW_ERR_RESPONSE_TOO_LARGE', message: string): void {
    this.ctx.log.warn({ method: this.req.method, url: this.req.url, code }, message);
    this.record.fail(code);
    this.stream.reset(code, message);
    sendError(this.req, this.res, code, message);
  }

  private readonly onTimeout = (): void => {
    const { req, res, stream, ctx } = this;
    if (res.headersSent || stream.isClosed) return;
    const message = `the local app did not answer within ${ctx.config.requestTimeoutMs} ms`;
    ctx.log.info({ method: req.method, url: req.url }, message);
    this.record.fail('BURROW_ERR_TIMEOUT');
    stream.reset('BURROW_ERR_TIMEOUT', message);
    sendError(req, res, 'BURROW_ERR_TIMEOUT', message, true);
  };

  private readonly onClientClose = (): void => {
    clearTimeout(this.timer);
    if (this.stream.isClosed || !this.res.writableFinished) {
      clearTimeout(this.bodyTimer);
      if (!this.stream.isClosed) this.stream.reset('BURROW_ERR_CANCELLED', 'the public client went away');
    } else if (!this.req.complete) {
      // The app answered before the body was all in. Node tells a request whose response is done
      // nothing more, not even that its client left: watch the connection until the body ends.
      const socket = this.req.socket;
      socket.once('close', this.onClientGoneMidBody);
      this.req.once('end', () => socket.off('close', this.onClientGoneMidBody));
    }
  };

  private readonly onClientGoneMidBody = (): void => {
    clearTimeout(this.bodyTimer);
    if (!this.req.complete && !this.stream.isClosed) this.stream.reset('BURROW_ERR_CANCELLED', 'the public client went away');
  };

  private logDone(status: number): void {
    const level = this.ctx.log.level;
    if (level === 'debug' || level === 'trace')
      this.ctx.log.debug({ method: this.req.method, url: this.req.url, status, bytesIn: this.record.bytesIn, bytesOut: this.record.bytesOut }, 'request done');
  }
}

function stripHopByHop(headers: string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < headers.length; i += 2) {
    if (!hasHopByHop(headers[i] as string)) out.push(headers[i] as string, headers[i + 1] as string);
  }
  return out;
}
