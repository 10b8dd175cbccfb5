/**
 * A TCP fault proxy for tests and the soak: sits between a client (an agent, a relay) and a
 * target (a relay, redis-server) on loopback and, on command, breaks the connections it carries
 * the ways real networks do. It only moves bytes; it knows nothing of HTTP, WebSocket or RESP.
 *
 *   cut()       ends every connection cleanly (FIN both ways), as a peer closing would
 *   reset()     destroys every connection with RST, as a crashed peer or a middlebox would
 *   stall()     a blackhole: connections stay open, bytes in flight are dropped, nothing
 *               arrives either way (a dead NAT entry, a pulled cable); heal() ends it
 *   slow(bps)   forwards at most `bps` bytes per second each way (plus `latencyMs` per chunk)
 *   refuse()    new connections are reset at once until accept()
 *   after(n, dir, fault)  applies `fault` once, to the first connection opened from then on
 *               that passes `n` bytes `dir` ('up' = client→target, 'down' = target→client),
 *               after exactly `n` bytes: faults mid-request, mid-body, mid-message
 *
 * Backpressure is honoured in both directions, so a slow or stalled proxy never buffers more
 * than a socket's worth per connection.
 */
import net, { type AddressInfo, type Socket } from 'node:net';

export type Direction = 'up' | 'down';
export type Fault = 'cut' | 'reset' | 'stall';

interface Link {
  readonly client: Socket;
  readonly target: Socket;
  /** Bytes that passed each way. */
  readonly passed: Record<Direction, number>;
  stalled: boolean;
  closed: boolean;
}

interface Trigger {
  readonly bytes: number;
  readonly direction: Direction;
  readonly fault: Fault;
  fired: boolean;
  /** Only connections opened after the trigger was armed. */
  readonly fromLink: number;
}

export interface FaultProxyOptions {
  readonly targetPort: number;
  readonly targetHost?: string;
  /** Listen on this port (default: any free one). Restarting a target behind a fixed port needs it. */
  readonly port?: number;
}

export class FaultProxy {
  private readonly links = new Set<Link>();
  private readonly triggers: Trigger[] = [];
  private linkCount = 0;
  private refusing = false;
  private stallNew = false;
  private bytesPerSecond = 0;
  private latencyMs = 0;
  /** Connections accepted in total, and bytes passed each way over all connections. */
  readonly totals = { connections: 0, up: 0, down: 0 };

  private constructor(
    private readonly server: net.Server,
    private readonly options: FaultProxyOptions,
  ) {}

  static async start(options: FaultProxyOptions): Promise<FaultProxy> {
    const server = net.createServer();
    const proxy = new FaultProxy(server, options);
    server.on('connection', (client) => proxy.accept1(client));
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(options.port ?? 0, '127.0.0.1', () => resolve());
    });
    return proxy;
  }

  get port(): number {
    return (this.server.address() as AddressInfo).port;
  }

  /** Connections open right now. */
  get open(): number {
    return this.links.size;
  }

  /** Ends every open connection cleanly (FIN to both sides). */
  cut(): void {
    for (const link of this.links) this.apply(link, 'cut');
  }

  /** Destroys every open connection with a TCP RST to both sides. */
  reset(): void {
    for (const link of this.links) this.apply(link, 'reset');
  }

  /** Blackholes every open connection, and (with `newToo`) every new one, until heal(). */
  stall(newToo = true): void {
    for (const link of this.links) this.apply(link, 'stall');
    this.stallNew = newToo;
  }

  /** Ends a stall: new bytes flow again (bytes dropped meanwhile stay lost). */
  heal(): void {
    this.stallNew = false;
    for (const link of this.links) {
      link.stalled = false;
      link.client.resume();
      link.target.resume();
    }
  }

  /** Throttles every connection to `bytesPerSecond` each way (0: unthrottled), plus `latencyMs` per chunk. */
  slow(bytesPerSecond: number, latencyMs = 0): void {
    this.bytesPerSecond = bytesPerSecond;
    this.latencyMs = latencyMs;
  }

  /** New connections are reset on arrival until accept(). */
  refuse(): void {
    this.refusing = true;
  }

  accept(): void {
    this.refusing = false;
  }

  /** Applies `fault` once, to the first connection opened from now on that passes `bytes` bytes `direction`, right after them. */
  after(bytes: number, direction: Direction, fault: Fault): void {
    this.triggers.push({ bytes, direction, fault, fired: false, fromLink: this.linkCount });
  }

  /** Back to a plain pipe: no throttle, no pending triggers, accepting, not stalling. */
  clear(): void {
    this.triggers.length = 0;
    this.refusing = false;
    this.slow(0);
    this.heal();
  }

  async close(): Promise<void> {
    for (const link of this.links) this.apply(link, 'reset');
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  private accept1(client: Socket): void {
    client.on('error', () => {});
    if (this.refusing) {
      client.resetAndDestroy();
      return;
    }
    this.totals.connections++;
    const target = net.connect({ port: this.options.targetPort, host: this.options.targetHost ?? '127.0.0.1' });
    target.on('error', () => {});
    const link: Link = { client, target, passed: { up: 0, down: 0 }, stalled: this.stallNew, closed: false };
    const id = this.linkCount++;
    this.links.add(link);
    const forget = (): void => {
      if (link.closed) return;
      link.closed = true;
      this.links.delete(link);
      client.destroy();
      target.destroy();
    };
    client.on('close', forget);
    target.on('close', forget);
    // A half-close passes through as one.
    client.on('end', () => target.end());
    target.on('end', () => client.end());
    this.pipe(link, id, client, target, 'up');
    this.pipe(link, id, target, client, 'down');
  }

  private pipe(link: Link, id: number, from: Socket, to: Socket, direction: Direction): void {
    // Chunks held back by a throttle, in order; `from` is paused while any are queued.
    let queue: Buffer[] = [];
    let sending = false;
    const send = (chunk: Buffer): void => {
      if (link.closed) return;
      link.passed[direction] += chunk.length;
      this.totals[direction] += chunk.length;
      if (!to.write(chunk)) {
        from.pause();
        to.once('drain', () => {
          if (!link.stalled) from.resume();
        });
      }
    };
    const pump = (): void => {
      if (sending) return;
      const next = queue.shift();
      if (next === undefined) {
        if (!link.stalled) from.resume();
        return;
      }
      sending = true;
      const rate = this.bytesPerSecond;
      const piece = rate > 0 ? next.subarray(0, Math.max(1, Math.floor(rate / 20))) : next;
      if (piece.length < next.length) queue.unshift(next.subarray(piece.length));
      const delay = this.latencyMs + (rate > 0 ? (piece.length / rate) * 1000 : 0);
      setTimeout(() => {
        sending = false;
        if (link.closed) {
          queue = [];
          return;
        }
        if (!link.stalled) send(piece);
        pump();
      }, delay);
    };
    from.on('data', (chunk: Buffer) => {
      if (link.stalled || link.closed) return; // blackholed
      const fault = this.check(link, id, direction, chunk.length);
      if (fault !== undefined) {
        // Let the bytes up to the threshold through, then break the connection.
        const trigger = fault.trigger;
        const keep = Math.max(0, trigger.bytes - link.passed[direction]);
        if (keep > 0) send(chunk.subarray(0, keep));
        this.apply(link, trigger.fault);
        return;
      }
      // A piece still waiting out its delay goes first, even once the throttle is lifted: never reorder.
      if (this.bytesPerSecond > 0 || this.latencyMs > 0 || queue.length > 0 || sending) {
        queue.push(chunk);
        from.pause();
        pump();
        return;
      }
      send(chunk);
    });
  }

  private check(link: Link, id: number, direction: Direction, incoming: number): { trigger: Trigger } | undefined {
    for (const trigger of this.triggers) {
      if (trigger.fired || id < trigger.fromLink || trigger.direction !== direction) continue;
      if (link.passed[direction] + incoming >= trigger.bytes) {
        trigger.fired = true;
        return { trigger };
      }
    }
    return undefined;
  }

  private apply(link: Link, fault: Fault): void {
    if (link.closed) return;
    if (fault === 'cut') {
      link.client.end();
      link.target.end();
      // A peer that ignores the FIN still goes away.
      setTimeout(() => {
        link.client.destroy();
        link.target.destroy();
      }, 1000).unref();
    } else if (fault === 'reset') {
      for (const socket of [link.client, link.target]) {
        // A socket already ending (end() called, its shutdown maybe pending) cannot be reset: Node's
        // resetAndDestroy() then fails with EINVAL and never closes the handle, so the process spins
        // at exit. Such a socket is destroyed instead (its FIN is on the way anyway).
        if (socket.writableEnded) socket.destroy();
        else socket.resetAndDestroy();
      }
    } else {
      link.stalled = true;
      // Keep reading (and dropping) so senders see an open window, like a blackhole route.
      link.client.resume();
      link.target.resume();
    }
  }
}
