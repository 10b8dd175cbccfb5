/**
 * Carries one relay stream of kind TCP to the local target (`burrow tcp`): dials it with
 * allowHalfOpen, answers with a RESPONSE head once connected, then copies raw bytes both ways with
 * backpressure. Half-close passes through: the relay's END shuts down writing to the local target
 * while its answer still flows back, and the target's FIN is END the other way. Bytes the relay
 * sends before the connection is up wait (within the stream's credit window) and go first.
 */
import net from 'node:net';
import { bridge, type MuxStream } from '@burrow/mux';
import { encodeResponseHead, FrameType, type RequestHead } from '@burrow/protocol';
import type { LocalTarget } from './localTarget';

export interface ConnectionEvent {
  /** The public client's address as the relay saw it (host:port). */
  readonly client: string;
  readonly durationMs: number;
  /** Bytes from the public client to the local target, and back. */
  readonly bytesIn: number;
  readonly bytesOut: number;
  /** Error code when the connection did not end normally (refused, idle, cut). */
  readonly error?: string;
  readonly detail?: string;
}

export interface LocalTcpContext {
  readonly target: LocalTarget;
  readonly onConnection: (event: ConnectionEvent) => void;
}

export function forwardTcp(stream: MuxStream, head: RequestHead, ctx: LocalTcpContext, target: LocalTarget = ctx.target): void {
  const started = performance.now();
  const pending: Buffer[] = [];
  let pendingEnd = false;
  let settled = false;
  let reported = false;
  const report = (error?: string, detail?: string): void => {
    if (reported) return;
    reported = true;
    ctx.onConnection({
      client: head.target,
      durationMs: performance.now() - started,
      bytesIn: socket.bytesWritten,
      bytesOut: socket.bytesRead,
      ...(error !== undefined ? { error, detail } : {}),
    });
  };
  const socket = net.connect({ host: target.hostname, port: target.port, allowHalfOpen: true, noDelay: true });
  stream.handler = {
    onData(chunk) {
      pending.push(chunk);
    },
    onEnd() {
      pendingEnd = true;
    },
    onReset(reason) {
      settled = true;
      socket.destroy();
      report(reason.code, reason.message);
    },
  };
  socket.once('error', (err: NodeJS.ErrnoException) => {
    if (settled || stream.isClosed) return;
    settled = true;
    const detail = `cannot reach ${target.origin}: ${err.code ?? ''} ${err.message}`.replace(/\s+/g, ' ').trim();
    stream.reset('BURROW_ERR_LOCAL_UNREACHABLE', detail);
    report('BURROW_ERR_LOCAL_UNREACHABLE', detail);
  });
  socket.once('connect', () => {
    if (settled || stream.isClosed) {
      socket.destroy();
      return;
    }
    settled = true;
    stream.sendHead(FrameType.RESPONSE, encodeResponseHead({ status: 200, reason: 'Connected', headers: [] }));
    bridge(socket, stream, {
      failureCode: 'BURROW_ERR_LOCAL_ERROR',
      onDone: (reason) => report(reason?.code, reason?.message),
    });
    // What arrived while dialling goes first, through the bridge (it returns the credit).
    const handler = stream.handler;
    for (const chunk of pending.splice(0)) handler?.onData(chunk);
    if (pendingEnd) handler?.onEnd();
  });
}
