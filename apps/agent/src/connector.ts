/**
 * `burrow connect NAME --listen 127.0.0.1:7000`: the side that needs a private share. It
 * registers as a connecting agent, listens locally, and turns each accepted connection into one
 * stream it opens itself; the stream's OPEN carries the connect request (share name, secret,
 * target). The relay checks the proof and splices the stream to the sharing agent, which dials
 * the target. Bytes pass both ways with backpressure and half-close; a refused, cut or timed-out
 * connection gets a clean close (FIN) and a 'connection' event with the reason.
 */
import { EventEmitter } from 'node:events';
import net, { type Server, type Socket } from 'node:net';
import { bridge, closeGently, type MuxStream } from '@burrow/mux';
import { type BurrowError, type ErrorCode, encodeConnectRequest, FrameType, hostPort, type KeyPair } from '@burrow/protocol';
import { Agent, type AgentEvents } from './agent';
import { parseTcpTarget } from './localTarget';

export interface ConnectorOptions {
  readonly relay: string | readonly string[];
  readonly keyPair: KeyPair;
  /** The share to reach. */
  readonly share: string;
  /** The share's secret; without it only an agent of the share's tenant gets in. */
  readonly secret?: string;
  /** One of the share's allowed targets (host:port); default its main target. */
  readonly target?: string;
  /** Where to listen: host and port (port 0 picks one; see address()). */
  readonly listen: { readonly host: string; readonly port: number };
  readonly token?: string;
  readonly deadAfterMs?: number;
  readonly reconnectInitialMs?: number;
  readonly reconnectMaxMs?: number;
}

/** A Connector emits what an Agent does ('connection': one per local connection that ended); it listens before it goes online. */
export type ConnectorEvents = AgentEvents;

/** The listener could not be opened (port in use, no such address). */
export class ListenError extends Error {
  readonly code = 'BURROW_ERR_LISTEN';
}

/** Resets after which the local client gets a RST rather than a FIN: the stream broke mid-way. */
const DESTROY: ReadonlySet<ErrorCode> = new Set<ErrorCode>(['BURROW_ERR_LOCAL_ERROR', 'BURROW_ERR_PROTOCOL', 'BURROW_ERR_FLOW_CONTROL']);

function clientOf(socket: Socket): string {
  return hostPort(socket.remoteAddress ?? '', socket.remotePort ?? 0);
}

export class Connector extends EventEmitter<ConnectorEvents> {
  readonly agent: Agent;
  private server: Server | undefined;
  private readonly sockets = new Set<Socket>();
  private closing: Promise<void> | undefined;

  constructor(private readonly options: ConnectorOptions) {
    super();
    this.agent = new Agent({
      relay: options.relay,
      // Not dialled: a connecting agent serves no streams. Shown as where it listens.
      target: parseTcpTarget(hostPort(options.listen.host, options.listen.port || 1)),
      keyPair: options.keyPair,
      connect: true,
      ...(options.token !== undefined ? { token: options.token } : {}),
      ...(options.deadAfterMs !== undefined ? { deadAfterMs: options.deadAfterMs } : {}),
      ...(options.reconnectInitialMs !== undefined ? { reconnectInitialMs: options.reconnectInitialMs } : {}),
      ...(options.reconnectMaxMs !== undefined ? { reconnectMaxMs: options.reconnectMaxMs } : {}),
    });
    for (const event of ['online', 'request', 'reconnecting', 'offline', 'closed'] as const) {
      this.agent.on(event, (...args: unknown[]) => (this.emit as (e: string, ...a: unknown[]) => boolean)(event, ...args));
    }
    this.agent.on('fatal', (err) => {
      this.closeListener();
      this.emit('fatal', err);
    });
  }

  /** The bound listener address, once listening. */
  address(): { host: string; port: number } | undefined {
    const a = this.server?.address();
    return a !== null && typeof a === 'object' ? { host: a.address, port: a.port } : undefined;
  }

  /** Listens, then connects to the relay; returns at once. A listener that cannot open is 'fatal' (ListenError). */
  start(): void {
    if (this.server !== undefined) return;
    const server = net.createServer({ allowHalfOpen: true, pauseOnConnect: true, noDelay: true }, (socket) => this.accept(socket));
    this.server = server;
    server.once('error', (err: NodeJS.ErrnoException) => {
      const { host, port } = this.options.listen;
      const e = new ListenError(`cannot listen on ${host}:${port}: ${err.code ?? err.message}`);
      void this.agent.close();
      // Listeners read code and message only.
      this.emit('fatal', e as unknown as BurrowError);
    });
    server.listen({ host: this.options.listen.host, port: this.options.listen.port }, () => this.agent.start());
  }

  private accept(socket: Socket): void {
    const client = clientOf(socket);
    this.sockets.add(socket);
    socket.on('error', () => {});
    socket.once('close', () => this.sockets.delete(socket));
    const stream = this.agent.openStream();
    if (stream === undefined) {
      const detail = 'not connected to the relay right now; try again in a moment';
      this.emit('connection', { client, durationMs: 0, bytesIn: 0, bytesOut: 0, error: 'BURROW_ERR_AGENT_DISCONNECTED', detail });
      closeGently(socket);
      return;
    }
    const { share, secret, target } = this.options;
    stream.sendHead(
      FrameType.OPEN,
      encodeConnectRequest({ share, ...(secret !== undefined ? { secret } : {}), ...(target !== undefined ? { target } : {}) }),
      false,
    );
    this.pipe(client, socket, stream);
  }

  /** Socket ↔ stream, both ways, with backpressure and half-close (as the relay's public TCP ingress does). */
  private pipe(client: string, socket: Socket, stream: MuxStream): void {
    const started = performance.now();
    bridge(socket, stream, {
      failureCode: 'BURROW_ERR_CANCELLED',
      closeGentlyOn: (code) => !DESTROY.has(code),
      closedMessage: (endedFirst) => (endedFirst ? 'the local client closed before the share finished' : 'the local client went away'),
      onDone: (reason) => {
        this.emit('connection', {
          client,
          durationMs: performance.now() - started,
          bytesIn: socket.bytesRead,
          bytesOut: socket.bytesWritten,
          ...(reason !== undefined ? { error: reason.code, detail: reason.message } : {}),
        });
      },
    });
  }

  private closeListener(): void {
    this.server?.close();
    for (const s of this.sockets) s.destroy();
  }

  /** Stops listening, closes every local connection and the relay session. Idempotent. */
  close(): Promise<void> {
    this.closing ??= (async () => {
      this.closeListener();
      await this.agent.close();
    })();
    return this.closing;
  }
}
