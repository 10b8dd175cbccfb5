/**
 * Keeps this node's label leases alive: renews them all every third of a lease period, puts
 * back leases the registry lost (a Redis restart), and retires sessions whose labels another
 * session took while this node could not hear about it.
 */
import type { RenewResult } from '@burrow/bus';
import type { AgentSession } from './agentSession';
import type { RelayContext } from './relayContext';

export interface LeaseStats {
  readonly renewed: number;
  readonly reclaimed: number;
  readonly lost: number;
  /** Renewal rounds that failed (the bus was down). */
  readonly failed: number;
}

export class LeaseKeeper {
  private readonly counts: Record<RenewResult | 'failed', number> = { renewed: 0, reclaimed: 0, lost: 0, failed: 0 };
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;

  constructor(private readonly ctx: RelayContext) {}

  get periodMs(): number {
    return Math.max(100, Math.floor(this.ctx.bus.leaseTtlMs / 3));
  }

  start(): void {
    this.timer = setInterval(() => void this.renewNow(), this.periodMs);
    this.timer.unref();
  }

  stop(): void {
    clearInterval(this.timer);
  }

  stats(): LeaseStats {
    return { ...this.counts };
  }

  /** One renewal round now (after the bus came back, say); rounds never overlap. */
  renewNow(): Promise<void> {
    this.running ??= this.round().finally(() => {
      this.running = undefined;
    });
    return this.running;
  }

  private async round(): Promise<void> {
    const { ctx } = this;
    const leases: Array<{ label: string; holder: ReturnType<AgentSession['holder']> }> = [];
    const owners: AgentSession[] = [];
    for (const [label, session] of ctx.sessions.byLabel) {
      if (!session.isActive) continue;
      leases.push({ label, holder: session.holder() });
      owners.push(session);
    }
    if (leases.length === 0) return;
    let results: RenewResult[];
    try {
      results = await ctx.bus.registry.renew(leases);
    } catch (err) {
      this.counts.failed++;
      ctx.log.warn({ err, leases: leases.length }, 'could not renew leases; retrying next period');
      return;
    }
    let reclaimed = 0;
    results.forEach((result, i) => {
      this.counts[result]++;
      if (result === 'reclaimed') reclaimed++;
      if (result === 'lost') {
        ctx.log.warn({ label: leases[i]?.label }, 'another session took this label while the bus was out of reach');
        owners[i]?.retire('BURROW_ERR_SESSION_REPLACED', 'a newer session of this tunnel connected');
      }
    });
    if (reclaimed > 0) ctx.log.info({ reclaimed }, 're-announced leases the registry had lost');
    await this.renewPorts();
  }

  /** TCP ports live as long as their sessions' leases: renewed in the same rounds. */
  private async renewPorts(): Promise<void> {
    const ports = [];
    for (const s of this.ctx.sessions.byId.values()) {
      const label = s.labels[0];
      if (s.isActive && s.tcpPort !== undefined && label !== undefined) ports.push({ port: s.tcpPort, label, sessionId: s.id });
    }
    try {
      await this.ctx.bus.registry.renewPorts(ports);
    } catch (err) {
      this.ctx.log.warn({ err, ports: ports.length }, 'could not renew TCP ports; retrying next period');
    }
  }
}
