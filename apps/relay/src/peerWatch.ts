/**
 * Finds streams that cross to relay nodes that are gone. A stream whose other end was on a
 * node that died (or that this node can no longer reach through the bus) would otherwise wait
 * for its timeout; this ends it at once with a precise code, on both sides.
 */
import type { ErrorCode } from '@burrow/protocol';
import type { RelayContext } from './relayContext';

/** How often a node probes the nodes its streams cross to: a fortieth of a lease, within 100 ms .. 1 s. */
export function peerProbePeriodMs(leaseTtlMs: number): number {
  return Math.min(1000, Math.max(100, Math.floor(leaseTtlMs / 40)));
}

export class PeerWatch {
  private timer: NodeJS.Timeout | undefined;
  private running = false;

  constructor(private readonly ctx: RelayContext) {}

  /** Probe period: a fortieth of a lease (250 ms by default), within 100 ms .. 1 s. It costs one PUBSUB NUMSUB per period, only while streams cross nodes. */
  get periodMs(): number {
    return peerProbePeriodMs(this.ctx.bus.leaseTtlMs);
  }

  start(): void {
    this.timer = setInterval(() => void this.check(), this.periodMs);
    this.timer.unref();
  }

  stop(): void {
    clearInterval(this.timer);
  }

  /** Other nodes that streams on this node depend on. */
  private remoteNodes(): Set<string> {
    const { ctx } = this;
    const nodes = ctx.ingress.remoteNodes();
    for (const s of ctx.sessions.byId.values()) {
      for (const n of s.ingressNodes()) if (n !== ctx.nodeId) nodes.add(n);
    }
    return nodes;
  }

  async check(): Promise<void> {
    if (this.running) return;
    const nodes = this.remoteNodes();
    if (nodes.size === 0) return;
    this.running = true;
    try {
      if (!this.ctx.bus.isUp()) {
        this.cut(nodes, 'BURROW_ERR_BUS_UNAVAILABLE', 'this relay node lost its connection to Redis during the request');
        return;
      }
      let absent: Set<string>;
      try {
        absent = await this.ctx.bus.absentNodes([...nodes]);
      } catch {
        this.cut(nodes, 'BURROW_ERR_BUS_UNAVAILABLE', 'this relay node lost its connection to Redis during the request');
        return;
      }
      if (absent.size === 0) return;
      for (const n of absent) this.ctx.deadNodes.mark(n);
      this.ctx.holderCache.dropNodes(absent);
      this.cut(absent, 'BURROW_ERR_NODE_UNREACHABLE', 'the relay node at the other end of this request is gone');
    } finally {
      this.running = false;
    }
  }

  /** Ends every stream that crosses to one of `nodes`, on both sides. */
  cut(nodes: ReadonlySet<string>, code: ErrorCode, message: string): void {
    const { ctx } = this;
    const n = ctx.ingress.abortNodes(nodes, code, message);
    for (const s of ctx.sessions.byId.values()) s.dropIngressNodes(nodes, code, message);
    if (n > 0) ctx.log.warn({ nodes: [...nodes], streams: n, code }, message);
  }
}
