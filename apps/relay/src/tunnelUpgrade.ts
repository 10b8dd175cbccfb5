/**
 * A public upgrade request (WebSocket) on a tunnel host. The handshake goes to the local app
 * through the agent; on 101 the relay writes the app's own handshake answer and from then on
 * carries raw bytes both ways, so frames, subprotocols, extensions and close codes pass through
 * untouched. A refusal (403, 404, ...) is written back as the app sent it. Every upgrade ends in
 * the socket's 'close' event, where its RequestRecord is reported once.
 */

import type { IncomingMessage } from 'node:http';
import { validateHeaderName, validateHeaderValue } from 'node:http';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import type { Holder } from '@burrow/bus';
import { type ByteDuplex, bridge, type MuxStream } from '@burrow/mux';
import { type BurrowError, decodeResponseHead, ERRORS, type ErrorCode, FrameType, type Reason, type ResponseHead } from '@burrow/protocol';
import { rawErrorResponse } from './errorResponse';
import { encodeOpenHead } from './forwardHeaders';
import { admitVisitor } from './ingressPolicy';
import type { RelayContext } from './relayContext';
import { RequestRecord } from './requestRecord';
import { resolveLocal, resolveRemote } from './resolveTunnel';
import { WsFrameBoundary, wsCloseFrame } from './wsFrameBoundary';

/** Byte counters of the socket under an upgrade (a net.Socket for node:http servers). */
const bytesRead = (socket: Duplex): number => (socket as Partial<Pick<Socket, 'bytesRead'>>).bytesRead ?? 0;
const bytesWritten = (socket: Duplex): number => (socket as Partial<Pick<Socket, 'bytesWritten'>>).bytesWritten ?? 0;

/** Where the payload starts in the socket's byte counters: after the handshake both ways. */
interface WireMarks {
  readonly readAtUpgrade: number;
  writtenAfterHead: number | undefined;
}

export function handleTunnelUpgrade(ctx: RelayContext, req: IncomingMessage, socket: Duplex, head: Buffer, label: string): void {
  socket.on('error', () => {});
  const record = new RequestRecord(ctx, req, 'websocket', label);
  // What the parser read so far, but `head`, was the request head.
  const marks: WireMarks = { readAtUpgrade: bytesRead(socket) - head.length, writtenAfterHead: undefined };
  socket.once('close', () => {
    // On the next tick: the other close listeners (the bridge's) first record why it ended.
    process.nextTick(() => {
      // Bytes after the handshake: WebSocket frames both ways, or the body of the app's refusal.
      if (record.status === 101) record.bytesIn = Math.max(0, bytesRead(socket) - marks.readAtUpgrade);
      if (marks.writtenAfterHead !== undefined) record.bytesOut = Math.max(0, bytesWritten(socket) - marks.writtenAfterHead);
      record.finish();
    });
  });
  const holder = resolveLocal(ctx, label);
  if (holder !== undefined) {
    proxyUpgrade(ctx, req, socket, head, holder, record, marks);
    return;
  }
  resolveRemote(ctx, label).then(
    (r) => {
      if ('holder' in r) proxyUpgrade(ctx, req, socket, head, r.holder, record, marks);
      else refuse(ctx, req, socket, record, r.error, r.message);
    },
    (err: unknown) => {
      ctx.log.error({ err, label }, 'tunnel lookup failed');
      refuse(ctx, req, socket, record, 'BURROW_ERR_INTERNAL', 'the relay could not look this tunnel up; try again');
    },
  );
}

function refuse(
  ctx: RelayContext,
  req: IncomingMessage,
  socket: Duplex,
  record: RequestRecord,
  code: ErrorCode,
  message: string,
  extraHeaders?: Readonly<Record<string, string>>,
): void {
  ctx.log.info({ url: req.url, code }, `upgrade refused: ${message}`);
  record.fail(code);
  if (socket.destroyed) return;
  // As renderError answers (499, the cancelled code, goes out as 502).
  const status = ERRORS[code].status;
  record.responded(status === 499 ? 502 : status);
  socket.end(rawErrorResponse(code, message, req.headers.accept, extraHeaders));
}

/** Serializes a response head for a raw socket, refusing header injection from the agent. */
function serializeHead(head: ResponseHead, closeAfter: boolean): Buffer {
  let out = `HTTP/1.1 ${head.status} ${head.reason.replace(/[\r\n]/g, '')}\r\n`;
  for (let i = 0; i < head.headers.length; i += 2) {
    const name = head.headers[i] as string;
    const value = head.headers[i + 1] as string;
    validateHeaderName(name);
    validateHeaderValue(name, value);
    const lower = name.toLowerCase();
    if (closeAfter && (lower === 'connection' || lower === 'transfer-encoding' || lower === 'keep-alive')) continue;
    out += `${name}: ${value}\r\n`;
  }
  if (closeAfter) out += 'Connection: close\r\n';
  return Buffer.from(`${out}\r\n`, 'latin1');
}

/** The public socket as the bridge sees it, the app's bytes followed frame by frame on their way out. */
function followed(socket: Duplex, frames: WsFrameBoundary): ByteDuplex {
  return {
    write(chunk: Buffer) {
      frames.feed(chunk);
      return socket.write(chunk);
    },
    end: () => void socket.end(),
    destroy: () => void socket.destroy(),
    pause: () => void socket.pause(),
    resume: () => void socket.resume(),
    on: socket.on.bind(socket),
    get writableEnded() {
      return socket.writableEnded;
    },
    get destroyed() {
      return socket.destroyed;
    },
    setTimeout: (ms: number) => (socket as Partial<Pick<Socket, 'setTimeout'>>).setTimeout?.(ms),
  };
}

/**
 * The close frame for a public WebSocket whose stream was reset with `code` (none when the client
 * itself left, or when a frame is half written): 1001 (going away) or 1013 (try again later) where
 * the error table says so, else 1011; the reason is the code.
 */
function farewell(frames: WsFrameBoundary, code: ErrorCode): Buffer | undefined {
  if (code === 'BURROW_ERR_CANCELLED' || !frames.canAddFrame) return undefined;
  const close = ERRORS[code].close;
  return wsCloseFrame(close === 1001 || close === 1013 ? close : 1011, code);
}

function proxyUpgrade(ctx: RelayContext, req: IncomingMessage, socket: Duplex, head: Buffer, holder: Holder, record: RequestRecord, marks: WireMarks): void {
  const refusal = admitVisitor(ctx, holder, req);
  if (refusal !== undefined) {
    refuse(ctx, req, socket, record, refusal.code, refusal.message, refusal.headers);
    return;
  }
  let payload: Buffer;
  try {
    payload = encodeOpenHead(req, ctx.publicProto(), true);
  } catch (err) {
    const e = err as BurrowError;
    refuse(ctx, req, socket, record, e.code, e.message);
    return;
  }
  socket.pause();
  const stream: MuxStream = ctx.ingress.open(holder);
  let answered = false;
  const timer = setTimeout(() => {
    if (answered) return;
    answered = true;
    stream.reset('BURROW_ERR_TIMEOUT', `the local app did not answer the upgrade within ${ctx.config.requestTimeoutMs} ms`);
    refuse(ctx, req, socket, record, 'BURROW_ERR_TIMEOUT', `the local app did not answer within ${ctx.config.requestTimeoutMs} ms`);
  }, ctx.config.requestTimeoutMs);
  const onEarlyClose = (): void => {
    clearTimeout(timer);
    if (!answered) {
      answered = true;
      stream.reset('BURROW_ERR_CANCELLED', 'the public client went away');
    }
  };
  socket.once('close', onEarlyClose);
  stream.handler = {
    onHead(headPayload: Buffer) {
      clearTimeout(timer);
      if (answered) return;
      answered = true;
      socket.removeListener('close', onEarlyClose);
      let response: ResponseHead;
      let bytes: Buffer;
      try {
        response = decodeResponseHead(headPayload);
        bytes = serializeHead(response, response.status !== 101);
      } catch (err) {
        const message = `the local app sent an invalid upgrade response: ${(err as Error).message}`;
        stream.reset('BURROW_ERR_LOCAL_ERROR', message);
        refuse(ctx, req, socket, record, 'BURROW_ERR_LOCAL_ERROR', message);
        return;
      }
      socket.write(bytes);
      record.responded(response.status);
      marks.writtenAfterHead = bytesWritten(socket);
      if (response.status === 101) {
        if (head.length > 0) stream.write(head);
        // A WebSocket whose tunnel dies (agent gone, relay shutting down) is closed with a close
        // frame saying why, when the app's bytes stand between frames; mid-frame it can only be dropped.
        const frames = req.headers.upgrade?.toLowerCase() === 'websocket' ? new WsFrameBoundary() : undefined;
        bridge(frames === undefined ? socket : followed(socket, frames), stream, {
          failureCode: 'BURROW_ERR_CANCELLED',
          ...(frames !== undefined ? { farewell: (reason: Reason) => farewell(frames, reason.code) } : {}),
          onDone: (reason) => {
            if (reason !== undefined) record.fail(reason.code);
            ctx.log.debug({ url: req.url, code: reason?.code }, 'websocket closed');
          },
        });
        return;
      }
      // Refused upgrade: relay the app's answer and close; the client has nothing more to send.
      stream.end();
      stream.handler = {
        onData(chunk) {
          if (socket.write(chunk)) stream.consumed(chunk.length);
          else socket.once('drain', () => stream.consumed(chunk.length));
        },
        onEnd() {
          socket.end();
        },
        onReset() {
          socket.destroy();
        },
      };
      socket.resume();
      ctx.log.info({ url: req.url, status: response.status }, 'upgrade refused by the local app');
    },
    onData() {
      // No data precedes the head.
    },
    onEnd() {},
    onReset(reason: Reason) {
      clearTimeout(timer);
      if (answered) {
        socket.destroy();
        return;
      }
      answered = true;
      refuse(ctx, req, socket, record, reason.code, reason.message);
    },
  };
  stream.sendHead(FrameType.OPEN, payload, false);
}
