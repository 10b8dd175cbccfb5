/**
 * Public TCP tunnels, ingress side. Every relay node listens on every port of --tcp-ports; a
 * connection on a port finds the label the port is allocated to (registry, cached briefly), then
 * the label's holder (this node's sessions first, then the registry), and becomes one stream of
 * kind TCP to the agent. Bytes pass both ways within the credit windows, and a half-close passes
 * through: the client's FIN is END one way while the other way carries on, and the agent's END is
 * a FIN to the client. A connection that cannot be served (no tunnel on the port, agent offline,
 * connection cap, local target unreachable, idle timeout) is closed cleanly (FIN) with a log line.
 */
import net, { type Server, type Socket } from 'node:net';
import type { Holder } from '@burrow/bus';
import { bridge, closeGently, type MuxStream } from '@burrow/mux';
import { BurrowError, type ErrorCode, encodeRequestHead, FrameType, hostPort, StreamKind } from '@burrow/protocol';
import type { RelayContext } from './relayContext';
import { resolveLocal, resolveRemote } from './resolveTunnel';
import { checkVisitor } from './visitorAccess';

/** How long a port → label answer from the registry is reused. */
const PORT_CACHE_MS = 1000;
/** Stream resets that mean "refused" or "timed out": the client gets a FIN, not a RST. */
const CLEAN_CLOSE: ReadonlySet<ErrorCode> = new Set<ErrorCode>([
  'BURROW_ERR_TCP_CONNECTION_LIMIT',
  'BURROW_ERR_TCP_IDLE',
  'BURROW_ERR_LOCAL_UNREACHABLE',
  'BURROW_ERR_TOO_MANY_STREAMS',
  'BURROW_ERR_QUOTA_STREAMS',
  'BURROW_ERR_SESSION_GONE',
  'BURROW_ERR_AGENT_DISCONNECTED',
  'BURROW_ERR_RELAY_SHUTTING_DOWN',
  'BURROW_ERR_BAD_REQUEST',
]);

/** The client's address as host:port. */
function clientOf(socket: Socket): string {
  return hostPort(socket.remoteAddress ?? '', socket.remotePort ?? 0);
}

export class TcpIngress {
  private readonly servers: Server[] = [];
  private readonly sockets = new Set<Socket>();
  private readonly portCache = new Map<number, { label: string; untilMs: number }>();
  private closed = false;

  constructor(private readonly ctx: RelayContext) {}

  /** Ports this node listens on. */
  get listening(): number {
    return this.servers.length;
  }

  /** Connections open now. */
  get connections(): number {
    return this.sockets.size;
  }

  /** Listens on every port of the range at config.host. Ports that cannot be bound are logged and skipped. */
  async listen(): Promise<void> {
    const range = this.ctx.config.tcpPorts;
    if (range === undefined || this.closed) return;
    const host = this.ctx.config.host;
    const failed: string[] = [];
    await Promise.all(
      Array.from({ length: range.last - range.first + 1 }, (_, i) => range.first + i).map(
        (port) =>
          new Promise<void>((resolve) => {
            const server = net.createServer({ allowHalfOpen: true, pauseOnConnect: true, noDelay: true }, (socket) => this.accept(port, socket));
            server.once('error', (err: NodeJS.ErrnoException) => {
              failed.push(`${port} (${err.code ?? err.message})`);
              resolve();
            });
            server.listen({ port, host }, () => {
              this.servers.push(server);
              resolve();
            });
          }),
      ),
    );
    if (failed.length > 0) {
      this.ctx.log.warn(
        { ports: failed.slice(0, 20), count: failed.length },
        `cannot listen on ${failed.length} TCP port(s) of ${range.first}-${range.last}; tunnels on them are not reachable through this node`,
      );
    }
    this.ctx.log.info({ host, first: range.first, last: range.last, listening: this.servers.length }, 'listening for TCP tunnels');
  }

  /** Stops listening and closes every connection. Idempotent. */
  async close(): Promise<void> {
    this.closed = true;
    for (const s of this.sockets) s.destroy();
    const servers = this.servers.splice(0);
    await Promise.all(servers.map((s) => new Promise<void>((resolve) => s.close(() => resolve()))));
  }

  private refuse(socket: Socket, port: number, code: ErrorCode, message: string, label?: string): void {
    this.ctx.log.info({ port, client: clientOf(socket), code, ...(label !== undefined ? { label } : {}) }, `tcp connection refused: ${message}`);
    closeGently(socket);
  }

  private async labelOf(port: number): Promise<string | undefined> {
    const cached = this.portCache.get(port);
    if (cached !== undefined && cached.untilMs > Date.now()) return cached.label;
    const label = await this.ctx.bus.registry.portLabel(port);
    if (label === undefined) this.portCache.delete(port);
    else this.portCache.set(port, { label, untilMs: Date.now() + PORT_CACHE_MS });
    return label;
  }

  private accept(port: number, socket: Socket): void {
    if (this.closed) {
      socket.destroy();
      return;
    }
    this.sockets.add(socket);
    socket.on('error', () => {});
    socket.once('close', () => this.sockets.delete(socket));
    void this.route(port, socket).catch((err: unknown) => {
      const code = err instanceof BurrowError ? err.code : 'BURROW_ERR_INTERNAL';
      if (code === 'BURROW_ERR_INTERNAL') this.ctx.log.error({ err, port }, 'tcp connection failed');
      this.refuse(socket, port, code, err instanceof Error ? err.message : String(err));
    });
  }

  private async route(port: number, socket: Socket): Promise<void> {
    const label = await this.labelOf(port);
    if (socket.destroyed) return;
    if (label === undefined) {
      this.refuse(socket, port, 'BURROW_ERR_UNKNOWN_TUNNEL', `no tunnel holds TCP port ${port}`);
      return;
    }
    let holder: Holder | undefined = resolveLocal(this.ctx, label);
    if (holder === undefined) {
      const r = await resolveRemote(this.ctx, label);
      if (socket.destroyed) return;
      if ('error' in r) {
        this.refuse(socket, port, r.error, r.message, label);
        return;
      }
      holder = r.holder;
    }
    if (this.closed) {
      this.refuse(socket, port, 'BURROW_ERR_RELAY_SHUTTING_DOWN', 'relay is shutting down', label);
      return;
    }
    // The agent's --allow-cidr: checked here, before anything reaches it (address only: no headers on raw TCP).
    const access = holder.policy?.access;
    if (access !== undefined) {
      const d = checkVisitor(access, { address: socket.remoteAddress ?? '', headers: {} });
      if (!d.ok) {
        this.refuse(socket, port, d.code, d.message, label);
        return;
      }
    }
    const head = encodeRequestHead({ kind: StreamKind.TCP, method: '', target: clientOf(socket), headers: [] });
    const stream = this.ctx.ingress.open(holder);
    this.pipe(port, label, socket, stream);
    stream.sendHead(FrameType.OPEN, head, false);
  }

  /** Socket ↔ stream, both ways, with backpressure and half-close; an idle timeout cuts both. */
  private pipe(port: number, label: string, socket: Socket, stream: MuxStream): void {
    const { ctx } = this;
    const started = Date.now();
    const client = clientOf(socket);
    let connected = false;
    const bridged = bridge(socket, stream, {
      failureCode: 'BURROW_ERR_CANCELLED',
      onHead: () => {
        connected = true;
      },
      closeGentlyOn: (code) => CLEAN_CLOSE.has(code),
      closedMessage: (endedFirst) => (endedFirst ? 'the TCP client closed before the agent finished' : 'the TCP client went away'),
      onDone: (reason) => {
        const fields = { port, label, client, ms: Date.now() - started, bytesIn: socket.bytesRead, bytesOut: socket.bytesWritten };
        if (reason === undefined) ctx.log.debug(fields, 'tcp connection closed');
        else if (!connected && reason.code !== 'BURROW_ERR_CANCELLED')
          ctx.log.info({ ...fields, code: reason.code }, `tcp connection refused: ${reason.message}`);
        else ctx.log.info({ ...fields, code: reason.code }, `tcp connection closed: ${reason.message}`);
      },
    });
    const idleMs = ctx.config.tcpIdleTimeoutMs;
    if (idleMs > 0) socket.setTimeout(idleMs, () => bridged.cut('BURROW_ERR_TCP_IDLE', `no byte either way for ${idleMs} ms (--tcp-idle-timeout-ms)`));
  }
}
